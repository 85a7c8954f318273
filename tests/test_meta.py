"""Creating a store is atomic (`logstore.meta`): a crash at any instant of the first open
leaves no store or one that opens; leftovers of an unfinished creation are cleared, logged.

The crash is real: strace kills the process (SIGKILL) at the Nth durability syscall of the
first open, for every N, then the directory is opened again in this process.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import lmdb
import pytest

from logstore import Store

STRACE = shutil.which("strace")
CALLS = "mkdir,rename,fsync,fdatasync,unlink,ftruncate,pwrite64,write,msync,openat"
# The imports end with a marker write, so the calls after it are the open's own.
FIRST_OPEN = (
    "import sys, os, logstore; os.write(2, b'ready\\n'); logstore.Store(sys.argv[1]).close()"
)


def strace(path, *options: str) -> subprocess.CompletedProcess:
    """Run FIRST_OPEN on `path` under strace with `options`, tracing CALLS."""
    command = [STRACE, "-f", "-qq", "-e", f"trace={CALLS}", *options]
    return subprocess.run(
        [*command, sys.executable, "-c", FIRST_OPEN, str(path)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def calls_before_the_first_open(tmp_path) -> int:
    """How many CALLS the interpreter makes up to the marker (they vary little run to run)."""
    trace = tmp_path / "trace"
    strace(tmp_path / "probe", "-o", str(trace)).check_returncode()
    lines = [line for line in trace.read_text().splitlines() if "(" in line]
    return next(i for i, line in enumerate(lines) if 'write(2, "ready' in line) + 1


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_first_open_killed_at_every_durability_call_leaves_no_store_or_one_that_opens(
    tmp_path,
):
    before = calls_before_the_first_open(tmp_path)
    for n in range(before + 1, before + 1000):
        path = tmp_path / f"killed-at-{n}"
        run = strace(path, "-o", "/dev/null", "-e", f"inject={CALLS}:signal=KILL:when={n}")
        if run.returncode == 0:
            break  # the open finished before its nth call: every call was interrupted once
        with Store(path) as store:
            store.create_topic("t")
            assert store.write("t", b"works") == 0
        assert not os.path.exists(str(path / "meta") + ".new"), n
        with Store(path) as store:
            assert store.read("t", 0)[0].value == b"works"
    assert n - before > 20  # the open's own calls were the ones interrupted


@pytest.mark.parametrize(
    "leftover, logged",
    [
        ("meta.new", "interrupted creation"),  # died before the rename
        ("meta", "unfinished creation"),  # an older version's non-atomic creation
    ],
)
def test_leftover_of_an_unfinished_creation_is_cleared_and_logged(
    tmp_path, caplog, leftover, logged
):
    """Before creation was atomic, a power loss could leave meta/ that LMDB refuses forever
    (MDB_INVALID). With no topic directory yet there is nothing to protect: start over."""
    (tmp_path / "topics").mkdir()
    (tmp_path / leftover).mkdir()
    (tmp_path / leftover / "data.mdb").write_bytes(b"\x00" * 4096)
    with (
        caplog.at_level(logging.WARNING, logger="logstore.engine.local.meta"),
        Store(tmp_path) as store,
    ):
        store.create_topic("t")
    assert logged in caplog.text
    assert not (tmp_path / "meta.new").exists()
    with Store(tmp_path) as store:
        assert [t.id for t in store.topics()] == ["t"]


def test_unreadable_metadata_of_a_store_with_topics_is_never_recreated(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t")
    (tmp_path / "meta" / "data.mdb").write_bytes(b"\x00" * 8192)
    with pytest.raises(lmdb.Error):
        Store(tmp_path)
    assert (tmp_path / "meta" / "data.mdb").read_bytes() == b"\x00" * 8192
