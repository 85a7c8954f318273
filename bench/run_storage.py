"""Storage benchmarks of logstore, side by side with this machine's raw limits.

    python bench/run_storage.py            # full: 5 repeats, about 4 minutes
    python bench/run_storage.py --quick    # smoke run: small counts, well under a minute
    python bench/run_storage.py --out      # also write the table to bench/RESULTS-storage.md

Every figure is the median of repeated runs. Each repeat runs the baseline and then logstore,
seconds apart, and the ratio is the median of those paired ratios: on a shared machine a
burst of load slows both halves of a pair, so the ratio is steadier than either figure.
The baselines are what the hardware and Python allow without logstore:

- `file.write`: buffered writes of the same framed bytes, no fsync (fsync="never"/"interval");
- `write+fdatasync`: an `os.write` + `os.fdatasync` loop of the same framed bytes (durable);
- `naive replay`: the same records in a length-prefixed file, read back into tuples with
  `struct.unpack_from` in a plain loop (replay);
- open of an empty store (open time), and a child that only imports logstore (peak RSS).

Rows with a target say met or MISSED, and a `targets:` block after the table repeats them.
The group-commit and replay targets are issue #10's: 64 writer threads under fsync="always"
against the same 64 under "never" and against one thread under "always", next to the disk's
fsync latency (1 / the write+fdatasync rate); replay of one-message frames against replay
of batched frames of the same size, both read in every repeat.

Notes on what is measured: fsync="interval" syncs from a background thread once a second,
so its rows hardly include an fsync; "open after a SIGKILLed writer" opens a fresh copy of
a store whose writer was killed without closing (recovery scans the un-indexed tail), and
"index lost" the same without its index (a full rebuild, as after a power loss); peak RSS
is the child's VmHWM, since Linux hands a parent's peak down to its child's `ru_maxrss`.

Data lives in a temporary directory on the disk the repository is on (`--dir` to choose):
`/tmp` may be a tmpfs, where fsync costs nothing and the durable rows would flatter us.
Each measuring loop stops at a message count or a time limit, whichever comes first.
`bench/bench_storage.py` runs the same workloads under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from logstore import Store
from logstore import frames as record

SIZES = (100, 1024)
POLICIES = ("never", "interval", "always")
BATCH = 1000
READ_BATCH = 1000
THREADS = (1, 8, 64)
TOPIC = "t"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS-storage.md")

# Targets from the storage-engine issue.
BATCH_NEVER_TARGET = 1_000_000  # msg/s, 100 B, write_many of 1,000, fsync="never"
REPLAY_TARGET = 1_000_000  # msg/s, full Message objects
DURABLE_SLOWDOWN = 1.3  # single durable append vs the raw write+fdatasync loop
# Targets restated by issue #10 ("Hot paths").
GROUP_COMMIT_VS_NEVER = 0.8  # 64 threads under fsync="always" vs the same under "never"
GROUP_COMMIT_VS_ONE = 6.0  # 64 threads vs 1 thread, both fsync="always"
REPLAY_ONE_AT_A_TIME_SLOWDOWN = 1.5  # replay of one-message frames vs of batched frames
OPEN_TARGET = 0.2  # seconds, 1,000,000 messages


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does; `--quick` shrinks everything."""

    repeats: int
    seconds: float  # time limit of one measuring loop
    one_msgs: int  # message limit of a one-at-a-time loop (fsync never/interval)
    batch_msgs: int  # message limit of a batch loop
    durable_msgs: int  # message limit of a durable one-at-a-time loop
    loop_bytes: int  # byte limit of any append loop, so that fast baselines stay small
    thread_msgs: int  # messages all threads together write, per run
    replay_msgs: int  # messages in each replayed log
    big_msgs: int  # messages in the store whose open time and replay RSS are measured

    def append_limit(self, policy: str, batch: int, size: int) -> int:
        """The message limit of one append loop (logstore's or its baseline's)."""
        if batch > 1:
            count = self.batch_msgs
        else:
            count = self.durable_msgs if policy == "always" else self.one_msgs
        return max(batch, min(count, self.loop_bytes // (size + 4)))


FULL = Scale(5, 1.0, 200_000, 2_000_000, 20_000, 2**28, 12_800, 200_000, 1_000_000)
QUICK = Scale(3, 0.1, 20_000, 200_000, 2_000, 2**25, 1_280, 20_000, 200_000)


# ------------------------------------------------------------------ measuring


def rate(step: Callable[[], object], per_step: int, max_msgs: int, max_seconds: float) -> float:
    """Messages/s of calling `step` (which handles `per_step` messages) up to either limit.

    The clock is read once per 64 steps so that it costs nothing next to a buffered write.
    """
    max_steps = max(1, max_msgs // per_step)
    start = time.perf_counter()
    deadline = start + max_seconds
    steps = 0
    while steps < max_steps:
        chunk = min(64, max_steps - steps)
        for _ in range(chunk):
            step()
        steps += chunk
        if time.perf_counter() >= deadline:
            break
    return steps * per_step / (time.perf_counter() - start)


def framed(size: int, count: int) -> bytes:
    """The exact bytes logstore writes for one batch of `count` messages of `size` bytes."""
    return record.encode_many(0, 0, [b"x" * size] * count)


def append_rate(path: str, policy: str, size: int, batch: int, scale: Scale) -> float:
    """Messages/s appended to a fresh store, one at a time (`batch` 1) or in batches."""
    with Store(path, fsync=policy) as store:
        store.create_topic(TOPIC)
        value = b"x" * size
        if batch == 1:
            step = partial(store.write, TOPIC, value)
        else:
            step = partial(store.write_many, TOPIC, [value] * batch)
        return rate(step, batch, scale.append_limit(policy, batch, size), scale.seconds)


def file_write_rate(path: str, data: bytes, per_step: int, max_msgs: int, seconds: float) -> float:
    """Baseline (a): buffered `file.write` of `data` in a loop, no fsync."""
    with open(path, "wb") as f:
        return rate(partial(f.write, data), per_step, max_msgs, seconds)


def write_fsync_rate(path: str, data: bytes, per_step: int, max_msgs: int, seconds: float) -> float:
    """Baseline (b): `os.write` + `os.fdatasync` of `data` in a loop, to a growing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def step() -> None:
        os.write(fd, data)
        os.fdatasync(fd)

    try:
        return rate(step, per_step, max_msgs, seconds)
    finally:
        os.close(fd)


class WriterPool:
    """`threads` threads that, on each `run`, all call `store.write` at once.

    The threads live across runs, so a run times the appends, not thread start-up.
    """

    def __init__(self, store: Store, threads: int, size: int):
        self._store = store
        self._value = b"x" * size
        self._go = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._share = 0
        self._deadline = 0.0
        self._stop = False
        self._written = [0] * threads
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def run(self, share: int, seconds: float = 3600.0) -> int:
        """Each thread writes `share` messages, or fewer at the deadline; how many in all."""
        self._share, self._deadline = share, time.perf_counter() + seconds
        self._go.wait()
        self._done.wait()
        return sum(self._written)

    def close(self) -> None:
        self._stop = True
        self._go.wait()
        for t in self._threads:
            t.join()

    def _work(self, i: int) -> None:
        write, clock, value = self._store.write, time.perf_counter, self._value
        while True:
            self._go.wait()
            if self._stop:
                return
            n, share, deadline = 0, self._share, self._deadline
            while n < share and clock() < deadline:
                write(TOPIC, value)
                n += 1
            self._written[i] = n
            self._done.wait()


def threaded_rate(
    path: str, threads: int, size: int, total: int, seconds: float, policy: str = "always"
) -> float:
    """Messages/s of `threads` threads appending at once, `total` messages or `seconds` long."""
    with Store(path, fsync=policy) as store:
        store.create_topic(TOPIC)
        pool = WriterPool(store, threads, size)
        try:
            start = time.perf_counter()
            written = pool.run(max(1, total // threads), seconds)
            return written / (time.perf_counter() - start)
        finally:
            pool.close()


def fill(path: str, size: int, count: int, batch: int) -> None:
    """A store with `count` messages of `size` bytes in topic TOPIC, written `batch` at a time."""
    value = b"x" * size
    with Store(path, fsync="never") as store:
        store.create_topic(TOPIC)
        if batch == 1:
            for _ in range(count):
                store.write(TOPIC, value)
        else:
            values = [value] * batch
            for _ in range(count // batch):
                store.write_many(TOPIC, values)


def replay(store: Store) -> int:
    """Read the whole topic as full `Message` objects, 1,000 per `read`; how many."""
    read, end = store.read, store.topic(TOPIC).end_offset
    offset = count = 0
    while offset < end:
        messages = read(TOPIC, offset, READ_BATCH)
        offset = messages[-1].offset + 1
        count += len(messages)
    return count


def replay_rate(store: Store) -> float:
    start = time.perf_counter()
    count = replay(store)
    return count / (time.perf_counter() - start)


NAIVE = struct.Struct("<IQQ")  # value length, offset, timestamp


def naive_fill(path: str, size: int, count: int) -> None:
    """Baseline (c)'s file: the same records, each a length-prefixed `<IQQ` + value."""
    value = b"x" * size
    with open(path, "wb") as f:
        for offset in range(count):
            f.write(NAIVE.pack(size, offset, 0) + value)


def naive_read(buf: bytes, pos: int, limit: int) -> tuple[list[tuple], int]:
    """Up to `limit` (offset, timestamp, value) tuples from `pos`: one unpack per record."""
    unpack, header, end = NAIVE.unpack_from, NAIVE.size, len(buf)
    out = []
    while pos < end and len(out) < limit:
        size, offset, timestamp = unpack(buf, pos)
        start = pos + header
        pos = start + size
        out.append((offset, timestamp, buf[start:pos]))
    return out, pos


def naive_replay(path: str) -> int:
    """Baseline (c): read the file, then decode it 1,000 records at a time, like `replay`."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = count = 0
    while pos < len(buf):
        records, pos = naive_read(buf, pos, READ_BATCH)
        count += len(records)
    return count


def naive_replay_rate(path: str) -> float:
    start = time.perf_counter()
    count = naive_replay(path)
    return count / (time.perf_counter() - start)


def open_seconds(path: str) -> float:
    """Seconds for `Store(path)` plus `store.topic()`, which runs the topic's recovery."""
    start = time.perf_counter()
    store = Store(path)
    store.topic(TOPIC)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


_CRASH_WRITER = """
import sys, time
from logstore import Store
store = Store(sys.argv[1], fsync="never")
store.create_topic("t")
values = [b"x" * 100] * 1000
for _ in range(int(sys.argv[2]) // 1000):
    store.write_many("t", values)
print("written", flush=True)
time.sleep(60)
"""


def crashed_store(path: str, count: int) -> None:
    """A store whose writer was SIGKILLed right after writing `count` messages, unclosed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, path, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        if line.strip() != "written":
            raise RuntimeError(f"crash writer failed (exit status {child.wait()})")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()


_RSS_CHILD = """
import resource, sys
from logstore import Store
if sys.argv[1] == "replay":
    sys.path.insert(0, sys.argv[3])
    from run_storage import replay
    with Store(sys.argv[2]) as store:
        replay(store)
try:
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(mode: str, path: str = "") -> float:
    """Peak RSS (MiB) of a fresh child that imports logstore and, with "replay", replays.

    The child reports VmHWM, not `ru_maxrss`: Linux carries the parent's peak into the
    child's `ru_maxrss` across fork/exec, so a child of this (big) process would report
    this process's peak. Both are in KiB.
    """
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, mode, path, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[-1]) / 1024


# ---------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table: samples of logstore and of the baseline it is compared with."""

    workload: str
    size: str
    unit: str  # "msg/s", "s", "µs" (seconds shown in µs), "MiB" or "x"
    baseline: str
    samples: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    target: str = ""
    check: Callable[[Row], bool] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def ratio(self) -> float | None:
        """The median of the per-repeat ratios. The two runs of a repeat are seconds apart,
        so a burst of load from other processes slows both sides of a pair alike."""
        if not self.base:
            return None
        return statistics.median(s / b for s, b in zip(self.samples, self.base, strict=True))

    @property
    def met(self) -> bool | None:
        return None if self.check is None else self.check(self)


def per_repeat_ratios(row: Row, other: Row) -> list[float]:
    """`row`'s figure over `other`'s, repeat by repeat: rows measured in the same repeats
    ran seconds apart, so a burst of load from other processes slows both alike."""
    return [a / b for a, b in zip(row.samples, other.samples, strict=True)]


def size_label(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size // 1024} KiB"


def fmt(value: float, unit: str) -> str:
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    if unit == "s":
        return f"{value * 1000:,.1f} ms"
    if unit == "µs":  # a value in seconds, shown in microseconds
        return f"{value * 1e6:,.0f} µs"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:.2f}x"


def spread(samples: list[float]) -> str:
    """Half the range of the samples, relative to their median: how noisy the row was."""
    if len(samples) < 2:
        return ""
    return f" ±{(max(samples) - min(samples)) / 2 / statistics.median(samples):.0%}"


def table(
    rows: list[Row], command: str, repeats: int, base_dir: str, seconds: float, load: tuple
) -> str:
    lines = [
        "# logstore storage benchmarks",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M')}: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, data on {base_dir} ({filesystem(base_dir)}), "
        f"median of {repeats} runs (± is half the range), {seconds:.0f} s in all.",
        f"Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (other processes).",
        "Ratio = logstore / baseline (messages/s: higher is better; time and RSS: lower is), "
        "the median of the per-repeat ratios (each repeat runs the baseline, then logstore).",
        "",
        "| workload | size | logstore | baseline | baseline figure | ratio | target |",
        "|---|---|--:|---|--:|--:|---|",
    ]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        base = fmt(statistics.median(r.base), r.unit) + spread(r.base) if r.base else ""
        verdict = {None: "", True: " **met**", False: " **MISSED**"}[r.met]
        lines.append(
            f"| {r.workload} | {r.size} | {fmt(r.median, r.unit)}{spread(r.samples)} "
            f"| {r.baseline} | {base} | {ratio} | {r.target}{verdict} |"
        )
    return "\n".join(lines) + "\n"


def targets(rows: list[Row]) -> str:
    """The rows that have a target, one line each: figure, ratio to its baseline, verdict."""
    lines = ["targets:"]
    for r in rows:
        if r.check is None:
            continue
        ratio = "" if r.ratio is None else f" ({r.ratio:.2f}x {r.baseline})"
        verdict = "met" if r.met else "MISSED"
        lines.append(
            f"  {r.workload}, {r.size}: {fmt(r.median, r.unit)}{ratio}; {r.target}: {verdict}"
        )
    return "\n".join(lines)


def filesystem(path: str) -> str:
    """The type of the filesystem holding `path`, from /proc/mounts ("?" elsewhere)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fstype, *_ = line.split()
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fstype
    except OSError:
        pass
    return kind


def default_base_dir() -> str:
    """The directory that holds the repository checkout: same disk, outside the git tree."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- the run


class Runner:
    def __init__(self, root: str, scale: Scale):
        self.root = root
        self.scale = scale
        self.rows: list[Row] = []
        self._n = 0

    def path(self, name: str) -> str:
        """A fresh path under the run's directory (removed after each measurement)."""
        self._n += 1
        return os.path.join(self.root, f"{self._n}-{name}")

    def measure(self, rows: list[tuple[Row, Callable[[str], float], Callable[[str], float]]]):
        """Per repeat and row, run the baseline and then logstore, each in a fresh directory.

        Rows measured together take turns within each repeat, so that their per-repeat
        figures can be compared with each other too (threads vs one thread).
        """
        for _ in range(self.scale.repeats):
            for row, store, base in rows:
                for fn, out in ((base, row.base), (store, row.samples)):
                    path = self.path("m")
                    try:
                        out.append(fn(path))
                    finally:
                        remove(path)
        for row, _, _ in rows:
            self.add(row)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f" ({row.ratio:.2f}x {row.baseline})"
        print(f"  {row.workload}, {row.size}: {fmt(row.median, row.unit)}{ratio}", file=sys.stderr)

    def appends(self) -> None:
        s = self.scale
        for batch in (1, BATCH):
            shape = "one at a time" if batch == 1 else f"batches of {BATCH:,}"
            for policy in POLICIES:
                durable = policy == "always"
                raw = write_fsync_rate if durable else file_write_rate
                baseline = "write+fdatasync" if durable else "file.write"
                for size in SIZES:
                    row = Row(
                        f"append {shape}, fsync={policy}", size_label(size), "msg/s", baseline
                    )
                    if batch == BATCH and policy == "never" and size == 100:
                        row.target = f">= {BATCH_NEVER_TARGET:,} msg/s"
                        row.check = lambda r: r.median >= BATCH_NEVER_TARGET
                    if batch == 1 and durable:
                        row.target = f"within {DURABLE_SLOWDOWN}x of write+fdatasync"
                        row.check = lambda r: r.ratio >= 1 / DURABLE_SLOWDOWN
                    limit = s.append_limit(policy, batch, size)
                    store = partial(append_rate, policy=policy, size=size, batch=batch, scale=s)
                    data = framed(size, batch)
                    base = partial(
                        raw, data=data, per_step=batch, max_msgs=limit, seconds=s.seconds
                    )
                    self.measure([(row, store, base)])

    def threads(self) -> None:
        s = self.scale
        for size in SIZES:
            label, data = size_label(size), framed(size, 1)
            total, seconds = s.thread_msgs, s.seconds
            durable_base = partial(
                write_fsync_rate, data=data, per_step=1, max_msgs=s.durable_msgs, seconds=seconds
            )
            rows, runs = {}, []
            for n in THREADS:
                name = f"durable append (fsync=always), {n} thread{'s' * (n > 1)}"
                rows[n] = Row(name, label, "msg/s", "write+fdatasync")
                store = partial(threaded_rate, threads=n, size=size, total=total, seconds=seconds)
                runs.append((rows[n], store, durable_base))
            top = THREADS[-1]
            never = Row(f"append (fsync=never), {top} threads", label, "msg/s", "file.write")
            store = partial(
                threaded_rate, threads=top, size=size, total=total, seconds=seconds, policy="never"
            )
            base = partial(
                file_write_rate, data=data, per_step=1, max_msgs=s.one_msgs, seconds=seconds
            )
            runs.append((never, store, base))
            self.measure(runs)
            # The disk's fsync latency, from every write+fdatasync run of this section.
            latency = Row("fsync latency of the disk (1 / write+fdatasync rate)", label, "µs", "")
            latency.samples = [1 / per_second for n in THREADS for per_second in rows[n].base]
            self.add(latency)
            for n in THREADS[1:]:
                row = Row(f"durable append, {n} threads vs 1 (fsync=always)", label, "x", "")
                row.samples = per_repeat_ratios(rows[n], rows[1])
                if n == top:
                    row.target = f">= {GROUP_COMMIT_VS_ONE:.0f}x"
                    row.check = lambda r: r.median >= GROUP_COMMIT_VS_ONE
                self.add(row)
            row = Row(f"append, {top} threads: fsync=always vs fsync=never", label, "x", "")
            row.samples = per_repeat_ratios(rows[top], never)
            row.target = f">= {GROUP_COMMIT_VS_NEVER}x"
            row.check = lambda r: r.median >= GROUP_COMMIT_VS_NEVER
            self.add(row)

    def replays(self) -> None:
        s = self.scale
        for size in SIZES:
            label = size_label(size)
            naive = self.path("naive")
            naive_fill(naive, size, s.replay_msgs)
            batched = Row("replay, written in batches", label, "msg/s", "naive replay")
            if size == 100:
                batched.target = f">= {REPLAY_TARGET:,} msg/s"
                batched.check = lambda r: r.median >= REPLAY_TARGET
            single = Row("replay, written one at a time", label, "msg/s", "naive replay")
            paths = {BATCH: self.path("replay"), 1: self.path("replay")}
            for batch, path in paths.items():
                fill(path, size, s.replay_msgs, batch)
            # Both logs replay in every repeat, so each repeat gives a pair to compare.
            with Store(paths[BATCH]) as batch_store, Store(paths[1]) as single_store:
                for _ in range(s.repeats):
                    for row, store in ((batched, batch_store), (single, single_store)):
                        row.base.append(naive_replay_rate(naive))
                        row.samples.append(replay_rate(store))
            self.add(batched)
            self.add(single)
            slowdown = REPLAY_ONE_AT_A_TIME_SLOWDOWN
            row = Row("replay, one at a time vs in batches", label, "x", "")
            row.samples = per_repeat_ratios(single, batched)
            row.target = f">= {1 / slowdown:.2f}x (within {slowdown}x)"
            row.check = lambda r: r.median >= 1 / REPLAY_ONE_AT_A_TIME_SLOWDOWN
            self.add(row)
            for path in (*paths.values(), naive):
                remove(path)

    def opens(self) -> None:
        s = self.scale
        n = s.big_msgs
        empty = self.path("empty")
        with Store(empty) as store:
            store.create_topic(TOPIC)
        clean = self.path("clean")
        fill(clean, 100, n, BATCH)
        crashed = self.path("crashed")
        crashed_store(crashed, n)
        cases = (
            ("after a clean close", clean, None),
            ("after a SIGKILLed writer", crashed, "copy"),
            ("index lost (full rebuild; informative)", crashed, "drop index"),
        )
        for how, source, prepare in cases:
            row = Row(f"open {n:,} msgs, {how}", "100 B", "s", "open of an empty store")
            if prepare != "drop index":
                row.target = f"< {OPEN_TARGET} s"
                row.check = lambda r: r.median < OPEN_TARGET
            for _ in range(s.repeats):
                row.base.append(open_seconds(empty))
                if prepare is None:
                    row.samples.append(open_seconds(source))
                    continue
                # Recovery repairs what it opens, so each run opens a fresh copy.
                work = self.path("copy")
                shutil.copytree(source, work)
                if prepare == "drop index":
                    shutil.rmtree(os.path.join(work, "index"))
                row.samples.append(open_seconds(work))
                remove(work)
            self.add(row)
        remove(crashed)
        row = Row(f"peak RSS, replay of {n:,} msgs", "100 B", "MiB", "child that imports logstore")
        for _ in range(min(s.repeats, 3)):
            row.base.append(peak_rss_mib("import"))
            row.samples.append(peak_rss_mib("replay", clean))
        self.add(row)
        remove(clean)
        remove(empty)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small counts, 3 repeats")
    parser.add_argument("--repeat", type=int, help="repeats per row (default 5; 3 with --quick)")
    parser.add_argument(
        "--dir",
        default=os.environ.get("LOGSTORE_BENCH_DIR") or default_base_dir(),
        help="where to put the temporary data (default: the directory holding the checkout)",
    )
    parser.add_argument(
        "--out", nargs="?", const=RESULTS, help=f"also write the table here (default {RESULTS})"
    )
    parser.add_argument(
        "--only",
        choices=("appends", "threads", "replays", "opens"),
        action="append",
        help="run only these sections (repeatable)",
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    if args.repeat:
        scale = dataclasses.replace(scale, repeats=args.repeat)
    base_dir = os.path.abspath(args.dir)
    if filesystem(base_dir) == "tmpfs":
        print(f"warning: {base_dir} is a tmpfs: fsync is free there", file=sys.stderr)
    if not record.CRC_IS_NATIVE:
        print("warning: crcmod runs in pure Python: every figure is meaningless", file=sys.stderr)
    root = tempfile.mkdtemp(prefix="logstore-bench-", dir=base_dir)
    started, load = time.perf_counter(), os.getloadavg()[0]
    runner = Runner(root, scale)
    try:
        for section in args.only or ("appends", "threads", "replays", "opens"):
            print(f"{section}:", file=sys.stderr)
            getattr(runner, section)()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    command = " ".join(
        ["python bench/run_storage.py", *(argv if argv is not None else sys.argv[1:])]
    )
    elapsed, load = time.perf_counter() - started, (load, os.getloadavg()[0])
    text = table(runner.rows, command, scale.repeats, base_dir, elapsed, load)
    print(text)
    print(targets(runner.rows))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
