"""`JetStreamEngine`: the `Engine` of `engine.base` on a NATS JetStream cluster.

Every method runs its work as a coroutine on the connection's private loop
(`connection.Connection`): the synchronous ones wait for it, the `*_async` ones await it
from the caller's loop without blocking it. The parts are in their modules (see the
package docstring); this one wires them and keeps the facts `/health` shows.

What differs from the local engine (docs/CLUSTER.md): durability is the cluster's
`sync_interval`, not a per-store fsync policy (`sync` does nothing); the cluster checks
and repairs its own files, so there is no `Corruption`; `StorageFull` comes only from
quotas; `TopicInfo.segments` is None; leases are held by the cluster and survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ... import frames
from ...config import Stats
from ...errors import StoreClosed
from ...types import Message, StoredFrames, SubscriptionInfo, TopicInfo
from ..base import Batch, Leased, Outcome, SubscriptionSettings, TopicSettings
from .append import Appender
from .connection import Connection
from .consumers import Consumers
from .notify import Notices
from .options import ClusterOptions
from .read import Reader
from .replies import Replies
from .streams import Streams

DIFFERENCES = {
    "fsync": "the cluster's sync_interval (docs/CLUSTER.md), not a per-store policy",
    "corruption": "not reported: the cluster checks and repairs its own files",
    "storage_full": "only through quotas (max_bytes, max_file_store)",
    "segments": "null: the server sizes its own blocks",
    "leases": "held by the cluster: they survive restarts and end after ack_wait",
}


class JetStreamEngine:
    readonly = False

    def __init__(self, url: str, *, idempotency_window: float):
        self.options = options = ClusterOptions.from_url(url)
        self.stats = Stats()
        self.connection = connection = Connection(options)
        nc = connection.nc
        timeout, retry = options.request_timeout, options.publish_timeout
        self.streams = streams = Streams(
            nc, options.namespace, options.replicas, idempotency_window, timeout, retry
        )
        replies = Replies(nc)
        self.reader = reader = Reader(nc, replies, streams.stream, streams.info, timeout, retry)
        self.notices = notices = Notices(nc, streams.stream, self._last_sequence)

        def stored(stream: str, sequence: int) -> None:
            reader.stored(stream, sequence)
            notices.stored(stream, sequence)

        self.appender = Appender(nc, replies, streams.stream, streams.info, stored, retry, timeout)
        self.consumers = Consumers(nc, streams.stream, streams.info, reader.acked, timeout, retry)

    async def _last_sequence(self, topic_id: str) -> int:
        return (await self.streams.info(topic_id))["state"]["last_seq"]

    @property
    def idempotency_keys(self) -> int:
        return 0  # the cluster keeps them (each stream's duplicate window)

    def describe(self) -> dict[str, Any]:
        """What /health shows of the storage: the cluster connection and the differences."""
        c = self.connection
        return {
            "engine": "jetstream",
            "servers": self.options.url,
            "namespace": self.options.namespace,
            "replicas": self.options.replicas,
            "connected": c.connected and not c.closed,
            "connected_server": c.connected_server,
            "reconnects": c.reconnects,
            "durability": "the cluster's sync_interval",
            "differences": DIFFERENCES,
        }

    # ---------------------------------------------------------------- topics

    def create_topic(self, topic_id: str, settings: TopicSettings, *, exist_ok: bool) -> TopicInfo:
        return self.connection.run(self.streams.create(topic_id, settings, exist_ok))

    def delete_topic(self, topic_id: str) -> None:
        self.connection.run(self._delete(topic_id))

    async def _delete(self, topic_id: str) -> None:
        await self.streams.delete(topic_id)
        stream = self.streams.stream(topic_id)
        self.reader.forget(stream)
        await self.notices.forget(stream)

    def topic(self, topic_id: str) -> TopicInfo:
        return self.connection.run(self.streams.topic(topic_id))

    def topics(self) -> list[TopicInfo]:
        return self.connection.run(self.streams.topics())

    # --------------------------------------------------------------- the log

    def append(
        self, topic_id: str, batches: Sequence[Batch], keys: Sequence[str | None] | None = None
    ) -> list[int]:
        return self.connection.run(self.appender.append(topic_id, batches, keys))

    def append_now(self, topic_id: str, batches: Sequence[Batch]) -> list[int] | None:
        return None  # every append is a round trip to the cluster

    def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> list[Message]:
        return self.connection.run(self.reader.read(topic_id, offset, max_messages, max_bytes))

    def read_stored(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> StoredFrames:
        messages = self.read(topic_id, offset, max_messages, max_bytes)
        data = frames.encode_messages(messages) if messages else b""
        return StoredFrames(data, messages[-1].offset + 1 if messages else offset)

    def wait_beyond(self, topic_id: str, offset: int, timeout: float) -> bool:
        return self.connection.run(self.notices.wait_beyond(topic_id, offset, timeout))

    async def wait_beyond_async(self, topic_id: str, offset: int, timeout: float) -> bool:
        return await self.connection.run_async(self.notices.wait_beyond(topic_id, offset, timeout))

    def offset_for_time(self, topic_id: str, timestamp_ms: int) -> int:
        return self.connection.run(self.reader.offset_for_time(topic_id, timestamp_ms))

    # --------------------------------------------------------- subscriptions

    def subscribe(
        self, topic_id: str, name: str, settings: SubscriptionSettings, start: int
    ) -> tuple[SubscriptionInfo, bool]:
        return self.connection.run(self.consumers.subscribe(topic_id, name, settings, start))

    def unsubscribe(self, topic_id: str, name: str) -> None:
        self.connection.run(self.consumers.unsubscribe(topic_id, name))

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        return self.connection.run(self.consumers.subscriptions(topic_id))

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        return self.connection.run(self.consumers.subscription(topic_id, name))

    def lease(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        return self.connection.run(
            self.consumers.lease(topic_id, name, max_messages, wait, max_bytes)
        )

    async def lease_async(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        return await self.connection.run_async(
            self.consumers.lease(topic_id, name, max_messages, wait, max_bytes)
        )

    def settle(
        self, topic_id: str, name: str, items: Iterable[int | str], outcome: Outcome
    ) -> SubscriptionInfo:
        items = list(items) if not isinstance(items, int | str | bytes) else items
        return self.connection.run(self.consumers.settle(topic_id, name, items, outcome))

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        return self.connection.run(self.consumers.commit(topic_id, name, up_to))

    def seek(self, topic_id: str, name: str, offset: int) -> SubscriptionInfo:
        return self.connection.run(self.consumers.seek(topic_id, name, offset))

    # ------------------------------------------------------------ life cycle

    def sync(self) -> None:
        """Nothing to do: an acknowledged write is as durable as the cluster's
        `sync_interval` makes it (`always` in the configuration logstore documents)."""
        if self.connection.closed:
            raise StoreClosed()

    def close(self) -> None:
        self.connection.close()
