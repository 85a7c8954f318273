"""Redis Streams: a redis-server of this runner's own, and redis-py with the hiredis parser.

Durability: the append-only file is on, with `appendfsync always` for the durable rows (a
command is answered after its fsync; Redis groups the fsyncs of one event-loop pass) and
`everysec` for the others. RDB snapshots are off, so no fork competes with the load.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from importlib import metadata

import compare_procs
from compare_api import Client, Server

NAME = "Redis Streams"
REPLAY_PAGE = 10_000
_BLOCK_MS = 5000
_FIELD = b"v"


def missing() -> str | None:
    if not shutil.which("redis-server"):
        return "no redis-server on PATH (Debian: apt-get install redis-server)"
    try:
        import redis.utils
    except ImportError:
        return "redis-py is not installed (pip install -e '.[bench]')"
    if not redis.utils.HIREDIS_AVAILABLE:
        return "redis-py runs without hiredis (pip install -e '.[bench]')"
    return None


def start(root: str, durable: bool) -> Server:
    import redis

    port = compare_procs.free_port()
    fsync = "always" if durable else "everysec"
    data = os.path.join(root, f"redis-{fsync}")
    os.makedirs(data)
    argv = [shutil.which("redis-server") or "redis-server", "--bind", compare_procs.HOST]
    argv += ["--port", str(port), "--dir", data, "--appendonly", "yes", "--appendfsync", fsync]
    argv += ["--save", "", "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
    pid = compare_procs.start(argv, data + ".log", port)
    try:
        with redis.Redis(host=compare_procs.HOST, port=port) as admin:
            config = admin.config_get("append*")
            version = admin.info("server")["redis_version"]
    except Exception:
        compare_procs.stop(pid)
        raise
    settings = {
        "appendonly": config["appendonly"],
        "appendfsync": config["appendfsync"],
        "RDB snapshots": "off (save '')",
        "client": f"redis-py {metadata.version('redis')}, hiredis {metadata.version('hiredis')}",
    }
    return Server(NAME, port, pid, f"redis-server {version}", settings)


async def connect(server: Server) -> Client:
    return RedisClient(server.port)


class RedisClient(Client):
    """A redis-py asyncio client; used by one task at a time, so one connection."""

    def __init__(self, port: int):
        import redis.asyncio

        self._r = redis.asyncio.Redis(
            host=compare_procs.HOST, port=port, socket_timeout=_BLOCK_MS / 1000 + 55
        )

    async def close(self) -> None:
        await self._r.aclose()

    async def create_topic(self, topic: str) -> None:
        await self._r.delete(topic)  # a stream comes into being with its first entry

    async def delete_topic(self, topic: str) -> None:
        await self._r.delete(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._r.xadd(topic, {_FIELD: payload})

    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(topic, {_FIELD: payload})
        await pipe.execute()

    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        start, count = "-", 0
        while count < limit and time.perf_counter() < deadline:
            page = await self._r.xrange(topic, start, "+", count=min(REPLAY_PAGE, limit - count))
            if not page:
                break
            count += len(page)
            start = b"(" + page[-1][0]
        return count

    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        await self._r.xgroup_create(topic, group, id="0")
        count = 0
        while count < limit and time.perf_counter() < deadline:
            got = await self._r.xreadgroup(group, "c", {topic: ">"}, count=batch)
            entries = got[0][1] if got else []
            if not entries:
                break
            await self._r.xack(topic, group, *(entry_id for entry_id, _ in entries))
            count += len(entries)
        return count

    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        position = b"0-0"
        while True:
            got = await self._r.xread({topic: position}, count=1000, block=_BLOCK_MS)
            for entry_id, fields in got[0][1] if got else []:
                deliver(fields[_FIELD])
                position = entry_id
