"""Row 8: logstore's facade on a 3-node NATS JetStream cluster, against nats-py driving the
same cluster directly, so the ratio is what the facade costs over the engine it runs on.

logstore: the library `Store("nats://n1,n2,n3")` in the load process. That measures the
facade and its JetStream engine most directly: `logstore serve` would add the HTTP hop
that rows 1-6 already measure. The synchronous `Store` is what a program gets: each call
hops to the engine's private event loop thread and back.

nats-py: one connection and the primitives the engine is built on, with nothing of
logstore's: a stream of 3 replicas (file storage, `allow_atomic`, `allow_direct`), an
atomic batch per publish (`Nats-Batch-*` headers; the first message and the commit answer),
batch Direct Get pages for the replay, and a durable pull consumer with explicit acks, each
ack a request awaited, as the engine sends them. What logstore adds on top is part of its
overhead: a message id and commit subject per batch, the republished commit notice that
wakes waiting readers, the checks and the lease bookkeeping of the facade.

The cluster is `logstore_server.cluster_dev.DevCluster` (loopback ports, stopped by PID).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

import compare_logstore
from compare_api import Client, Server

from logstore import Store

PEER = "nats-py"
REPLAY_PAGE = compare_logstore.REPLAY_PAGE  # messages per Direct Get, as per Store.read
NAMESPACE = "bench"
_TIMEOUT = 60.0
_NO_RESPONDERS_TRIES = 100
_NO_RESPONDERS_PAUSE = 0.05  # seconds
_PAGE_BYTES = 64 * 2**20  # a Direct Get page is bounded by its message count only

SETTINGS = {
    "logstore": {
        "use": 'library Store("nats://n1,n2,n3"), in the load process (no HTTP)',
        "calls": "write_many, read pages of 10,000, poll + commit(up_to) of each batch",
    },
    PEER: {
        "use": "nats-py on the same cluster, the engine's primitives without logstore",
        "calls": "atomic batch publish, batch Direct Get pages of 10,000, "
        "pull no_wait + one +ACK request per message",
    },
}


def missing() -> str | None:
    try:
        from logstore_server.cluster_dev import ClusterError, nats_server_binary

        nats_server_binary()
    except ClusterError as e:
        return str(e)
    except ImportError as e:
        return f"the cluster support is not installed: {e}"
    return None


def start(root: str) -> Any:
    """The 3-node cluster under `root`, running (the caller stops it by PID: `.stop()`)."""
    from logstore_server.cluster_dev import DevCluster

    return DevCluster(os.path.join(root, "cluster")).start()


def server(cluster: Any) -> Server:
    """The cluster as a `Server`: its first node, the other nodes' CPU counted too."""
    first, *others = cluster.nodes
    version = cluster.monitor(first, "varz")["version"]
    settings = {
        "nodes": f"{len(cluster.nodes)} nats-server on 127.0.0.1 (server/cluster_dev.py)",
        "streams": "file storage, 3 replicas, sync_interval always",
    }
    return Server(
        "cluster",
        first.client_port,
        first.pid,
        f"nats-server {version} (3 nodes)",
        settings,
        tuple(node.pid for node in others),
    )


def systems(cluster: Any) -> dict[str, Any]:
    """System name -> an object with `connect(server)`, as `compare_workloads` wants."""
    return {"logstore": _Connector(cluster.url, _store), PEER: _Connector(cluster.url, _nats)}


def version_of_peer() -> str:
    return f"nats-py {metadata.version('nats-py')}"


class _Connector:
    def __init__(self, url: str, opener: Callable[[str], Any]):
        self.url = url
        self.opener = opener

    async def connect(self, server: Server) -> Client:
        return await self.opener(self.url)


async def _store(url: str) -> Client:
    return StoreClient(Store(f"{url}?namespace={NAMESPACE}"))


async def _nats(url: str) -> Client:
    import nats

    nc = await nats.connect(servers=url.split(","), connect_timeout=10)
    return NatsClusterClient(nc)


class StoreClient(compare_logstore.LogstoreClient):
    """The workloads of `logstore serve`'s client (rows 4-5: the same reads, polls and
    commits), made on the synchronous library `Store` instead."""

    def __init__(self, store: Store):
        self._client = _Awaitable(store)


class _Awaitable:
    """A synchronous `Store` whose methods are awaited like `AsyncClient`'s. Each call
    blocks this event loop, which runs nothing else meanwhile: the engine works on a loop
    thread of its own."""

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        async def call(*args: object, **kwargs: object) -> Any:
            return method(*args, **kwargs)

        return call


class NatsClusterClient(Client):
    """One nats-py connection to the cluster, using the engine's JetStream primitives."""

    def __init__(self, nc: Any):
        self._nc = nc
        self._js = nc.jetstream(timeout=_TIMEOUT)

    async def close(self) -> None:
        await self._nc.close()

    async def create_topic(self, topic: str) -> None:
        from nats.js.api import DiscardPolicy, StorageType, StreamConfig

        config = StreamConfig(
            name=topic,
            subjects=[topic],
            storage=StorageType.FILE,
            num_replicas=3,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
            allow_atomic=True,
        )
        await self._js.add_stream(config)

    async def delete_topic(self, topic: str) -> None:
        await self._js.delete_stream(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._js.publish(topic, payload, timeout=_TIMEOUT)

    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        """One atomic batch: the first message and the commit (the last) ask for answers;
        the commit's carries the sequence."""
        batch_id, last = uuid.uuid4().hex, len(payloads) - 1
        async with _Answers(self._nc) as answers:
            for i, body in enumerate(payloads):
                headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1)}
                if i == last:
                    headers["Nats-Batch-Commit"] = "1"
                reply = answers.subject if i in (0, last) else ""
                await self._nc.publish(topic, body, reply=reply, headers=headers)
            while True:
                msg = await answers.next()
                if msg.data:
                    ack = json.loads(msg.data)
                    if "error" in ack:
                        raise RuntimeError(f"batch refused: {ack['error']}")
                    if "seq" in ack:
                        return

    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        count = 0
        while count < limit and time.perf_counter() < deadline:
            page = min(REPLAY_PAGE, limit - count)
            request = {"seq": count + 1, "batch": page, "max_bytes": _PAGE_BYTES}
            got = await self._collect(f"$JS.API.DIRECT.GET.{topic}", request, page)
            if not got:
                break
            count += len(got)
        return count

    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            durable_name=group,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=-1,
        )
        await self._js.add_consumer(topic, config)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{topic}.{group}"
        count = 0
        while count < limit and time.perf_counter() < deadline:
            got = await self._collect(subject, {"batch": batch, "no_wait": True}, batch)
            if not got:
                break
            await asyncio.gather(*(m.ack_sync(timeout=_TIMEOUT) for m in got))
            count += len(got)
        return count

    async def _collect(self, subject: str, request: dict, expected: int) -> list[Any]:
        """The messages answering one Direct Get or pull request, sent again while no
        server answers it (503: a new consumer's leader is still being elected)."""
        for _ in range(_NO_RESPONDERS_TRIES):
            got = await self._answers(subject, request, expected)
            if got is not None:
                return got
            await asyncio.sleep(_NO_RESPONDERS_PAUSE)
        raise RuntimeError(f"{subject}: no responders after {_NO_RESPONDERS_TRIES} tries")

    async def _answers(self, subject: str, request: dict, expected: int) -> list[Any] | None:
        """Up to `expected` messages, or fewer when a status ends the request (it says how
        many of the batch did not come); None when no server took the request."""
        got: list[Any] = []
        async with _Answers(self._nc) as answers:
            await self._nc.publish(subject, json.dumps(request).encode(), reply=answers.subject)
            while len(got) < expected:
                msg = await answers.next()
                code = msg.headers.get("Status") if msg.headers and not msg.data else None
                if code is None:
                    got.append(msg)
                elif code == "503" and not got:
                    return None
                elif code in ("204", "404", "408"):
                    pending = msg.headers.get("Nats-Pending-Messages")
                    if pending is None:
                        break
                    expected = request["batch"] - int(pending)
                elif code != "100":
                    raise RuntimeError(f"{subject} answered status {code}")
        return got

    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        raise NotImplementedError("row 8 measures no latency")


class _Answers:
    """A reply subject whose messages a callback queues (nats-py's fastest way in)."""

    def __init__(self, nc: Any):
        self.nc = nc
        self.subject = nc.new_inbox()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sub: Any = None

    async def __aenter__(self) -> _Answers:
        self.sub = await self.nc.subscribe(self.subject, cb=self._take)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.sub.unsubscribe()

    async def _take(self, msg: Any) -> None:
        self.queue.put_nowait(msg)

    async def next(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), _TIMEOUT)
