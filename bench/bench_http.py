"""HTTP benchmarks: `logstore serve` on loopback, driven by wrk and bench/loadgen.py.

    .venv/bin/python bench/bench_http.py [--seconds 8] [--rounds 3] [--json results.json]

Measures, in one run and with the same load generators:
- single-message publish (100 B raw body) requests/s against its ceiling, a bare aiohttp
  handler that reads the body and answers 200 (same runner settings as the server):
  driven by wrk (`apt-get install wrk`; without it, by loadgen.py, and the run says so),
  the bare handler, fsync=never and fsync=interval taking turns for `--rounds` rounds;
  medians and the median of the per-round ratios; fsync=always once, for information;
- batched publish (JSON, 100 and 1,000 messages of 100 B per request) messages/s, both fsyncs;
- replay messages/s (GET .../messages, max=1000, across the published log);
- publish-to-delivery latency p50/p99 with 100 subscribers long polling;
- server memory with 1,000 idle long polls.

Beside each throughput it prints the server's CPU time per request (from /proc), which is
steadier than requests/s on a shared machine. Every load is bounded in count and time;
servers listen on 127.0.0.1 only and are stopped by PID.

It ends with issue #10's targets, each with its figure, its ratio to the baseline of the same
run and met or MISSED: single raw publishes at least 95% of the bare POST ceiling; with 100
long-polling subscribers, a p99 at or below the bare aiohttp handler's; and the batched
publish figure (at least 300,000 messages/s in batches of 1,000).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.path.join(HERE, "loadgen.py")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VALUE = b"x" * 100
WRK = shutil.which("wrk")
WRK_CONNECTIONS = 32
SINGLE_FSYNCS = ("never", "interval")  # the policies held to the single-publish target
SINGLE_TARGET = 0.95  # single raw publishes vs the bare aiohttp POST ceiling, issue #10
WAKE_P99_TARGET = 1.0  # p99 with 100 long-polling subscribers vs bare aiohttp's, issue #10
BATCH1000_TARGET = 300_000  # messages/s, batched publish of 1,000 per request
# wrk's script (after a line setting wrk.body): single raw POSTs; at the end, one JSON line.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def bare_server(kind: str) -> None:
    """Ceilings: what aiohttp alone costs, with the server's runner settings.

    "publish": read the body, answer 200. "wake": the long-poll protocol of the latency test
    with nothing behind it (values kept in a list, waiters parked on one asyncio.Event).
    """
    import uvloop
    from aiohttp import web

    from logstore_server import Limits, start

    values: list[str] = []
    changed = asyncio.Event()

    async def publish(request: web.Request) -> web.Response:
        body = await request.read()
        if kind == "wake":
            values.append(body.decode())
            changed.set()
            changed.clear()
        return web.Response()

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"end_offset": len(values)})

    async def read(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        if offset >= len(values):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(float(request.query.get("wait", 0))):
                    await changed.wait()
        messages = [{"offset": i, "value": v} for i, v in enumerate(values) if i >= offset]
        return web.json_response({"messages": messages, "next_offset": len(values)})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/topics/{topic}/messages", publish)
        app.router.add_get("/topics/{topic}/messages", read)
        app.router.add_get("/topics/{topic}", info)
        runner = await start(app, "127.0.0.1", 0, Limits())
        print(f"serving http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    uvloop.run(main())  # the event loop `logstore serve` runs on: a like-for-like ceiling


class Server:
    """A server process (ours or the bare one) on a free loopback port."""

    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        self.url = None
        while time.monotonic() < deadline and self.url is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            if "serving http://" in line:
                self.url = line.split("serving ", 1)[1].split()[0]
        if self.url is None:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {command}")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def call(self, method: str, path: str, body: object = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw and path != "/metrics" else {"text": raw.decode()}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def logstore_server(data: str, fsync: str) -> Server:
    cli = [
        sys.executable,
        "-m",
        "logstore_server.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    return Server([*cli, "--data", data, "--fsync", fsync])


def loadgen(*args: str, timeout: float = 300) -> dict:
    out = subprocess.run(
        [sys.executable, LOADGEN, *args], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def with_server_cpu(server: Server, load: Callable[[], dict]) -> dict:
    """Run `load` (a dict with "requests"); add the server's CPU microseconds per request."""
    before = server.cpu_seconds()
    result = load()
    result["cpu_us_per_request"] = (server.cpu_seconds() - before) / result["requests"] * 1e6
    return result


def measured(server: Server, *args: str) -> dict:
    """Run a loadgen `requests` load; add the server's CPU microseconds per request."""
    result = with_server_cpu(server, lambda: loadgen("requests", server.url, *args))
    bad = {k: v for k, v in result["status"].items() if not k.startswith("2")}
    if bad:
        raise RuntimeError(f"non-2xx answers under load: {bad}")
    return result


def wrk_publish(url: str, script: str, seconds: float) -> dict:
    """Single raw POSTs from wrk (one thread, WRK_CONNECTIONS connections) for `seconds`."""
    out = subprocess.run(
        [WRK, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", script, url + "/topics/t/messages"],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed (exit status {out.returncode}): {out.stderr[-2000:]}")
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    if counts["non_2xx"]:
        raise RuntimeError(f"non-2xx answers under load: {counts['non_2xx']} (wrk)")
    if counts["socket_errors"]:
        print(f"    wrk: {counts['socket_errors']} socket errors or timeouts", flush=True)
    elapsed = counts["duration_us"] / 1e6
    return {
        "requests": counts["requests"],
        "seconds": elapsed,
        "per_second": counts["requests"] / elapsed,
        "socket_errors": counts["socket_errors"],
    }


def single_publisher(tmp: str, seconds: float) -> tuple[str, Callable[[Server], dict]]:
    """How this run drives single raw 100 B POSTs (wrk if installed, else loadgen.py): a
    description, and the load (on topic "t", with the server's CPU per request)."""
    if WRK is None:
        body = os.path.join(tmp, "value")
        with open(body, "wb") as f:
            f.write(VALUE)
        args = ["--path", "/topics/t/messages", "--body-file", body]
        args += ["--content-type", "application/octet-stream"]
        args += ["--connections", str(WRK_CONNECTIONS), "--requests", "40000"]
        args += ["--seconds", str(seconds)]
        driver = f"bench/loadgen.py, {WRK_CONNECTIONS} connections (wrk is not installed)"
        return driver, lambda server: measured(server, *args)
    script = os.path.join(tmp, "single.lua")
    with open(script, "w") as f:
        f.write(f'wrk.body = "{VALUE.decode()}"\n{WRK_SCRIPT}')
    driver = f"wrk -t1 -c{WRK_CONNECTIONS}"
    return driver, lambda server: with_server_cpu(
        server, lambda: wrk_publish(server.url, script, seconds)
    )


def single_publish_rounds(
    tmp: str, driver: str, publish: Callable[[Server], dict], rounds: int
) -> dict:
    """Single raw publishes: the bare POST handler and logstore (each of SINGLE_FSYNCS)
    take turns, `rounds` times, so a burst of load from other processes slows the
    neighbours of a round alike; medians, and the median of the per-round ratios."""
    print(f"  single raw publish, 100 B, {driver}: {rounds} rounds, taking turns", flush=True)
    runs: dict[str, list[dict]] = {}
    servers = {"bare": Server([sys.executable, __file__, "--bare-server", "publish"])}
    try:
        for fsync in SINGLE_FSYNCS:
            servers[fsync] = logstore_server(os.path.join(tmp, f"single-{fsync}"), fsync)
            servers[fsync].call("PUT", "/topics/t")
        for i in range(rounds):
            for name, server in servers.items():
                runs.setdefault(name, []).append(publish(server))
            print(f"    round {i + 1}: " + "; ".join(
                f"{single_label(name)} {r['per_second']:,.0f} req/s "
                f"({r['cpu_us_per_request']:.0f} us CPU/request)"
                for name, r in ((name, runs[name][-1]) for name in servers)
            ), flush=True)  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    bare = runs["bare"]
    results = {"single_publish_driver": driver, "ceiling_bare_aiohttp": medians(bare)}
    for fsync in SINGLE_FSYNCS:
        mine = runs[fsync]
        results[f"single_publish_{fsync}"] = {
            **medians(mine),
            "vs_ceiling": statistics.median(
                m["per_second"] / b["per_second"] for m, b in zip(mine, bare, strict=True)
            ),
            "vs_ceiling_by_cpu": statistics.median(
                b["cpu_us_per_request"] / m["cpu_us_per_request"]
                for m, b in zip(mine, bare, strict=True)
            ),
        }
    for name in servers:
        r = results["ceiling_bare_aiohttp" if name == "bare" else f"single_publish_{name}"]
        print(
            f"  {single_label(name)}, median: {r['per_second']:,.0f} requests/s "
            f"(server CPU {r['cpu_us_per_request']:.0f} us/request)",
            flush=True,
        )
    return results


def single_label(name: str) -> str:
    return "ceiling: bare aiohttp handler" if name == "bare" else f"single publish, fsync={name}"


def medians(runs: list[dict]) -> dict:
    """The median rate and server CPU per request of `runs`, and the runs themselves."""
    return {
        "per_second": statistics.median(r["per_second"] for r in runs),
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "runs": runs,
    }


def batch_file(tmp: str, size: int) -> str:
    path = os.path.join(tmp, f"batch{size}.json")
    with open(path, "w") as f:
        json.dump({"messages": [{"value": VALUE.decode()}] * size}, f)
    return path


def run(args: argparse.Namespace) -> dict:
    results: dict = {}
    seconds = str(args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        driver, publish = single_publisher(tmp, args.seconds)
        results.update(single_publish_rounds(tmp, driver, publish, args.rounds))
        bare = Server([sys.executable, __file__, "--bare-server", "wake"])
        try:
            results["ceiling_wake_latency"] = wake_latency(bare, "ceiling: bare aiohttp")
        finally:
            bare.stop()

        for fsync in ("never", "always"):
            server = logstore_server(os.path.join(tmp, f"data-{fsync}"), fsync)
            try:
                server.call("PUT", "/topics/t")
                if fsync not in SINGLE_FSYNCS:  # once, for information: no target
                    key = f"single_publish_{fsync}"
                    results[key] = publish(server)
                    report(f"single publish, fsync={fsync} ({driver})", results[key], "req")
                for size in (100, 1000):
                    key = f"batch{size}_publish_{fsync}"
                    results[key] = measured(
                        server,
                        "--path", "/topics/t/messages",
                        "--body-file", batch_file(tmp, size),
                        "--content-type", "application/json",
                        "--connections", "8",
                        "--requests", str(200_000 // size * (10 if fsync == "never" else 2)),
                        "--seconds", seconds,
                    )  # fmt: skip
                    results[key]["messages_per_second"] = results[key]["per_second"] * size
                    report(f"batched publish x{size}, fsync={fsync}", results[key], "msg", size)
                if fsync == "never":
                    results.update(replay_and_waiting(server, seconds))
            finally:
                server.stop()
    wake, wake_ceiling = results["wake_latency_never"], results["ceiling_wake_latency"]
    results["targets"] = {
        **{
            f"single_publish_{fsync}_vs_ceiling": results[f"single_publish_{fsync}"]["vs_ceiling"]
            for fsync in SINGLE_FSYNCS
        },
        "batch1000_messages_per_second": results["batch1000_publish_never"]["messages_per_second"],
        "wake_latency_p99_ms": wake["p99_ms"],
        "wake_latency_p99_ms_ceiling": wake_ceiling["p99_ms"],
        "wake_latency_p99_vs_ceiling": wake["p99_ms"] / wake_ceiling["p99_ms"],
    }
    return results


def replay_and_waiting(server: Server, seconds: str) -> dict:
    results = {}
    end = server.call("GET", "/topics/t")["end_offset"]
    replay = measured(
        server,
        "--method", "GET",
        "--path", "/topics/t/messages?offset={offset}&max=1000",
        "--offsets", f"0:{max(end - 1000, 1)}:1000",
        "--connections", "8",
        "--requests", "3000",
        "--seconds", seconds,
    )  # fmt: skip
    replay["messages_per_second"] = replay["per_second"] * 1000
    results["replay_never"] = replay
    report("replay, max=1000", replay, "msg", 1000)

    server.call("PUT", "/topics/wake")
    results["wake_latency_never"] = wake_latency(server, "logstore")

    server.call("PUT", "/topics/idle")
    time.sleep(0.5)
    before = server.rss_kib()
    holder = subprocess.Popen(
        [sys.executable, LOADGEN, "idle", server.url, "--count", "1000", "--seconds", "60",
         "--path", "/topics/idle/messages?offset=0&wait=60"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        holder.stdout.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "logstore_long_polls_waiting 1000" in server.call("GET", "/metrics")["text"]:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the 1,000 long polls never all waited")
        during = server.rss_kib()
    finally:
        holder.stdin.close()
        holder.wait(30)
    results["idle_long_polls_1000"] = {
        "rss_before_kib": before,
        "rss_with_1000_kib": during,
        "kib_per_long_poll": (during - before) / 1000,
    }
    print(
        f"  1,000 idle long polls: server RSS {before / 1024:.1f} -> {during / 1024:.1f} MiB "
        f"({(during - before) / 1000:.1f} KiB each)",
        flush=True,
    )
    return results


def wake_latency(server: Server, who: str) -> dict:
    before = server.cpu_seconds()
    # 50 ms between publishes: each wave of 100 deliveries is served before the next
    # publish, so this measures wake-up and delivery, not a queue building up.
    latency = loadgen(
        "latency", server.url, "--topic", "wake", "--subscribers", "100",
        "--messages", "150", "--interval", "0.05",
    )  # fmt: skip
    latency["cpu_us_per_delivery"] = (server.cpu_seconds() - before) / latency["deliveries"] * 1e6
    print(
        f"  {who}: publish-to-delivery, 100 long-polling subscribers: "
        f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms, "
        f"max {latency['max_ms']:.2f} ms ({latency['deliveries']} deliveries; "
        f"server CPU {latency['cpu_us_per_delivery']:.0f} us/delivery)",
        flush=True,
    )
    return latency


def report(title: str, r: dict, unit: str, per_request: int = 1) -> None:
    rate = r["per_second"] * per_request
    what = "requests/s" if unit == "req" else "messages/s"
    print(
        f"  {title}: {rate:,.0f} {what} ({r['requests']:,} requests in {r['seconds']:.1f} s; "
        f"server CPU {r['cpu_us_per_request']:.0f} us/request)",
        flush=True,
    )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_targets(results: dict, rounds: int) -> None:
    """Issue #10's targets: each figure, its ratio to the same run's baseline, met or not."""
    ceiling = results["ceiling_bare_aiohttp"]
    print("targets:")
    print(
        f"  single raw publish (100 B) vs the bare aiohttp POST ceiling "
        f"({results['single_publish_driver']}; medians of {rounds} rounds taking turns):"
    )
    for fsync in SINGLE_FSYNCS:
        mine = results[f"single_publish_{fsync}"]
        ratio = mine["vs_ceiling"]
        print(
            f"    fsync={fsync}: {mine['per_second']:,.0f} vs {ceiling['per_second']:,.0f} "
            f"requests/s: {ratio:.0%} (target >= {SINGLE_TARGET:.0%}: "
            f"{verdict(ratio >= SINGLE_TARGET)}); by server CPU per request "
            f"{mine['vs_ceiling_by_cpu']:.0%}"
        )
    t = results["targets"]
    ratio = t["wake_latency_p99_vs_ceiling"]
    print(
        f"  wake p99, 100 long-polling subscribers (fsync=never): "
        f"{t['wake_latency_p99_ms']:.2f} ms vs bare aiohttp {t['wake_latency_p99_ms_ceiling']:.2f}"
        f" ms in this run: {ratio:.2f}x (target <= {WAKE_P99_TARGET:.2f}x: "
        f"{verdict(ratio <= WAKE_P99_TARGET)})"
    )
    batched = t["batch1000_messages_per_second"]
    print(
        f"  batched publish x1000 (fsync=never): {batched:,.0f} messages/s "
        f"(target >= {BATCH1000_TARGET:,}: {verdict(batched >= BATCH1000_TARGET)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time bound of each load")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the single-publish comparison"
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--bare-server", choices=("publish", "wake"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return
    print(f"bench_http: {os.cpu_count()} CPUs; loads bounded to {args.seconds:g} s each")
    if WRK is None:
        print(
            "wrk is not installed (apt-get install wrk): single publishes and their ceiling "
            "are driven by bench/loadgen.py instead, so they are not the wrk figures the "
            "target names"
        )
    results = run(args)
    print_targets(results, args.rounds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
