"""The engine seam: the whole of what a storage engine does for the `Store` facade.

The facade (`logstore.store`) validates names, messages and arguments, resolves where a read
or a subscription starts (offsets, times, "earliest"/"latest"), dead-letters exhausted
messages and offers the synchronous and asyncio forms. An engine only stores and leases:
topics, atomic appends, reads, waiting beyond an offset, the offset for a time, and the
state of subscriptions (lease, settle, commit, seek). Arguments reach it validated.

The local engine (`engine.local`: segment files and LMDB) is synchronous, so embedded
callers pay no thread hop; its `*_async` methods wait on the event loop and hop to the
loop's default executor only for work that touches files. An engine whose client is
asynchronous (JetStream) runs it on a private loop thread behind the same methods.

Idempotency keys: `append` takes one key (or None) per batch and applies the facade's
policy (see `Store.write_batches`): within the engine's window a key already written
answers its batch's first offset as a `Replayed` without appending again, a key in flight
makes the duplicate wait for that write (and append after all if it failed), and a failed
write's key is forgotten. Keys are per topic and go with it when it is deleted. The local
engine keeps them in memory (`engine.local.idempotency`); a JetStream engine will hand them
to the server as `Nats-Msg-Id` (its stream's duplicate window) instead.

Every method may be called from any thread. Errors are `logstore.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..config import Stats
from ..types import Delivery, Message, Record, StoredFrames, SubscriptionInfo, TopicInfo

Outcome = Literal["ack", "nack", "terminate"]
"""How `settle` ends leases: acknowledged; delivered again (an exhausted message goes back
to waiting for the dead-letter topic); or acknowledged after the facade dead-lettered it."""


@dataclass(slots=True, frozen=True)
class TopicSettings:
    name: str  # display name, any text
    retention_ms: int | None  # retention by age of the records
    retention_bytes: int | None  # retention by size of the topic
    segment_bytes: int  # size at which a segment is sealed (local engine)


@dataclass(slots=True, frozen=True)
class SubscriptionSettings:
    ack_wait: float  # seconds a lease lasts
    max_deliveries: int | None  # deliveries after which a message is exhausted
    dead_letter_topic: str | None  # where the facade sends exhausted messages


@dataclass(slots=True)
class Batch:
    """One atomic batch to append: plain values (the fast path), `Record`s, or a frame
    built elsewhere and checked by the facade (`frame`, holding `frame_count` messages;
    `records` is then empty), which the engine renumbers and restamps."""

    records: Sequence[bytes] | Sequence[Record]
    plain: bool
    frame: bytes | None = None
    frame_count: int = 0


@dataclass(slots=True)
class Leased:
    """What one `lease` call hands out: deliveries, and the messages that reached
    `max_deliveries` (their offsets are held for the facade to `settle` as "terminate"
    after dead-lettering them, or as "nack" if that failed)."""

    deliveries: list[Delivery] = field(default_factory=list)
    exhausted: list[Message] = field(default_factory=list)
    exhausted_offsets: list[int] = field(default_factory=list)
    dead_letter_topic: str | None = None
    max_deliveries: int | None = None


class Engine(Protocol):
    readonly: bool
    stats: Stats

    @property
    def idempotency_keys(self) -> int:
        """Idempotency keys remembered in this process now (0 if the engine keeps none)."""

    def describe(self) -> dict[str, object]:
        """What `/health` shows of the storage: "engine", where the data lives, durability
        (and for a cluster: the connection, and how it differs from the local engine)."""

    # topics
    def create_topic(self, topic_id: str, settings: TopicSettings, *, exist_ok: bool) -> TopicInfo:
        """Create a topic (TopicExists unless `exist_ok` and the settings are the same)."""

    def delete_topic(self, topic_id: str) -> None:
        """Delete a topic with its subscriptions; a re-created one starts at offset 0."""

    def topic(self, topic_id: str) -> TopicInfo: ...

    def topics(self) -> list[TopicInfo]: ...

    # the log
    def append(
        self, topic_id: str, batches: Sequence[Batch], keys: Sequence[str | None] | None = None
    ) -> list[int]:
        """Append each batch atomically, durable per the engine's policy; first offsets.

        `keys`: None, or one idempotency key (validated) or None per batch. A batch whose
        key answered it is not appended: its first offset is the first write's, as a
        `Replayed`. Atomic per batch as always: a duplicate never takes offsets. With
        `keys=None` the engine must not pay for the feature (the hot path)."""

    def append_now(self, topic_id: str, batches: Sequence[Batch]) -> list[int] | None:
        """`append` without keys if it can finish at once, never waiting on the disk (an
        fsync), a lock or the network: for an event loop. None when it cannot, having
        done nothing: the caller then calls `append` from a thread."""

    def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> list[Message]:
        """Messages from `offset` (OffsetOutOfRange outside [start, end])."""

    def read_stored(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> StoredFrames:
        """Whole frames in the stored format from the one holding `offset` (the binary
        wire's replay); an engine that stores no frames encodes `read`'s messages."""

    def wait_beyond(self, topic_id: str, offset: int, timeout: float) -> bool:
        """Block until the end offset is past `offset` (True) or `timeout` passes."""

    async def wait_beyond_async(self, topic_id: str, offset: int, timeout: float) -> bool:
        """`wait_beyond` for asyncio: never blocks the event loop."""

    def offset_for_time(self, topic_id: str, timestamp_ms: int) -> int:
        """The first offset whose timestamp is >= `timestamp_ms` (the end offset if none)."""

    # subscriptions
    def subscribe(
        self, topic_id: str, name: str, settings: SubscriptionSettings, start: int
    ) -> tuple[SubscriptionInfo, bool]:
        """Create at offset `start`, or find it (SubscriptionExists if settings differ);
        the info, and whether it was created."""

    def unsubscribe(self, topic_id: str, name: str) -> None: ...

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]: ...

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo: ...

    def lease(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        """Lease what is deliverable (redeliveries first, at most about `max_bytes` of values
        and keys but always one message); wait up to `wait` for something."""

    async def lease_async(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        """`lease` for asyncio: waiting costs no thread."""

    def settle(
        self, topic_id: str, name: str, items: Iterable[int | str], outcome: Outcome
    ) -> SubscriptionInfo:
        """End leases, given as offsets or lease tokens (see `Outcome`)."""

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to`."""

    def seek(self, topic_id: str, name: str, offset: int) -> SubscriptionInfo:
        """Everything below `offset` acknowledged, nothing from it on; leases end."""

    # life cycle
    def sync(self) -> None: ...

    def close(self) -> None: ...
