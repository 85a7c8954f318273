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
from .engine.local.backup import BackupReport, TopicCopy, backup, restore
from .engine.local.check import check_store
from .engine.local.check import run as check
from .errors import (
    Corruption,
    Forbidden,
    InvalidArgument,
    InvalidName,
    LogstoreError,
    MessageTooLarge,
    OffsetOutOfRange,
    ReadOnlyStore,
    ServerError,
    ServerUnreachable,
    StorageError,
    StorageFull,
    StoreClosed,
    StoreLocked,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicExists,
    TopicNotFound,
    Unauthorized,
)
from .iterators import AsyncReceived, Received
from .store import Store
from .types import (
    Delivery,
    EncodedBatch,
    Message,
    Record,
    Replayed,
    StoredFrames,
    SubscriptionInfo,
    TopicInfo,
)

from .remote import DEFAULT_URL, AsyncClient, Client, Retry  # isort: skip (needs the above)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "DEFAULT_URL",
    "FSYNC_POLICIES",
    "MAX_BATCH_MESSAGES",
    "MAX_IDEMPOTENCY_KEY",
    "NAME_PATTERN",
    "AsyncClient",
    "AsyncReceived",
    "BackupReport",
    "Client",
    "Corruption",
    "Delivery",
    "EncodedBatch",
    "Forbidden",
    "InvalidArgument",
    "InvalidName",
    "LogstoreError",
    "Message",
    "MessageTooLarge",
    "OffsetOutOfRange",
    "ReadOnlyStore",
    "Received",
    "Record",
    "Replayed",
    "Retry",
    "ServerError",
    "ServerUnreachable",
    "StorageError",
    "StorageFull",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "StoredFrames",
    "SubscriptionExists",
    "SubscriptionInfo",
    "SubscriptionNotFound",
    "TopicCopy",
    "TopicExists",
    "TopicInfo",
    "TopicNotFound",
    "Unauthorized",
    "backup",
    "check",
    "check_name",
    "check_store",
    "errors",
    "restore",
]
