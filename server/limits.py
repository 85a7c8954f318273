"""The ceilings the server holds under abuse, and the gates that count concurrent waiters.

Every number a client controls (body size, batch size, `max`, `wait`, concurrent long polls
and SSE streams) has a ceiling here, so that no client, careless or hostile, can make the
server use memory, threads or file descriptors without bound. A client over a ceiling gets a
clear error (413, 400, or 503 with Retry-After) instead of degrading everyone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from logstore import MAX_BATCH_MESSAGES

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
    max_long_polls: int = 10_000
    """Requests waiting at once for new messages (replay or poll); 503 over it."""
    max_sse_streams: int = 1_000
    """Open Server-Sent Events streams; 503 over it."""
    idle_timeout_seconds: float = 75.0
    """A connection with no request in progress is closed after this long."""
    body_timeout_seconds: float = 30.0
    """A client that takes longer to send its request body gets 408."""
    sse_keepalive_seconds: float = 15.0
    """An idle SSE stream gets a comment this often, so proxies keep it open."""
    sse_send_timeout_seconds: float = 60.0
    """An SSE client that reads nothing for this long is disconnected."""
    sse_chunk_bytes: int = 256 * 2**10
    """Bytes read from the log per SSE send: with the socket buffer, the per-stream memory."""
    retry_after_seconds: int = 1
    """`Retry-After` sent with 503 answers."""
    io_threads: int = 32
    """Threads for storage work other than publishing (reads, acks, topic changes)."""
    publish_threads: int = 4
    """Publishing threads; each topic's publishes go to one of them, batched (see writer)."""
    shutdown_timeout_seconds: float = 10.0
    """On shutdown, how long requests in progress get to finish."""


class Gate:
    """Counts holders of a scarce resource and refuses one over the limit with 503."""

    def __init__(self, what: str, limit: int, retry_after: int):
        self.what = what
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise ApiError(
                503,
                "overloaded",
                f"too many {self.what} in progress (limit {self.limit}); retry shortly",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
