"""Retention (SPEC §5): whole old segments go, never the active one; readers racing it."""

from __future__ import annotations

import glob
import os
import threading
import time

from logstore import OffsetOutOfRange, Store


def test_retention_by_bytes_deletes_whole_old_segments(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=4096, retention_bytes=3 * 4096)
        for i in range(1000):
            store.write("t", b"%04d" % i + b"." * 60)
        store._engine._log("t").apply_retention()  # as the maintenance thread does every second
        info = store.topic("t")
        assert info.start_offset > 0 and info.end_offset == 1000
        assert info.size_bytes <= 3 * 4096 + 4096
        first = store.read("t", info.start_offset, max_messages=1)[0]
        assert first.value[:4] == b"%04d" % info.start_offset
        try:
            store.read("t", 0)
            raise AssertionError("offset 0 should be out of range")
        except OffsetOutOfRange as exc:
            assert exc.start_offset == info.start_offset
    with Store(data_dir) as store:
        assert store.topic("t").start_offset == info.start_offset


def test_retention_by_age_deletes_segments_whose_records_are_older_than_the_limit(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=4096, retention_ms=400)
        for _ in range(300):
            store.write("t", b"x" * 64)
        topic = store._engine._log("t")
        holding_last_old = topic._segments[-1]
        assert holding_last_old > 0
        time.sleep(0.5)  # every record so far is now older than the limit
        for _ in range(300):
            store.write("t", b"y" * 64)  # rolls run retention, as the maintenance thread does
        topic.apply_retention()
        assert store.topic("t").start_offset == holding_last_old  # it holds the limit's edge
        assert store.read("t", holding_last_old)[0].value == b"x" * 64


def test_retention_by_age_ignores_file_times(data_dir):
    """Age comes from the records' timestamps: a copied or touched segment keeps its age."""
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=4096, retention_ms=60_000)
        for _ in range(300):
            store.write("t", b"x" * 64)
        segments = sorted(glob.glob(os.path.join(data_dir, "topics", "*-t", "*.log")))
        old = time.time() - 3600
        for path in segments:
            os.utime(path, (old, old))
        assert store._engine._log("t").apply_retention() == 0
        assert store.topic("t").start_offset == 0


def test_retention_never_deletes_the_active_segment(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=4096, retention_ms=1, retention_bytes=1)
        for _ in range(200):
            store.write("t", b"x" * 64)
        time.sleep(0.01)
        store._engine._log("t").apply_retention()
        info = store.topic("t")
        assert info.segments == 1 and info.end_offset == 200
        assert store.read("t", info.start_offset, max_messages=1000)[-1].offset == 199


def test_reader_racing_retention_gets_data_or_a_clean_out_of_range(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=4096, retention_bytes=2 * 4096)
        stop = threading.Event()
        problems: list[BaseException] = []
        reads = {"ok": 0, "out_of_range": 0}

        def reader():
            offset = 0
            while not stop.is_set():
                try:
                    messages = store.read("t", offset, max_messages=50, wait=0.01)
                    for m in messages:
                        assert m.value == b"%06d" % m.offset + b"." * 58
                    offset = messages[-1].offset + 1 if messages else offset
                    reads["ok"] += 1
                except OffsetOutOfRange as exc:
                    reads["out_of_range"] += 1
                    offset = exc.start_offset
                except BaseException as exc:  # anything else is a bug
                    problems.append(exc)
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(3000):
            store.write("t", b"%06d" % i + b"." * 58)
        stop.set()
        for t in threads:
            t.join()
        assert problems == []
        assert reads["ok"] > 0
        assert store.topic("t").start_offset > 0


def test_interval_policy_flushes_in_the_background(data_dir):
    with Store(data_dir, fsync="interval", fsync_interval=0.05) as store:
        store.create_topic("t")
        store.write("t", b"x")
        deadline = time.monotonic() + 5
        while store.stats.fsyncs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.stats.fsyncs >= 1
        assert store.read("t", 0)[0].value == b"x"
