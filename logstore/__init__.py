"""logstore: a durable, log-structured message store you can embed.

    from logstore import Store
    with Store("data") as store:
        store.create_topic("orders")
        offset = store.write("orders", b"hello")
        messages = store.read("orders", offset=0)

Everything public is importable from here; modules below are internals.
"""

from . import errors
from .errors import (
    Corruption,
    InvalidArgument,
    InvalidName,
    LogstoreError,
    MessageTooLarge,
    OffsetOutOfRange,
    ReadOnlyStore,
    StorageError,
    StorageFull,
    StoreClosed,
    StoreLocked,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicExists,
    TopicNotFound,
)
from .record import Message, Record
from .store import Store, TopicInfo
from .subscriptions import Delivery, SubscriptionInfo

__all__ = [
    "Corruption",
    "Delivery",
    "InvalidArgument",
    "InvalidName",
    "LogstoreError",
    "Message",
    "MessageTooLarge",
    "OffsetOutOfRange",
    "ReadOnlyStore",
    "Record",
    "StorageError",
    "StorageFull",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "SubscriptionExists",
    "SubscriptionInfo",
    "SubscriptionNotFound",
    "TopicExists",
    "TopicInfo",
    "TopicNotFound",
    "errors",
]
