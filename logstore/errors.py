"""Exceptions raised by logstore. Every one derives from `LogstoreError`.

Each carries the facts a person needs to act (which topic, which offset, which file) as
attributes, and says them in its message.
"""

from __future__ import annotations


class LogstoreError(Exception):
    """Base class of every error logstore raises on purpose."""


class InvalidName(LogstoreError, ValueError):
    """A topic id or subscription name does not match the allowed pattern."""


class InvalidArgument(LogstoreError, ValueError):
    """An argument has the wrong type or an impossible value."""


class TopicNotFound(LogstoreError, KeyError):
    def __init__(self, topic: str):
        self.topic = topic
        super().__init__(f"topic {topic!r} does not exist")

    def __str__(self) -> str:
        return self.args[0]


class TopicExists(LogstoreError):
    def __init__(self, topic: str, detail: str = ""):
        self.topic = topic
        super().__init__(f"topic {topic!r} already exists{detail}")


class SubscriptionNotFound(LogstoreError, KeyError):
    def __init__(self, topic: str, subscription: str):
        self.topic = topic
        self.subscription = subscription
        super().__init__(f"subscription {subscription!r} on topic {topic!r} does not exist")

    def __str__(self) -> str:
        return self.args[0]


class SubscriptionExists(LogstoreError):
    def __init__(self, topic: str, subscription: str, detail: str = ""):
        self.topic = topic
        self.subscription = subscription
        super().__init__(f"subscription {subscription!r} on topic {topic!r} already exists{detail}")


class OffsetOutOfRange(LogstoreError):
    """An offset outside [start_offset, end_offset] of a topic."""

    def __init__(self, topic: str, offset: int, start_offset: int, end_offset: int):
        self.topic = topic
        self.offset = offset
        self.start_offset = start_offset
        self.end_offset = end_offset
        super().__init__(
            f"offset {offset} is out of range for topic {topic!r}: "
            f"retained offsets are {start_offset} to {end_offset}"
        )


class MessageTooLarge(LogstoreError):
    def __init__(self, topic: str, size: int, limit: int):
        self.topic = topic
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of {size} bytes for topic {topic!r} is over the limit of {limit} bytes"
        )


class StoreLocked(LogstoreError):
    def __init__(self, path: str):
        self.path = path
        super().__init__(
            f"data directory {path} is open for writing by another process; "
            "open it with readonly=True or stop that process"
        )


class StoreClosed(LogstoreError):
    def __init__(self) -> None:
        super().__init__("the store is closed")


class ReadOnlyStore(LogstoreError):
    def __init__(self, path: str):
        self.path = path
        super().__init__(f"store {path} was opened with readonly=True; it cannot be changed")


class Corruption(LogstoreError):
    """Stored bytes fail their CRC or framing check; nothing wrong is returned instead."""

    def __init__(self, file: str, position: int, detail: str):
        self.file = file
        self.position = position
        self.detail = detail
        super().__init__(f"corrupt data in {file} at byte {position}: {detail}")


class StorageError(LogstoreError):
    """The operating system failed a write or fsync; the write was not stored."""

    def __init__(self, topic: str, detail: str):
        self.topic = topic
        self.detail = detail
        super().__init__(f"cannot write to topic {topic!r}: {detail}")


class StorageFull(StorageError):
    """The disk (or a file size limit) refused a write; reads still work."""

    def __init__(self, topic: str, detail: str):
        super().__init__(topic, f"{detail}; free space and retry")


class ServerError(LogstoreError):
    """An error answer of a logstore server that no other exception here describes (503
    overloaded or shutting down, 500 internal error, ...): `status` is the HTTP status, `code`
    the answer's `error` code. Raised by `Client` / `AsyncClient` only."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        super().__init__(f"{code}: {message}" if code else message)


class Unauthorized(ServerError):
    """401: the server needs a token (`Client(url, token=...)`) and got none or a wrong one."""


class Forbidden(ServerError):
    """403: the token is valid but lacks the permission (admin, publish or subscribe on that
    topic) the call needs."""


class ServerUnreachable(LogstoreError, ConnectionError):
    """No answer: the connection was refused or dropped, or the server took too long, and
    retrying (where the client's retry rule allows it) did not help."""

    def __init__(self, url: str, reason: object):
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the server at {url}: {reason}")
