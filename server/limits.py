"""The ceilings the server holds under abuse, and the gates that count concurrent waiters.

Every number a client controls (body size, batch size, `max`, `wait`, bytes of an answer,
concurrent long polls, SSE streams, connections, request bodies in transit) has a ceiling
here, so that no client, careless or hostile, can make the server use memory, threads or file
descriptors without bound. A client over a ceiling gets a clear error (413, 400, or 503 with
Retry-After) instead of degrading everyone else. docs/LIMITS.md lists them all; `logstore
serve` sets each from a flag or an environment variable (`cli`), and derives the caps on
connections, long polls and streams from the descriptor limit (`fit_to_descriptors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from logstore import MAX_BATCH_MESSAGES, Message

from .errors import ApiError


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 16 * 2**20
    """A request body over this answers 413 before it is read."""
    max_batch_messages: int = MAX_BATCH_MESSAGES
    """Messages in one JSON publish batch (413 over it)."""
    max_read_messages: int = 10_000
    """Ceiling of `max` on replay and poll; a larger value is lowered to it."""
    max_wait_seconds: float = 60.0
    """Ceiling of `wait` on replay and poll; a larger value is lowered to it."""
    page_bytes: int = 2**20
    """Bytes of one replay page as sent (encoded JSON), and the ceiling of a client's
    `max_bytes`; a poll answer leases at most a sixth of it in values and keys (JSON may
    escape each byte to six); one message larger than it still goes out alone."""
    max_long_polls: int = 10_000
    """Requests waiting at once for new messages (replay or poll); 503 over it."""
    max_sse_streams: int = 1_000
    """Open Server-Sent Events streams; 503 over it."""
    max_connections: int = 10_000
    """Open client connections; one over it gets 503 and is closed."""
    max_body_bytes_in_transit: int = 64 * 2**20
    """Bytes of request bodies being received at once (counted by Content-Length, or
    `max_body_bytes` when unknown; a body that came with its headers counts nothing); a
    request over it answers 503."""
    tail_cache_bytes: int = 8 * 2**20
    """Encoded answers kept for long polls woken by the same publish (each kept a second)."""
    idle_timeout_seconds: float = 75.0
    """A connection with no request in progress is closed after this long."""
    body_timeout_seconds: float = 30.0
    """A client that takes longer to send its request body gets 408."""
    sse_keepalive_seconds: float = 15.0
    """An idle SSE stream gets a comment this often, so proxies keep it open."""
    sse_send_timeout_seconds: float = 60.0
    """An SSE client that reads nothing for this long is disconnected."""
    sse_chunk_bytes: int = 64 * 2**10
    """Encoded bytes per SSE send (one larger message goes alone): a stalled stream holds
    about three times this (see events)."""
    sse_read_threads: int = 4
    """SSE reads running at once in the storage pool; the other streams queue for them, so
    streams catching up from far behind leave the pool to everyone else."""
    retry_after_seconds: int = 1
    """`Retry-After` sent with 503 answers."""
    io_threads: int = 32
    """Threads for storage work other than publishing (reads, acks, topic changes)."""
    publish_threads: int = 4
    """Publishing threads; each topic's publishes go to one of them, batched (see writer)."""
    shutdown_timeout_seconds: float = 10.0
    """On shutdown, how long requests in progress get to finish."""


class Gate:
    """Counts what holders of a scarce resource take (one each, or an amount such as bytes)
    and refuses one that would go over the limit with 503."""

    def __init__(self, what: str, limit: int, retry_after: int):
        self.what = what
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0

    @contextmanager
    def hold(self, amount: int = 1) -> Iterator[None]:
        if self.active + amount > self.limit:
            raise ApiError(
                503,
                "overloaded",
                f"too many {self.what} at once (limit {self.limit}); retry shortly",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.active += amount
        try:
            yield
        finally:
            self.active -= amount


DESCRIPTOR_HEADROOM = 512
"""Descriptors kept for everything but client connections: the store's cached segment files
(256 by default), LMDB, logs, the listening socket, the storage threads' work."""
DESCRIPTOR_CAPPED = ("max_connections", "max_long_polls", "max_sse_streams")
"""The limits `fit_to_descriptors` derives unless they were set."""


def fit_to_descriptors(limits: Limits, descriptors: int, explicit: set[str]) -> Limits:
    """`limits` with the caps of DESCRIPTOR_CAPPED not in `explicit` lowered to what
    `descriptors` (the process's RLIMIT_NOFILE) can hold: each connection is a descriptor,
    and long polls and streams each hold a connection, leaving room for ordinary requests."""
    connections = max(descriptors - DESCRIPTOR_HEADROOM, 64)
    derived = {
        "max_connections": min(limits.max_connections, connections),
        "max_long_polls": min(limits.max_long_polls, connections * 3 // 4),
        "max_sse_streams": min(limits.max_sse_streams, connections // 4),
    }
    return replace(limits, **{k: v for k, v in derived.items() if k not in explicit})


JSON_EXPANSION = 6
"""The most bytes of JSON one byte of a value can become (a control character: \\u0000)."""


@dataclass(frozen=True, slots=True)
class PageBudget:
    """The bytes one answer may hold: the client's `max_bytes` counts stored values and
    keys (the library's measure), `encoded` the answer as sent (the server's `page_bytes`)."""

    requested: int | None
    encoded: int

    @property
    def stored(self) -> int:
        """Stored bytes to read: never more than could be sent (JSON only grows a value)."""
        return self.encoded if self.requested is None else min(self.requested, self.encoded)


def encoded_within(
    messages: Sequence[Message], budget: int, encode: Callable[[Message], bytes]
) -> list[bytes]:
    """The encodings of the longest prefix of `messages` within `budget` bytes in all (the
    first always: a message larger than the budget goes out alone).

    Counting encoded bytes, not stored ones, is what bounds an answer: JSON escaping can
    make a value six times larger (`JSON_EXPANSION`). The messages cut off are read again
    by the next page."""
    out: list[bytes] = []
    for m in messages:
        data = encode(m)
        budget -= len(data)
        if budget < 0 and out:
            break
        out.append(data)
    return out
