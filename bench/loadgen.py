"""HTTP load generator for bench_http.py: a separate process, raw asyncio protocols.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length answers) to stay far cheaper per
request than the server it measures, so the numbers are the server's. Every mode is bounded
in count and in time, and prints one JSON object on stdout.

    loadgen.py requests URL --path P [--method M] [--body-file F] [--content-type T]
                        [--connections C] [--requests N] [--seconds S] [--offsets A:B:STEP]
    loadgen.py latency URL --topic T [--subscribers 100] [--messages 200] [--interval 0.02]
    loadgen.py idle URL --path P --count K [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
import urllib.parse


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(buf) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(buf[end + 4 : end + 4 + length])
        del buf[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((time.monotonic_ns(), status, body))

    async def request(self, raw: bytes) -> tuple[int, int, bytes]:
        """(arrival time ns, status, body) of the answer to `raw`."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def connect(url: urllib.parse.SplitResult) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Connection, url.hostname, url.port)
    return conn


def build(method: str, host: str, path: str, body: bytes = b"", ctype: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_requests(args: argparse.Namespace) -> dict:
    url = urllib.parse.urlsplit(args.url)
    body = b""
    if args.body_file:
        with open(args.body_file, "rb") as f:
            body = f.read()
    if args.offsets:
        start, stop, step = (int(x) for x in args.offsets.split(":"))
        offsets = itertools.cycle(range(start, stop, step))
    else:
        offsets = itertools.repeat(0)
    fixed = (
        None
        if "{offset}" in args.path
        else build(args.method, url.netloc, args.path, body, args.content_type)
    )
    counts: dict[int, int] = {}
    sent = 0
    deadline = time.monotonic() + args.seconds
    conns = [await connect(url) for _ in range(args.connections)]

    async def worker(conn: Connection) -> None:
        nonlocal sent
        while sent < args.requests and time.monotonic() < deadline:
            sent += 1
            raw = fixed or build(
                args.method, url.netloc, args.path.format(offset=next(offsets)), body
            )
            _, status, _ = await conn.request(raw)
            counts[status] = counts.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.transport.close()
    done = sum(counts.values())
    return {"requests": done, "seconds": elapsed, "per_second": done / elapsed, "status": counts}


async def run_latency(args: argparse.Namespace) -> dict:
    """Subscribers long-poll the topic's end; a publisher stamps each message with its send
    time (CLOCK_MONOTONIC is shared by the processes of one machine)."""
    url = urllib.parse.urlsplit(args.url)
    path = f"/topics/{args.topic}/messages"
    publisher = await connect(url)
    _, _, body = await publisher.request(build("GET", url.netloc, f"/topics/{args.topic}"))
    start = json.loads(body)["end_offset"]
    latencies: list[int] = []
    armed = 0
    deadline = time.monotonic() + args.seconds

    async def subscriber(conn: Connection) -> None:
        nonlocal armed
        offset = start
        end = start + args.messages
        while offset < end and time.monotonic() < deadline:
            raw = build("GET", url.netloc, f"{path}?offset={offset}&wait=5")
            armed += 1
            arrived, _, body = await conn.request(raw)
            armed -= 1
            for m in json.loads(body)["messages"]:
                latencies.append(arrived - int(m["value"]))
                offset = m["offset"] + 1

    subscribers = [await connect(url) for _ in range(args.subscribers)]
    tasks = [asyncio.ensure_future(subscriber(c)) for c in subscribers]
    for _ in range(args.messages):
        settle = time.monotonic() + 1.0
        while armed < args.subscribers and time.monotonic() < settle:
            await asyncio.sleep(0.001)
        await asyncio.sleep(args.interval)  # every poll has reached the server and waits
        raw = build("POST", url.netloc, path, str(time.monotonic_ns()).encode(), "text/plain")
        await publisher.request(raw)
        if time.monotonic() > deadline:
            break
    await asyncio.wait(tasks, timeout=10)
    for c in [publisher, *subscribers]:
        c.transport.close()
    latencies.sort()
    ms = [x / 1e6 for x in latencies]

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))] if ms else float("nan")

    return {
        "deliveries": len(ms),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ms[-1] if ms else float("nan"),
    }


async def run_idle(args: argparse.Namespace) -> dict:
    """Hold `count` long polls open until stdin closes or `seconds` pass."""
    url = urllib.parse.urlsplit(args.url)
    conns = []
    for _ in range(args.count):
        conn = await connect(url)
        conn.transport.write(build("GET", url.netloc, args.path))
        conns.append(conn)
    print(json.dumps({"open": len(conns)}), flush=True)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), args.seconds)
    for c in conns:
        c.transport.close()
    return {"held": len(conns)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("requests")
    p.add_argument("url")
    p.add_argument("--path", required=True)
    p.add_argument("--method", default="POST")
    p.add_argument("--body-file")
    p.add_argument("--content-type")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--offsets", help="START:STOP:STEP values cycled into {offset} of --path")
    p = modes.add_parser("latency")
    p.add_argument("url")
    p.add_argument("--topic", required=True)
    p.add_argument("--subscribers", type=int, default=100)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--seconds", type=float, default=60.0)
    p = modes.add_parser("idle")
    p.add_argument("url")
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    run = {"requests": run_requests, "latency": run_latency, "idle": run_idle}[args.mode]
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
