"""Subscriptions: durable named positions on a topic, leased delivery and acknowledgements.

(Being built for the subscriptions issue; this first version only carries the interface the
store delegates to.)
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SubscriptionNotFound
from .record import Message


@dataclass(slots=True, frozen=True)
class SubscriptionInfo:
    topic: str
    name: str
    ack_floor: int
    pending: int
    lag: int
    ack_wait: float
    max_deliveries: int | None
    dead_letter_topic: str | None
    created_at: int


@dataclass(slots=True)
class Delivery:
    message: Message
    delivery_count: int


class Subscriptions:
    def __init__(self, store, meta) -> None:
        self._store = store
        self._meta = meta

    def on_topic_deleted(self, txn, topic_id: str) -> None:
        pass

    def list(self, topic_id: str) -> list[SubscriptionInfo]:
        self._store.topic(topic_id)
        return []

    def info(self, topic_id: str, name: str) -> SubscriptionInfo:
        raise SubscriptionNotFound(topic_id, name)

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        pass
