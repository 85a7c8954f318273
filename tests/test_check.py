"""`logstore check` (logstore.check.run): progress, every damaged place, exit codes."""

from __future__ import annotations

import glob
import io
import os

from logstore import Store
from logstore.engine.local.check import run


def make_store(path, count=2000):
    with Store(path, fsync="never") as store:
        store.create_topic("a", segment_bytes=4096)
        store.create_topic("b")
        for start in range(0, count, 10):
            store.write_many("a", [b"a%d" % i for i in range(start, start + 10)])
            store.write("b", b"b%d" % start)


def test_clean_store_exits_zero_and_counts_everything(tmp_path):
    make_store(tmp_path)
    out = io.StringIO()
    assert run(str(tmp_path), out) == 0
    text = out.getvalue()
    assert "no damage" in text
    assert "2 topic(s)" in text and "2200 message(s)" in text
    assert "(100%)" in text


def test_damage_in_two_topics_is_listed_and_exits_nonzero(tmp_path):
    make_store(tmp_path)
    for topic in ("a", "b"):
        segment = sorted(glob.glob(os.path.join(tmp_path, "topics", f"*-{topic}", "*.log")))[0]
        with open(segment, "r+b") as f:
            f.seek(200)
            f.write(b"\x00\x01\x02")
    out = io.StringIO()
    assert run(str(tmp_path), out) == 1
    damaged = [line for line in out.getvalue().splitlines() if line.startswith("DAMAGED")]
    assert len(damaged) == 2
    assert "topic 'a'" in damaged[0] and "topic 'b'" in damaged[1]


def test_missing_segment_in_the_middle_is_reported_as_a_gap(tmp_path):
    make_store(tmp_path)
    segments = sorted(glob.glob(os.path.join(tmp_path, "topics", "*-a", "*.log")))
    os.unlink(segments[1])
    out = io.StringIO()
    assert run(str(tmp_path), out) == 1
    assert "are missing" in out.getvalue()


def test_not_a_data_directory_exits_two(tmp_path):
    out = io.StringIO()
    assert run(str(tmp_path), out) == 2
    assert "not a logstore data directory" in out.getvalue()
