"""logstore over HTTP: `logstore serve` in its own process, an aiohttp keep-alive client.

The client uses the API of SPEC §6 as a user tuning for speed would: raw bodies for single
messages (no JSON), JSON batches for many, the largest replay page the server allows, and
cumulative acknowledgement (`up_to`) of each polled batch.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
import compare_procs
from compare_api import Client, Server

NAME = "logstore"
REPLAY_PAGE = 10_000  # the server's default cap on `max`
_LONG_POLL_SECONDS = 5.0
_RAW = {"Content-Type": "application/octet-stream"}
_JSON = {"Content-Type": "application/json"}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def missing() -> str | None:
    return None if _command() else "the `logstore` command is not installed next to Python"


def _command() -> str | None:
    return shutil.which("logstore", path=os.path.dirname(sys.executable))


def version() -> str:
    """The package version and the git commit of the working tree measured."""
    found = importlib.metadata.version("logstore")
    try:
        commit = subprocess.run(
            ["git", "-C", _REPO, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return found
    return f"{found} ({commit})"


def start(root: str, durable: bool) -> Server:
    port = compare_procs.free_port()
    fsync = "always" if durable else "interval"
    data = os.path.join(root, f"logstore-{fsync}")
    argv = [_command() or "logstore", "serve", "--data", data, "--host", compare_procs.HOST]
    argv += ["--port", str(port), "--fsync", fsync]
    pid = compare_procs.start(argv, data + ".log", port)
    settings = {
        "fsync": fsync if durable else "interval (fsync_interval 1 s, the default)",
        "server": "aiohttp, one process (`logstore serve`, defaults otherwise)",
        "client": f"aiohttp {aiohttp.__version__} keep-alive session",
    }
    return Server(NAME, port, pid, version(), settings)


async def connect(server: Server) -> Client:
    return LogstoreClient(f"http://{compare_procs.HOST}:{server.port}")


class LogstoreClient(Client):
    """One keep-alive HTTP connection (a session with a pool of one)."""

    def __init__(self, base: str):
        timeout = aiohttp.ClientTimeout(total=_LONG_POLL_SECONDS + 55)
        connector = aiohttp.TCPConnector(limit=1)
        self._http = aiohttp.ClientSession(base, connector=connector, timeout=timeout)

    async def close(self) -> None:
        await self._http.close()

    async def _call(self, method: str, path: str, expect: int, **kwargs) -> dict | None:
        async with self._http.request(method, path, **kwargs) as resp:
            body = await resp.read()
            if resp.status != expect:
                raise RuntimeError(f"{method} {path}: {resp.status} {body[:200]!r}")
            return json.loads(body) if body else None

    async def create_topic(self, topic: str) -> None:
        await self._call("PUT", f"/topics/{topic}", 201)

    async def delete_topic(self, topic: str) -> None:
        await self._call("DELETE", f"/topics/{topic}", 204)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._call("POST", f"/topics/{topic}/messages", 201, data=payload, headers=_RAW)

    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        # Payloads are ASCII, so each is sent as a JSON string, not base64.
        body = json.dumps({"messages": [{"value": p.decode()} for p in payloads]})
        await self._call("POST", f"/topics/{topic}/messages", 201, data=body, headers=_JSON)

    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        offset = count = 0
        while count < limit and time.perf_counter() < deadline:
            page = await self._call(
                "GET",
                f"/topics/{topic}/messages",
                200,
                params={"offset": offset, "max": min(REPLAY_PAGE, limit - count)},
            )
            if not page["messages"]:
                break
            count += len(page["messages"])
            offset = page["next_offset"]
        return count

    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        base = f"/topics/{topic}/subscriptions/{group}"
        await self._call("PUT", base, 201, json={"start": "earliest"})
        count = 0
        while count < limit and time.perf_counter() < deadline:
            got = await self._call("POST", f"{base}/poll", 200, params={"max": batch})
            messages = got["messages"]
            if not messages:
                break
            up_to = messages[-1]["offset"] + 1
            await self._call("POST", f"{base}/ack", 200, json={"up_to": up_to})
            count += len(messages)
        return count

    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        offset = 0
        while True:
            page = await self._call(
                "GET",
                f"/topics/{topic}/messages",
                200,
                params={"offset": offset, "wait": _LONG_POLL_SECONDS, "max": 1000},
            )
            for message in page["messages"]:
                deliver(message["value"].encode())
            offset = page["next_offset"]
