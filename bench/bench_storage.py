"""pytest-benchmark versions of the storage workloads of `bench/run_storage.py`.

    python -m pytest bench/bench_storage.py                # a couple of minutes
    python -m pytest bench/bench_storage.py -k replay      # one family

Each benchmark group holds logstore and the baseline it is compared with, and one round of
both handles the same messages, so the group's table reads as the ratio `run_storage.py`
prints. Counts are smaller than the runner's; the workload code is the runner's own.
Rounds and iterations are fixed (`pedantic`), so a fast baseline cannot fill the disk.

bench/ is not a package: pytest's default ("prepend") import mode puts this directory on
`sys.path`, which is how `run_storage` imports. The peak RSS figures are in `extra_info`
(`--benchmark-json`); their timings only say how long the child ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from run_storage import (
    BATCH,
    POLICIES,
    SIZES,
    THREADS,
    TOPIC,
    WriterPool,
    crashed_store,
    default_base_dir,
    fill,
    framed,
    naive_fill,
    naive_replay,
    peak_rss_mib,
    replay,
    size_label,
)

from logstore import Store

REPLAY_MSGS = 100_000
BIG_MSGS = 1_000_000
THREAD_MSGS = 640  # every thread count writes this many per round, in all
ROUNDS = {1: {"rounds": 20, "iterations": 200}, BATCH: {"rounds": 10, "iterations": 5}}

SIZE_IDS = [size_label(s).replace(" ", "") for s in SIZES]


@pytest.fixture(scope="module")
def root():
    """A directory on the repository's disk (not /tmp, which may be a tmpfs), removed after."""
    base = os.environ.get("LOGSTORE_BENCH_DIR") or default_base_dir()
    path = tempfile.mkdtemp(prefix="logstore-bench-", dir=base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def path(root):
    """A fresh path for one benchmark, removed after it."""
    p = tempfile.mkdtemp(dir=root)
    yield os.path.join(p, "data")
    shutil.rmtree(p, ignore_errors=True)


def open_topic(path: str, policy: str) -> Store:
    store = Store(path, fsync=policy)
    store.create_topic(TOPIC)
    return store


def write_fdatasync(fd: int, data: bytes) -> None:
    os.write(fd, data)
    os.fdatasync(fd)


# ------------------------------------------------------------------ appends


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("batch", [1, BATCH], ids=["one", "batch"])
@pytest.mark.parametrize("policy", POLICIES)
def test_append(benchmark, path, policy, batch, size):
    """`write` (one message) or `write_many` (1,000) per call into a fresh store."""
    benchmark.group = f"append {'one' if batch == 1 else 'batch of 1,000'}, {size_label(size)}"
    value = b"x" * size
    with open_topic(path, policy) as store:
        if batch == 1:
            call, arg = store.write, value
        else:
            call, arg = store.write_many, [value] * batch
        benchmark.pedantic(call, args=(TOPIC, arg), **ROUNDS[batch])


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("batch", [1, BATCH], ids=["one", "batch"])
@pytest.mark.parametrize("durable", [False, True], ids=["file.write", "write+fdatasync"])
def test_append_baseline(benchmark, path, durable, batch, size):
    """The same framed bytes per call: buffered `file.write`, or `os.write` + `fdatasync`."""
    benchmark.group = f"append {'one' if batch == 1 else 'batch of 1,000'}, {size_label(size)}"
    data = framed(size, batch)
    if durable:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            benchmark.pedantic(write_fdatasync, args=(fd, data), **ROUNDS[batch])
        finally:
            os.close(fd)
    else:
        with open(path, "wb") as f:
            benchmark.pedantic(f.write, args=(data,), **ROUNDS[batch])


# --------------------------------------------------------- concurrent durable


@pytest.mark.parametrize("threads", THREADS)
def test_durable_threads(benchmark, path, threads):
    """One round: `threads` threads together write THREAD_MSGS messages, fsync="always"."""
    benchmark.group = f"durable append from threads, {THREAD_MSGS} x 100 B per round"
    with open_topic(path, "always") as store:
        pool = WriterPool(store, threads, 100)
        try:
            benchmark.pedantic(pool.run, args=(THREAD_MSGS // threads,), rounds=10)
        finally:
            pool.close()


def test_durable_threads_baseline(benchmark, path):
    """THREAD_MSGS rounds of `os.write` + `fdatasync` of one framed 100 B message."""
    benchmark.group = f"durable append from threads, {THREAD_MSGS} x 100 B per round"
    data = framed(100, 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def loop() -> None:
        for _ in range(THREAD_MSGS):
            write_fdatasync(fd, data)

    try:
        benchmark.pedantic(loop, rounds=10)
    finally:
        os.close(fd)


# ------------------------------------------------------------------- replay


@pytest.fixture(scope="module", params=SIZES, ids=SIZE_IDS)
def replay_data(root, request):
    """{"batches": path, "one at a time": path, "naive": path} of REPLAY_MSGS messages."""
    size = request.param
    paths = {}
    for how, batch in (("batches", BATCH), ("one at a time", 1)):
        paths[how] = os.path.join(root, f"replay-{size}-{batch}")
        fill(paths[how], size, REPLAY_MSGS, batch)
    paths["naive"] = os.path.join(root, f"naive-{size}")
    naive_fill(paths["naive"], size, REPLAY_MSGS)
    yield size, paths
    for p in paths.values():
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


@pytest.mark.parametrize("written", ["batches", "one at a time"])
def test_replay(benchmark, replay_data, written):
    """Read all REPLAY_MSGS messages, 1,000 per `read`, as full `Message` objects."""
    size, paths = replay_data
    benchmark.group = f"replay {REPLAY_MSGS:,} x {size_label(size)}"
    with Store(paths[written]) as store:
        count = benchmark.pedantic(replay, args=(store,), rounds=5)
    assert count == REPLAY_MSGS


def test_replay_baseline(benchmark, replay_data):
    """The naive struct-unpacking loop over the same records."""
    size, paths = replay_data
    benchmark.group = f"replay {REPLAY_MSGS:,} x {size_label(size)}"
    count = benchmark.pedantic(naive_replay, args=(paths["naive"],), rounds=5)
    assert count == REPLAY_MSGS


# --------------------------------------------------------- open and memory


@pytest.fixture(scope="module")
def big(root):
    """{"clean": path, "crashed": path, "empty": path}: BIG_MSGS x 100 B, and none."""
    paths = {how: os.path.join(root, f"big-{how}") for how in ("clean", "crashed", "empty")}
    fill(paths["clean"], 100, BIG_MSGS, BATCH)
    crashed_store(paths["crashed"], BIG_MSGS)
    with Store(paths["empty"]) as store:
        store.create_topic(TOPIC)
    yield paths
    for p in paths.values():
        shutil.rmtree(p, ignore_errors=True)


def open_store(opened: list[Store], path: str) -> None:
    store = Store(path)
    store.topic(TOPIC)  # the topic's recovery runs on first use
    opened.append(store)


def close_store(opened: list[Store], path: str) -> None:
    opened.pop().close()


@pytest.mark.parametrize("how", ["empty", "clean", "crashed"])
def test_open(benchmark, big, root, how):
    """`Store(path)` + `store.topic()`; after a crash, of a fresh copy each round."""
    benchmark.group = f"open {BIG_MSGS:,} x 100 B (empty: the fixed cost)"
    opened: list[Store] = []
    if how != "crashed":
        benchmark.pedantic(open_store, args=(opened, big[how]), teardown=close_store, rounds=5)
        return
    work = os.path.join(root, "crash-copy")

    def copy():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(big["crashed"], work)
        return (opened, work), {}

    benchmark.pedantic(open_store, setup=copy, teardown=close_store, rounds=5)
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("mode", ["import", "replay"])
def test_peak_rss(benchmark, big, mode):
    """A child process that imports logstore, or replays BIG_MSGS; extra_info has its RSS."""
    benchmark.group = f"peak RSS of a child (see extra_info), {BIG_MSGS:,} x 100 B"
    rss = benchmark.pedantic(peak_rss_mib, args=(mode, big["clean"]), rounds=1)
    benchmark.extra_info["peak_rss_mib"] = round(rss, 1)
