"""Profile logstore on one workload of bench/compare.py with py-spy, and name the hot spots.

    python bench/compare_profile.py 4 --size 1024       # the server, during replays
    python bench/compare_profile.py 7 --out prof.txt    # the library, in this process

For rows 1-6 it starts `logstore serve` as compare.py does (fsync=always for rows 1-2,
interval otherwise), attaches `py-spy record` to the server's PID while this process
drives the workload, and then prints where the server's threads spent their samples: the
logstore and server functions by inclusive share, and the leaf frames overall. For row 7
py-spy samples this very process, which runs the embedded put/get loop. py-spy samples
without pausing the target (--nonblocking), so the figures printed first stay close to
compare.py's; for the durable rows they come with the fsyncs per second from /metrics,
which tell how many messages each fsync carried (group commit). The raw profile
(collapsed stacks, one per line) stays in `--out` for flame-graph tools.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import compare_embedded
import compare_logstore
import compare_procs
import compare_workloads
from compare import default_base_dir
from compare_api import Server
from compare_workloads import Scale

_OURS = ("logstore/", "server/")
# Leaf frames of a thread that waits for work (py-spy cannot always tell such a thread is
# idle): left out, so the shares below are of the time spent working.
_WAITING = (
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (",
    "Event.wait (",
    "EpollSelector.select (",
)


def _scale(seconds: float) -> Scale:
    return Scale(
        repeats=1,
        seconds=seconds,
        publish_msgs=10**8,
        embedded_msgs=10**8,
        replay_msgs=200_000,
        consume_msgs=200_000,
        latency_samples=10**6,
        slow_seconds=seconds,
        preload_seconds=600.0,
    )


def _py_spy() -> str:
    found = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if not found:
        sys.exit("py-spy is not installed (pip install -e '.[bench]')")
    return found


def _record(pid: int, out: str) -> subprocess.Popen:
    argv = [_py_spy(), "record", "--pid", str(pid), "--threads", "--nonblocking", "-r", "250"]
    argv += ["-f", "raw"]
    with open(out + ".log", "wb") as log:  # py-spy's own messages, if it fails
        spy = subprocess.Popen([*argv, "-o", out], stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # py-spy attaches before the workload starts
    return spy


def _finish(spy: subprocess.Popen) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes the profile when interrupted
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def _run(row: str, server: Server, size: int, scale: Scale, n: int) -> float:
    """Run `row`'s workload once (the `n`th time: fresh topic or consumer); its figure."""
    w, system = compare_workloads, compare_logstore
    if row == "1":
        return asyncio.run(w.publish_one(system, server, f"p{n}", size, scale))
    if row == "2":
        return asyncio.run(w.publish_concurrent(system, server, f"p{n}", size, scale))
    if row == "3":
        return asyncio.run(w.publish_batched(system, server, f"p{n}", size, scale))
    if row == "4":
        return asyncio.run(w.replay(system, server, "p", scale))
    if row == "5":
        return asyncio.run(w.consume(system, server, "p", f"g{n}", scale))
    return asyncio.run(w.latency(system, server, f"p{n}", size, scale))[0]


def _fsyncs(server: Server) -> tuple[float, float]:
    """(fsyncs, seconds spent in them) so far, from the server's /metrics."""
    url = f"http://{compare_procs.HOST}:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    found = dict(
        line.split()[:2] for line in text.splitlines() if line.startswith("logstore_fsync_seconds_")
    )
    return float(found.get("logstore_fsync_seconds_count", 0)), float(
        found.get("logstore_fsync_seconds_sum", 0)
    )


def _profile_server(row: str, size: int, scale: Scale, root: str, out: str) -> str:
    """Drive `row` against a fresh server for `scale.seconds` under py-spy; what it did."""
    server = compare_logstore.start(root, durable=row in ("1", "2"))
    if row in ("4", "5"):
        asyncio.run(compare_workloads.preload(compare_logstore, server, "p", size, scale))
    before, spy = _fsyncs(server), _record(server.pid, out)
    figures: list[float] = []
    started = time.perf_counter()
    try:
        while not figures or time.perf_counter() < started + scale.seconds:
            figures.append(_run(row, server, size, scale, len(figures)))
    finally:
        _finish(spy)
    seconds = time.perf_counter() - started
    after = _fsyncs(server)
    count, spent = after[0] - before[0], after[1] - before[1]
    unit = "ms p50" if row == "6" else "msg/s"
    mean = f"{spent / count * 1000:.2f} ms each" if count else "none"
    return (
        f"row {row}, {size} B: {', '.join(f'{f:,.2f}' for f in figures)} {unit}; "
        f"{count / seconds:,.0f} fsyncs/s ({mean})"
    )


def _function(frame: str) -> str:
    """ "f (file.py:12)" -> "f (file.py)": one entry per function, whatever the line."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if name else frame


def summarize(path: str, top: int) -> str:
    """The hot spots of a raw py-spy profile: our functions (inclusive) and leaf lines."""
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            if frames[-1].startswith(_WAITING):
                waiting += n
                continue
            total += n
            leaf[frames[-1]] += n
            for function in {_function(frame) for frame in frames}:
                if any(part in function for part in _OURS):
                    inclusive[function] += n
    lines = [
        f"{total} samples of working threads ({waiting} more were waiting for work)",
        "",
        "logstore and server functions, inclusive:",
    ]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "leaf lines (where the time is spent):"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in leaf.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("row", choices=("1", "2", "3", "4", "5", "6", "7"))
    parser.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive it")
    parser.add_argument("--out", default="profile.txt", help="the raw py-spy profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    compare_procs.install_signal_handlers()
    scale = _scale(args.seconds)
    root = tempfile.mkdtemp(prefix="logstore-profile-", dir=default_base_dir())
    try:
        if args.row == "7":
            spy = _record(os.getpid(), args.out)
            body = compare_workloads.payload(args.size)
            path = os.path.join(root, "q")
            try:
                rates = compare_embedded.put_get(
                    "logstore", path, body, scale.embedded_msgs, args.seconds / 2
                )
            finally:
                _finish(spy)
            print(f"row 7, {args.size} B: {rates[0]:,.0f} puts/s, {rates[1]:,.0f} gets/s")
        else:
            print(_profile_server(args.row, args.size, scale, root, args.out))
    finally:
        compare_procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    if not os.path.exists(args.out):
        sys.exit(f"py-spy wrote no profile: {compare_procs.log_tail(args.out + '.log')}")
    print(summarize(args.out, args.top))


if __name__ == "__main__":
    main()
