"""The binary wire's library half: stored frames out (`Store.read_stored`), client-built
frames in (`EncodedBatch`), and the codec both ends share (`logstore.binary`)."""

from __future__ import annotations

import random
import time

import pytest

from logstore import (
    Corruption,
    EncodedBatch,
    InvalidArgument,
    MessageTooLarge,
    Record,
    Replayed,
    Store,
    binary,
    check_store,
    frames,
)
from logstore.engine.local.segment import SUFFIX


def _mixed_store(path, seed=1) -> tuple[Store, int]:
    """A topic of several segments holding single writes, batches and keyed records."""
    store = Store(path, fsync="never")
    store.create_topic("t", segment_bytes=1 << 14)
    rng = random.Random(seed)
    for i in range(200):
        kind = i % 3
        if kind == 0:
            store.write("t", rng.randbytes(rng.randrange(1, 200)))
        elif kind == 1:
            store.write_many("t", [rng.randbytes(rng.randrange(50)) for _ in range(17)])
        else:
            records = [Record(b"v%d" % j, key=b"k", headers={"h": str(j)}) for j in range(5)]
            store.write_many("t", records)
    return store, store.topic("t").end_offset


def _decoded(store: Store, offset: int, max_messages: int, max_bytes: int | None):
    stored = store.read_stored("t", offset, max_messages, max_bytes)
    return stored, binary.decode_replay(stored.data, offset, stored.next_offset)


def test_stored_frames_decode_to_exactly_what_read_gives(tmp_path):
    store, end = _mixed_store(tmp_path / "d")
    rng = random.Random(2)
    with store:
        assert store.topic("t").segments > 3
        for _ in range(300):
            offset = rng.randrange(end + 1)
            max_messages = rng.choice([1, 2, 10, 100, 5000])
            stored, messages = _decoded(store, offset, max_messages, None)
            assert messages == store.read("t", offset, max_messages)[: len(messages)]
            assert stored.next_offset == min(end, offset + max_messages) or (
                len(messages) and stored.next_offset == messages[-1].offset + 1
            )


def test_replaying_stored_frames_from_start_to_end_gives_every_message_once(tmp_path):
    store, end = _mixed_store(tmp_path / "d")
    with store:
        got, offset = [], 0
        while offset < end:
            stored, messages = _decoded(store, offset, 37, 3000)
            assert messages, offset
            got.extend(messages)
            offset = stored.next_offset
        assert got == store.read("t", 0, end)


def test_stored_frames_start_at_the_frame_holding_the_offset(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        for i in range(100):
            store.write_many("t", [b"x%d" % i] * 10)
        stored = store.read_stored("t", 555, 3)
        header = frames.parse_header(stored.data, 0)
        assert (header.base_offset, header.count, len(stored.data)) == (550, 10, header.length)
        assert stored.next_offset == 558


def test_max_bytes_bounds_the_frames_sent_but_one_always_goes(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        for _ in range(10):
            store.write_many("t", [b"y" * 1000] * 10)  # frames of ~10 KB
        assert len(store.read_stored("t", 0, 1000, max_bytes=1).data) > 10_000
        stored = store.read_stored("t", 0, 1000, max_bytes=35_000)
        assert 20_000 < len(stored.data) <= 35_000 and stored.next_offset == 30


def test_damaged_frame_is_stepped_round_or_raised_as_read_does(tmp_path):
    path = tmp_path / "d"
    with Store(path, fsync="never") as store:
        store.create_topic("t")
        for i in range(30):
            store.write_many("t", [b"m%d-%d" % (i, j) for j in range(10)])
    segment = next((path / "topics").glob("*/*" + SUFFIX))
    data = bytearray(segment.read_bytes())
    pos = 0
    for _ in range(12):  # the 13th frame holds offsets 120..129
        pos += frames.parse_header(data, pos).length
    data[pos + 40] ^= 0xFF
    segment.write_bytes(bytes(data))
    with Store(path, fsync="never") as store:
        _, messages = _decoded(store, 100, 1000, None)
        assert [m.offset for m in messages] == list(range(100, 120))
        with pytest.raises(Corruption):
            store.read_stored("t", 125, 10)
        _, messages = _decoded(store, 130, 1000, None)
        assert [m.offset for m in messages] == list(range(130, 300))


def test_damage_that_recovery_did_not_see_is_met_as_read_meets_it(tmp_path):
    path = tmp_path / "d"
    with Store(path, fsync="never") as store:
        store.create_topic("t", segment_bytes=1 << 12)
        for i in range(100):
            store.write_many("t", [b"m%d-%d" % (i, j) for j in range(10)])
        assert store.topic("t").segments >= 2
    segment = sorted((path / "topics").glob("*/*" + SUFFIX))[0]  # recovery scans the last
    data = bytearray(segment.read_bytes())
    pos = frames.parse_header(data, 0).length  # the 2nd frame holds offsets 10..19
    data[pos + 100] ^= 0xFF
    segment.write_bytes(bytes(data))
    with Store(path, fsync="never") as store:
        _, messages = _decoded(store, 0, 1000, None)
        assert [m.offset for m in messages] == list(range(10))
        with pytest.raises(Corruption):
            store.read_stored("t", 12, 10)
        _, messages = _decoded(store, 20, 5, None)
        assert [m.offset for m in messages] == list(range(20, 25))


def test_a_flipped_byte_on_the_wire_raises_corruption_in_the_receiver(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        store.write_many("t", [b"hello"] * 5)
        stored = store.read_stored("t", 0, 10)
    for i in range(len(stored.data)):
        bad = bytearray(stored.data)
        bad[i] ^= 0x01
        with pytest.raises(Corruption):
            binary.decode_replay(bytes(bad), 0, 5)
    with pytest.raises(Corruption):
        binary.decode_replay(stored.data[:-1], 0, 5)


def test_encoded_batch_is_renumbered_restamped_and_atomic(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        store.write("t", b"first")
        before = int(time.time() * 1000)
        records = [b"a", Record(b"b", key=b"k", headers={"x": "y"}), b"c"]
        first = store.write_many("t", EncodedBatch(binary.encode_publish(records)))
        assert first == 1
        got = store.read("t", 1, 10)
        assert [(m.offset, m.value, m.key, dict(m.headers)) for m in got] == [
            (1, b"a", None, {}),
            (2, b"b", b"k", {"x": "y"}),
            (3, b"c", None, {}),
        ]
        assert got[0].timestamp >= before
        plain = EncodedBatch(binary.encode_publish([b"p"] * 1000))
        assert store.write_many("t", plain) == 4
        assert store.topic("t").end_offset == 1004
        again = store.write_many("t", plain, idempotency_key="k1")
        assert store.write_many("t", plain, idempotency_key="k1") == Replayed(again)
    with Store(tmp_path / "d", fsync="never") as store:  # sound after a reopen's checks
        assert store.read("t", 1003, 2)[0].value == b"p"
    assert check_store(str(tmp_path / "d")).damage == []


@pytest.mark.parametrize(
    "damage",
    ["crc", "length", "truncated", "two frames", "headers not text", "columns"],
)
def test_an_encoded_batch_that_is_not_one_sound_frame_is_refused_and_nothing_written(
    tmp_path, damage
):
    good = binary.encode_publish([Record(b"v", headers={"h": "1"}), b"w"])
    if damage == "crc":
        data = good[:-1] + bytes([good[-1] ^ 1])
    elif damage == "length":
        data = good + b"\0"
    elif damage == "truncated":
        data = good[:-3]
    elif damage == "two frames":
        data = good + good
    elif damage == "headers not text":
        data = frames.encode(0, 0, [Record(b"v", headers={"h": 1})])  # type: ignore[dict-item]
    else:
        body = bytearray(frames.encode_many(0, 0, [b"abc", b"de"]))
        body[32] = 9  # first value length 9: the columns no longer add up
        data = frames.restamp(bytes(body), 0, 0)
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        with pytest.raises(InvalidArgument, match="'t'"):
            store.write_many("t", EncodedBatch(data))
        assert store.topic("t").end_offset == 0


def test_an_encoded_batch_holding_a_message_over_the_limit_is_refused(tmp_path):
    with Store(tmp_path / "d", fsync="never", max_message_bytes=100) as store:
        store.create_topic("t")
        with pytest.raises(MessageTooLarge):
            store.write_many("t", EncodedBatch(binary.encode_publish([b"a", b"b" * 101])))
        with pytest.raises(MessageTooLarge):
            big_key = Record(b"v" * 60, key=b"k" * 60)
            store.write_many("t", EncodedBatch(binary.encode_publish([big_key])))
        with pytest.raises(InvalidArgument, match="at most"):
            store.write_many("t", EncodedBatch(binary.encode_publish([b"x"] * 10_001)))
        assert store.topic("t").end_offset == 0


def test_poll_answer_round_trips_deliveries_with_counts_and_leases(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        store.write_many("t", [b"a", b"b"])
        store.write("t", b"c", key=b"k", headers={"h": "v"})
        store.subscribe("t", "s", ack_wait=0.05)
        store.poll("t", "s", max_messages=1)
        time.sleep(0.1)  # offset 0's lease expires: redelivered below
        deliveries = store.poll("t", "s", max_messages=10)
        got = binary.decode_poll(binary.encode_poll(deliveries))
        want = [(d.offset, d.delivery_count, d.lease, d.key, dict(d.headers)) for d in deliveries]
        assert [(d.offset, d.delivery_count, d.lease, d.key, dict(d.headers)) for d in got] == want
        assert [d.delivery_count for d in got] == [2, 1, 1]
        store.ack("t", "s", [d.lease for d in got])
        assert store.subscription("t", "s").ack_floor == 3
    assert binary.decode_poll(binary.encode_poll([])) == []


def test_a_poll_answer_cut_short_or_damaged_on_the_way_is_corruption(tmp_path):
    with Store(tmp_path / "d", fsync="never") as store:
        store.create_topic("t")
        store.write_many("t", [b"first", b"second"])
        time.sleep(0.002)  # another timestamp: two frames, a plain one (decoded in C) and this
        store.write("t", b"keyed", key=b"k")
        store.subscribe("t", "s")
        body = binary.encode_poll(store.poll("t", "s", max_messages=10))
    assert [d.value for d in binary.decode_poll(body)] == [b"first", b"second", b"keyed"]
    table = 12  # the grant number and the count of redeliveries (none)
    boundaries, pos = set(), table
    while pos < len(body):  # a cut between frames is a shorter answer (HTTP's length tells)
        boundaries.add(pos)
        pos += frames.parse_header(body, pos).length
    for cut in set(range(table + 1, len(body))) - boundaries:
        with pytest.raises(Corruption):
            binary.decode_poll(body[:cut])
    for position in range(table, len(body)):
        damaged = bytearray(body)
        damaged[position] ^= 0x20
        with pytest.raises(Corruption):
            binary.decode_poll(bytes(damaged))
