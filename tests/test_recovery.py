"""Recovery at open (SPEC §5): torn tails, damaged and stale indexes, interrupted operations.

Each test damages real files the way a crash or a bad disk would, then reopens the store.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import lmdb
import pytest

from logstore import Corruption, Store
from logstore import frames as rec
from logstore.engine.local.check import check_store
from logstore.engine.local.index import boot_id
from logstore.engine.local.meta import IndexSession, MetaStore


def segments_of(data_dir, topic="t"):
    [directory] = glob.glob(os.path.join(data_dir, "topics", f"*-{topic}"))
    return sorted(glob.glob(os.path.join(directory, "*.log")))


def fill(data_dir, count=20, segment_bytes=64 * 2**20, batch=1):
    """A closed store with topic t holding `count` messages b"m<offset>"."""
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=segment_bytes)
        for start in range(0, count, batch):
            store.write_many("t", [b"m%d" % i for i in range(start, min(count, start + batch))])


def values(store, topic="t"):
    return [m.value for m in store.read(topic, store.topic(topic).start_offset, 100_000)]


def test_torn_tail_is_cut_at_every_byte_position_of_the_last_record(tmp_path):
    original = tmp_path / "original"
    fill(original, count=10)
    [segment] = segments_of(original)
    size = os.path.getsize(segment)
    last_frame = size - rec.encode_many(9, 0, [b"m9"]).__len__()
    for cut in range(last_frame, size):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(original, copy)
        [segment] = segments_of(copy)
        os.truncate(segment, cut)
        with Store(copy) as store:
            assert values(store) == [b"m%d" % i for i in range(9)], cut
            # Cut on disk by recovery (the first use of the topic loads it), before a write
            # could overwrite the torn bytes.
            assert os.path.getsize(segment) == last_frame, cut
            assert store.stats.truncations == (1 if cut > last_frame else 0)
            assert store.stats.truncated_bytes == cut - last_frame
            assert store.write("t", b"again") == 9
        with Store(copy) as store:
            assert values(store)[-1] == b"again"
            assert store.stats.truncations == 0


@pytest.mark.parametrize("garbage", [b"\x00" * 100, os.urandom(1000), b"\xff" * 7])
def test_garbage_after_the_last_record_is_cut(tmp_path, garbage):
    fill(tmp_path, count=5)
    [segment] = segments_of(tmp_path)
    size = os.path.getsize(segment)
    with open(segment, "ab") as f:
        f.write(garbage)
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(5)]
        assert store.stats.truncated_bytes == len(garbage)
    assert os.path.getsize(segment) == size


def test_torn_batch_is_all_or_nothing(tmp_path):
    fill(tmp_path, count=3)
    with Store(tmp_path, fsync="never") as store:
        store.write_many("t", [b"batch%d" % i for i in range(100)])
    [segment] = segments_of(tmp_path)
    os.truncate(segment, os.path.getsize(segment) - 1)
    with Store(tmp_path) as store:
        assert values(store) == [b"m0", b"m1", b"m2"]


def test_flipped_bit_in_an_old_segment_raises_corruption_and_check_finds_it(tmp_path):
    fill(tmp_path, count=400, segment_bytes=4096)
    first = segments_of(tmp_path)[0]
    value_of_m2 = 2 * 38 + 36  # frames of one 2-byte value are 38 bytes; its value at 36
    with open(first, "r+b") as f:
        f.seek(value_of_m2)
        byte = f.read(1)
        f.seek(value_of_m2)
        f.write(bytes([byte[0] ^ 0x10]))
    with Store(tmp_path) as store:
        # A read stops before the damage; one that starts at it raises.
        assert [m.value for m in store.read("t", 0, max_messages=1000)] == [b"m0", b"m1"]
        with pytest.raises(Corruption) as err:
            store.read("t", 2, max_messages=1000)
        assert (err.value.file, err.value.position) == (first, 2 * 38)
        assert "CRC" in str(err.value)
        end = store.topic("t").end_offset
        assert store.read("t", end - 1)[0].value == b"m%d" % (end - 1)
    report = check_store(str(tmp_path))
    assert len(report.damage) == 1
    assert report.damage[0].file == first


def test_check_reports_every_damaged_place_and_a_clean_store_has_none(tmp_path):
    fill(tmp_path, count=300, segment_bytes=4096)
    assert check_store(str(tmp_path)).damage == []
    segs = segments_of(tmp_path)
    for path, where in ((segs[0], 60), (segs[1], 300), (segs[1], 1000)):
        with open(path, "r+b") as f:
            f.seek(where)
            f.write(b"\xde\xad\xbe\xef")
    report = check_store(str(tmp_path))
    places = [(d.file, d.position) for d in report.damage]
    assert [file for file, _ in places] == [segs[0], segs[1], segs[1]]
    assert places[0][1] <= 60 and places[1][1] <= 300 < places[2][1] <= 1000
    assert report.messages < 300


def test_deleted_index_is_rebuilt_from_the_segments(tmp_path):
    fill(tmp_path, count=2000, segment_bytes=8192, batch=7)
    shutil.rmtree(tmp_path / "index")
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(2000)]
        assert store.read("t", 1234, max_messages=1)[0].value == b"m1234"
        assert store.write("t", b"next") == 2000


def test_stale_index_is_caught_up_from_the_segments(tmp_path):
    fill(tmp_path, count=500, segment_bytes=8192)
    shutil.copytree(tmp_path / "index", tmp_path / "old-index")
    with Store(tmp_path, fsync="never") as store:
        store.write_many("t", [b"m%d" % i for i in range(500, 3000)])
    shutil.rmtree(tmp_path / "index")
    os.rename(tmp_path / "old-index", tmp_path / "index")
    with Store(tmp_path) as store:
        assert store.topic("t").end_offset == 3000
        assert store.read("t", 2999)[0].value == b"m2999"
        assert store.read("t", 1500, max_messages=1)[0].value == b"m1500"
        assert values(store) == [b"m%d" % i for i in range(3000)]


def test_index_ahead_of_the_segments_is_dropped_and_rebuilt(tmp_path):
    fill(tmp_path, count=3000, segment_bytes=16384)
    segs = segments_of(tmp_path)
    for path in segs[2:]:
        os.unlink(path)  # as if a power loss had lost them, while the index kept its entries
    with Store(tmp_path) as store:
        end = store.topic("t").end_offset
        assert 0 < end < 3000
        assert values(store) == [b"m%d" % i for i in range(end)]
        assert store.stats.index_rebuilds == 1
        assert store.write("t", b"next") == end


def index_session(data_dir):
    meta = MetaStore(str(data_dir / "meta"))
    try:
        return meta.index_session()
    finally:
        meta.close()


def leave_index_open(data_dir, boot=b"some-earlier-boot"):
    """What a crash leaves: the index session recorded open (by another boot: power loss)."""
    meta = MetaStore(str(data_dir / "meta"))
    meta.record_index_session(boot, clean=False)
    meta.close()


def test_index_left_open_by_another_boot_is_rebuilt(tmp_path):
    fill(tmp_path, count=100)
    leave_index_open(tmp_path)
    with Store(tmp_path) as store:
        assert store.stats.index_rebuilds == 1
        assert values(store) == [b"m%d" % i for i in range(100)]
    assert index_session(tmp_path) == IndexSession(boot_id(), clean=True)


def test_index_left_open_by_another_boot_is_deleted_without_being_mapped(tmp_path):
    """After a power loss the index file can hold any mix of pages, and LMDB may crash the
    process walking them: it must be deleted unread. Garbage in every page (meta pages
    included) would crash or fail an open that mapped it."""
    fill(tmp_path, count=100)
    leave_index_open(tmp_path)
    data = tmp_path / "index" / "data.mdb"
    data.write_bytes(os.urandom(os.path.getsize(data)))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, logstore; logstore.Store(sys.argv[1]).close()",
            tmp_path,
        ],
        capture_output=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr.decode()
    assert b"restarted while the store was open" in probe.stderr
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(100)]
        assert store.stats.index_rebuilds == 0  # the previous open rebuilt it, closed clean


def test_index_with_no_recorded_session_is_rebuilt(tmp_path):
    """A store written by a version that kept the marker inside the index: not proven."""
    fill(tmp_path, count=50)
    env = lmdb.open(str(tmp_path / "meta"), max_dbs=16)
    with env.begin(write=True, db=env.open_db(b"state")) as txn:
        txn.delete(b"index")
    env.close()
    with Store(tmp_path) as store:
        assert store.stats.index_rebuilds == 1
        assert values(store) == [b"m%d" % i for i in range(50)]


def test_killed_writer_keeps_its_index_in_the_same_boot(tmp_path):
    fill(tmp_path, count=50)
    leave_index_open(tmp_path, boot_id())  # what SIGKILL leaves
    with Store(tmp_path) as store:
        assert store.stats.index_rebuilds == 0
        assert values(store) == [b"m%d" % i for i in range(50)]


def test_read_only_store_does_not_map_an_index_left_open_by_another_boot(tmp_path):
    fill(tmp_path, count=30)
    leave_index_open(tmp_path)
    data = tmp_path / "index" / "data.mdb"
    data.write_bytes(os.urandom(os.path.getsize(data)))
    with Store(tmp_path, readonly=True) as store:
        assert values(store) == [b"m%d" % i for i in range(30)]


def test_unreadable_index_environment_is_recreated(tmp_path):
    fill(tmp_path, count=100)
    with open(tmp_path / "index" / "data.mdb", "r+b") as f:
        f.write(b"\x00" * 8192)
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(100)]


def test_records_written_after_the_last_index_commit_are_found(tmp_path):
    """A crash between a segment write and its index commit: the index lags the segment."""
    fill(tmp_path, count=10)
    [segment] = segments_of(tmp_path)
    with open(segment, "ab") as f:
        f.write(rec.encode_many(10, 1, [b"m10", b"m11"]))
        f.write(rec.encode_many(12, 2, [b"m12"]))
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(13)]
        assert store.write("t", b"m13") == 13


def test_interrupted_delete_leaves_no_trace_and_recreate_starts_at_zero(tmp_path):
    fill(tmp_path, count=50)
    env = lmdb.open(str(tmp_path / "meta"), max_dbs=16)
    with env.begin(write=True, db=env.open_db(b"topics")) as txn:
        txn.delete(b"t")  # the metadata commit of a delete happened; its file removal did not
    env.close()
    with Store(tmp_path) as store:
        assert store.topics() == []
        assert os.listdir(tmp_path / "topics") == []
        store.create_topic("t")
        assert store.write("t", b"fresh") == 0
        assert values(store) == [b"fresh"]


def test_interrupted_create_leaves_no_orphan_directory(tmp_path):
    fill(tmp_path, count=1)
    os.mkdir(tmp_path / "topics" / "999-ghost")
    open(tmp_path / "topics" / "999-ghost" / "00000000000000000000.log", "wb").close()
    with Store(tmp_path) as store:
        assert [t.id for t in store.topics()] == ["t"]
    assert sorted(os.listdir(tmp_path / "topics")) == [
        os.path.basename(os.path.dirname(segments_of(tmp_path)[0]))
    ]


def test_topic_directory_without_segments_gets_an_empty_one(tmp_path):
    fill(tmp_path, count=3)
    os.unlink(segments_of(tmp_path)[0])
    with Store(tmp_path) as store:
        assert store.topic("t").end_offset == 0
        assert store.write("t", b"x") == 0


def test_interrupted_roll_leaves_a_usable_empty_segment(tmp_path):
    fill(tmp_path, count=10)
    directory = os.path.dirname(segments_of(tmp_path)[0])
    open(os.path.join(directory, "00000000000000000010.log"), "wb").close()
    with Store(tmp_path) as store:
        assert store.topic("t").segments == 2
        assert store.write("t", b"m10") == 10
        assert values(store) == [b"m%d" % i for i in range(11)]


def test_lost_tail_of_a_sealed_segment_is_kept_as_damage_and_later_segments_stay(tmp_path):
    """A sealed segment that lost its last bytes (fsync="never", or a bad disk) is followed by
    a segment that continues the log: the lost offsets are damage, not a torn tail, so the
    segments after them and every message in them stay."""
    fill(tmp_path, count=400, segment_bytes=4096)
    segs = segments_of(tmp_path)
    assert len(segs) >= 3
    os.truncate(segs[1], os.path.getsize(segs[1]) - 3)
    shutil.rmtree(tmp_path / "index")
    third = int(os.path.basename(segs[2]).split(".")[0])
    with Store(tmp_path) as store:
        assert store.topic("t").end_offset == 400
        assert store.topic("t").segments == len(segs)
        assert store.stats.truncations == 0
        with pytest.raises(Corruption) as err:
            store.read("t", third - 1)
        assert err.value.file == segs[1]
        before = store.read("t", 0, max_messages=1000)
        assert [m.value for m in before] == [b"m%d" % i for i in range(third - 1)]
        after = store.read("t", third, max_messages=1000)
        assert [m.value for m in after] == [b"m%d" % i for i in range(third, 400)]
        assert store.write("t", b"next") == 400
    assert [d.file for d in check_store(str(tmp_path)).damage] == [segs[1]]


def test_torn_frame_followed_by_zeros_is_cut_not_kept_as_damage(tmp_path):
    """After a power loss the file can end in a frame whose header landed but whose body did
    not, then zeros (the size grew before the data did). That is a torn tail, not damage."""
    fill(tmp_path, count=5)
    [segment] = segments_of(tmp_path)
    size = os.path.getsize(segment)
    torn = bytearray(rec.encode_many(5, 1, [b"x" * 5000]))
    torn[rec.HEADER_SIZE + 4 :] = bytes(len(torn) - rec.HEADER_SIZE - 4)
    with open(segment, "ab") as f:
        f.write(bytes(torn) + bytes(8192))
    with Store(tmp_path) as store:
        assert values(store) == [b"m%d" % i for i in range(5)]
        assert store.write("t", b"m5") == 5
    assert os.path.getsize(segment) == size + len(rec.encode_many(5, 1, [b"m5"]))
