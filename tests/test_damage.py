"""Damage in the middle of a log is kept, never mistaken for a torn tail (SPEC §5).

Every bit of every header field of a frame in the middle of a multi-segment log is flipped,
once with the index trusted (recovery does not rescan the damaged frame; reads meet it) and
once after a power loss (the index is rebuilt from the segments). Each time every other
acknowledged message must stay readable with its bytes, the damaged frame's offsets must
raise `Corruption`, `end_offset` must not move, nothing may be cut, and `check` must report
exactly that frame.
"""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from logstore import Corruption, Record, Store
from logstore import frames as rec
from logstore.engine.local.check import check_store
from logstore.engine.local.meta import MetaStore

FIELDS = {  # name: (first byte, size) in the frame header (see logstore.record)
    "length": (0, 4),
    "crc": (4, 4),
    "base_offset": (8, 8),
    "timestamp": (16, 8),
    "count": (24, 4),
    "flags": (28, 2),
    "magic": (30, 2),
}
BATCH = 5


def expected_values() -> list[bytes]:
    return [b"message %04d" % i for i in range(60 * BATCH)]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A closed store: 60 frames of 5 messages (keys and headers on every third frame),
    spread over several small segments. Returns (data dir, victim segment, victim frame)."""
    path = tmp_path_factory.mktemp("template")
    values = expected_values()
    with Store(path, fsync="always") as store:
        store.create_topic("t", segment_bytes=4096)
        for i in range(0, len(values), BATCH):
            chunk = values[i : i + BATCH]
            if (i // BATCH) % 3 == 0:
                chunk = [Record(v, key=b"k", headers={"h": "1"}) for v in chunk]
            store.write_many("t", chunk)
        assert store.topic("t").segments >= 3
    [directory] = glob.glob(os.path.join(path, "topics", "*-t"))
    segments = sorted(glob.glob(os.path.join(directory, "*.log")))
    victim = segments[len(segments) // 2]
    frames = list(frame_positions(victim))
    position, header = frames[len(frames) // 2]  # a frame with sound frames on both sides
    assert position > 0 and header.count == BATCH
    return path, os.path.relpath(victim, path), position, header


def frame_positions(path):
    with open(path, "rb") as f:
        data = f.read()
    position = 0
    while position < len(data):
        header = rec.parse_header(data, position)
        yield position, header
        position += header.length


def flip(path: str, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position // 8)
        byte = f.read(1)[0]
        f.seek(position // 8)
        f.write(bytes([byte ^ (1 << (position % 8))]))


def lose_power(data_dir) -> None:
    """What a power loss leaves: the index session recorded open by an earlier boot."""
    meta = MetaStore(str(data_dir / "meta"))
    meta.record_index_session(b"an-earlier-boot", clean=False)
    meta.close()


def read_everything(store: Store, damaged: range) -> list[bytes]:
    """Every readable message, asserting that only `damaged` offsets raise Corruption."""
    got = []
    offset = store.topic("t").start_offset
    end = store.topic("t").end_offset
    while offset < end:
        try:
            batch = store.read("t", offset, max_messages=1000)
        except Corruption:
            assert offset in damaged, offset
            offset = damaged.stop
            continue
        got.extend(m.value for m in batch)
        offset = batch[-1].offset + 1
    return got


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("index", ["index trusted", "power loss"])
def test_every_flipped_header_bit_keeps_every_other_message(tmp_path, template, field, index):
    source, victim, position, header = template
    damaged = range(header.base_offset, header.next_offset)
    values = expected_values()
    survivors = values[: damaged.start] + values[damaged.stop :]
    first_byte, size = FIELDS[field]
    for bit in range(8 * size):
        copy = tmp_path / f"{field}-{bit}"
        shutil.copytree(source, copy)
        flip(str(copy / victim), 8 * (position + first_byte) + bit)
        if index == "power loss":
            lose_power(copy)
        with Store(copy) as store:
            where = f"{field} bit {bit}"
            assert store.topic("t").end_offset == len(values), where
            assert store.stats.truncations == 0, where
            assert read_everything(store, damaged) == survivors, where
            for offset in (damaged.start, damaged.stop - 1):
                with pytest.raises(Corruption) as err:
                    store.read("t", offset)
                assert err.value.file == str(copy / victim), where
            assert store.write("t", b"after") == len(values), where
        report = check_store(str(copy))
        places = [(d.file, d.position) for d in report.damage]
        assert places == [(str(copy / victim), position)], where
        shutil.rmtree(copy)


def test_damaged_last_frame_of_a_sealed_segment_keeps_the_segments_after_it(tmp_path):
    values = expected_values()[:200]
    with Store(tmp_path) as store:
        store.create_topic("t", segment_bytes=4096)
        for i in range(0, len(values), BATCH):
            store.write_many("t", values[i : i + BATCH])
    [directory] = glob.glob(os.path.join(tmp_path, "topics", "*-t"))
    first = sorted(glob.glob(os.path.join(directory, "*.log")))[0]
    position, header = list(frame_positions(first))[-1]
    flip(first, 8 * position + 20)  # a high bit of the length: runs past the end of the file
    lose_power(tmp_path)
    damaged = range(header.base_offset, header.next_offset)
    with Store(tmp_path) as store:
        assert store.topic("t").end_offset == len(values)
        assert store.stats.truncations == 0
        assert read_everything(store, damaged) == values[: damaged.start] + values[damaged.stop :]


def test_damaged_final_frame_with_nothing_after_it_is_cut_as_a_torn_tail(tmp_path):
    """The newest frame of the newest segment: a torn write and a flipped bit look alike,
    and nothing after it proves the log went on, so it is cut, logged and counted."""
    with Store(tmp_path) as store:
        store.create_topic("t")
        store.write_many("t", [b"a", b"b"])
        store.write_many("t", [b"c", b"d"])
    [directory] = glob.glob(os.path.join(tmp_path, "topics", "*-t"))
    [segment] = glob.glob(os.path.join(directory, "*.log"))
    size = os.path.getsize(segment)
    position, last = list(frame_positions(segment))[-1]
    flip(segment, 8 * (position + rec.HEADER_SIZE) + 3)
    lose_power(tmp_path)
    with Store(tmp_path) as store:
        assert store.topic("t").end_offset == 2
        assert store.stats.truncations == 1
        assert store.stats.truncated_bytes == last.length
        assert [m.value for m in store.read("t", 0)] == [b"a", b"b"]
    assert os.path.getsize(segment) == size - last.length
