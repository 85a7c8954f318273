"""logstore: a durable, log-structured message store you can embed.

    from logstore import Store
    with Store("data") as store:
        store.create_topic("orders")
        offset = store.write("orders", b"hello")
        messages = store.read("orders", offset=0)

Everything public is importable from here; modules below are internals.
"""

from . import errors
from .config import (
    DEFAULT_SEGMENT_BYTES,
    FSYNC_POLICIES,
    MAX_BATCH_MESSAGES,
    MAX_IDEMPOTENCY_KEY,
    NAME_PATTERN,
    check_name,
)
from .engine.local.check import check_store
from .engine.local.check import run as check
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
from .store import Store
from .types import Delivery, Message, Record, Replayed, SubscriptionInfo, TopicInfo

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FSYNC_POLICIES",
    "MAX_BATCH_MESSAGES",
    "MAX_IDEMPOTENCY_KEY",
    "NAME_PATTERN",
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
    "Replayed",
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
    "check",
    "check_name",
    "check_store",
    "errors",
]
