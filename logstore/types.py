"""The public types of logstore: what the API takes and gives back, for every engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass
class Message:
    """A stored message, as read back.

    `_grant` is no field: it lets a poll turn the messages it has just read into
    `Delivery` objects by setting their class (same layout, no copy on the delivery path).
    """

    __slots__ = ("_grant", "headers", "key", "offset", "timestamp", "value")
    offset: int
    timestamp: int
    key: bytes | None
    headers: Mapping[str, str]
    value: bytes


@dataclass(slots=True)
class Record:
    """A message to write, when it needs a key or headers (plain `bytes` otherwise)."""

    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] | None = None


class EncodedBatch(bytes):
    """A batch already in the stored frame format (`logstore.frames`; the body of a binary
    publish, SPEC §6): one frame, any base offset and timestamp. `Store.write_batches`
    checks its layout, CRC and sizes and appends it as one atomic frame, renumbered and
    restamped, without decoding it into messages."""

    __slots__ = ()


@dataclass(slots=True, frozen=True)
class StoredFrames:
    """Whole frames as stored (`Store.read_stored`): they may begin before the offset asked
    for; the messages meant are those from that offset up to `next_offset`."""

    data: bytes
    next_offset: int


class Replayed(int):
    """A first offset answered from an idempotency key: that batch was written before (or
    by a concurrent duplicate) and was not appended again. An `int` in every way;
    `isinstance(offset, Replayed)` tells a replay from a fresh write (the HTTP server
    answers it with `Idempotent-Replayed: true`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Replayed({int(self)})"


class Grant:
    """One poll's leases: the grant number in each token, and the counts of redeliveries."""

    __slots__ = ("counts", "number")

    def __init__(self, number: int, counts: Mapping[int, int] = NO_HEADERS):
        self.number = number
        self.counts = counts  # offset -> delivery count, where not 1


class Delivery(Message):
    """A leased message: a `Message` plus `delivery_count` (1 on its first delivery) and
    `lease`, an opaque token that `ack` and `nack` accept in place of the offset."""

    __slots__ = ()

    @property
    def delivery_count(self) -> int:
        return self._grant.counts.get(self.offset, 1)

    @property
    def lease(self) -> str:
        return f"{self.offset}-{self._grant.number}"

    def __repr__(self) -> str:
        return (
            f"Delivery(offset={self.offset}, delivery_count={self.delivery_count}, "
            f"lease={self.lease!r}, timestamp={self.timestamp}, key={self.key!r}, "
            f"headers={dict(self.headers)!r}, value={self.value!r})"
        )


@dataclass(slots=True, frozen=True)
class TopicInfo:
    """A topic's settings and extent. `segments` is the number of segment files (None on
    a cluster, whose servers keep their own blocks)."""

    id: str
    name: str
    start_offset: int
    end_offset: int
    size_bytes: int
    segments: int | None
    created_at: int
    retention_ms: int | None
    retention_bytes: int | None
    segment_bytes: int


@dataclass(slots=True, frozen=True)
class SubscriptionInfo:
    """Where a subscription stands: every offset below `ack_floor` is acknowledged;
    `pending` messages are leased; `lag` messages of the topic are not acknowledged."""

    topic: str
    name: str
    ack_floor: int
    pending: int
    lag: int
    ack_wait: float
    max_deliveries: int | None
    dead_letter_topic: str | None
    created_at: int
