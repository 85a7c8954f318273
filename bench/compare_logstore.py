"""logstore over HTTP: `logstore serve` in its own process, `logstore.AsyncClient` talking
to it: what a user of the client gets (the binary wire of SPEC §6, the largest replay page the
server allows, cumulative acknowledgement with `commit` of each polled batch).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import compare_procs
from compare_api import Client, Server

from logstore import AsyncClient

NAME = "logstore"
REPLAY_PAGE = 10_000  # the server's default cap on `max`
_LONG_POLL_SECONDS = 5.0
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
        "client": "logstore.AsyncClient (binary frames, keep-alive, asyncio protocol)",
    }
    return Server(NAME, port, pid, version(), settings)


async def connect(server: Server) -> Client:
    return LogstoreClient(f"http://{compare_procs.HOST}:{server.port}")


class LogstoreClient(Client):
    """`logstore.AsyncClient`, as a user gets it: the binary wire, pooled keep-alive
    connections, an Idempotency-Key on every publish, the CRC of every frame checked."""

    def __init__(self, base: str):
        self._client = AsyncClient(base, timeout=_LONG_POLL_SECONDS + 55)

    async def close(self) -> None:
        await self._client.close()

    async def create_topic(self, topic: str) -> None:
        await self._client.create_topic(topic)

    async def delete_topic(self, topic: str) -> None:
        await self._client.delete_topic(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._client.write(topic, payload)

    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        await self._client.write_many(topic, payloads)

    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        offset = count = 0
        while count < limit and time.perf_counter() < deadline:
            page = await self._client.read(topic, offset, min(REPLAY_PAGE, limit - count))
            if not page:
                break
            count += len(page)
            offset = page[-1].offset + 1
        return count

    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        await self._client.subscribe(topic, group, start="earliest")
        count = 0
        while count < limit and time.perf_counter() < deadline:
            deliveries = await self._client.poll(topic, group, batch)
            if not deliveries:
                break
            await self._client.commit(topic, group, deliveries[-1].offset + 1)
            count += len(deliveries)
        return count

    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        async for message in self._client.messages(topic, 0, follow=True):
            deliver(message.value)
