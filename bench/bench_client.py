"""CPU per request of the HTTP clients against a real `logstore serve` (issue #9).

Measures the client process's CPU time (user + system, `time.process_time`) for N requests
made one after another on one kept-alive connection, for: `logstore.Client` (this
project's sync client), `logstore.AsyncClient`, a bare `http.client` connection, and an
aiohttp `ClientSession`. Two calls: a one-message publish (`write`) and a one-message read.
The server runs in a subprocess (`--fsync never`, so the disk does not dominate).

    .venv/bin/python bench/bench_client.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import aiohttp

from logstore import AsyncClient, Client


def start_server(data: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "logstore_server.cli", "serve", "--data", data]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--fsync", "never"], stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("the server did not start")


def measure(label: str, n: int, run: Callable[[int], None]) -> None:
    run(min(n, 200))  # warm up: connections, caches
    cpu, wall = time.process_time(), time.perf_counter()
    run(n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<34} {cpu / n * 1e3:6.3f} ms CPU/request  {n / wall:8.0f} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as data:
        proc, url = start_server(data)
        try:
            host, port = url.removeprefix("http://").split(":")
            with Client(url) as setup:
                setup.create_topic("t")
                setup.write("t", b"x" * 100)
            body = b"x" * 100

            for wire in ("binary", "json"):
                client = Client(url, wire=wire)
                measure(
                    f"logstore.Client write ({wire})",
                    n,
                    lambda k, c=client: _repeat(k, lambda: c.write("t", body)),
                )
                measure(
                    f"logstore.Client read ({wire})",
                    n,
                    lambda k, c=client: _repeat(k, lambda: c.read("t", 0, 1)),
                )
                client.close()

            conn = http.client.HTTPConnection(host, int(port))

            def plain(method: str, path: str, payload: bytes | None) -> Callable[[int], None]:
                def run(k: int) -> None:
                    for _ in range(k):
                        conn.request(
                            method, path, payload, {"Content-Type": "application/octet-stream"}
                        )
                        conn.getresponse().read()

                return run

            measure("http.client write (raw body)", n, plain("POST", "/topics/t/messages", body))
            measure(
                "http.client read (JSON)",
                n,
                plain("GET", "/topics/t/messages?offset=0&max=1", None),
            )
            conn.close()

            async def async_runs() -> None:
                async with AsyncClient(url) as client:
                    await _ameasure(
                        "logstore.AsyncClient write (binary)", n, lambda: client.write("t", body)
                    )
                    await _ameasure(
                        "logstore.AsyncClient read (binary)", n, lambda: client.read("t", 0, 1)
                    )
                async with aiohttp.ClientSession() as session:

                    async def post() -> None:
                        async with session.post(f"{url}/topics/t/messages", data=body) as r:
                            await r.read()

                    async def get() -> None:
                        async with session.get(f"{url}/topics/t/messages?offset=0&max=1") as r:
                            await r.json()

                    await _ameasure("aiohttp ClientSession write (raw)", n, post)
                    await _ameasure("aiohttp ClientSession read (JSON)", n, get)

            asyncio.run(async_runs())
        finally:
            proc.terminate()
            proc.wait(20)


def _repeat(k: int, call: Callable[[], object]) -> None:
    for _ in range(k):
        call()


async def _ameasure(label: str, n: int, call: Callable[[], object]) -> None:
    for _ in range(min(n, 200)):
        await call()  # type: ignore[misc]
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()  # type: ignore[misc]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<34} {cpu / n * 1e3:6.3f} ms CPU/request  {n / wall:8.0f} requests/s")


if __name__ == "__main__":
    main()
