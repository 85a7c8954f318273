"""`messages` and `deliveries`: iterators over a topic or a subscription, for `Store`,
`Client` (the same functions: they use only the public API) and `AsyncClient` (the `a`
versions, for `async for`).

- `messages` replays from a start, then follows the topic with long polls. It keeps the
  next offset itself and reads from it again after a lost connection or a restarting server
  (`ServerUnreachable`, 503), so nothing is skipped or repeated.
- `deliveries` polls a subscription and yields `Received` objects: the delivery plus
  `ack()` / `nack()` that settle it where it came from. At most `max_outstanding` are leased
  and unsettled at a time: when that many are out, the iterator waits for settles (from other
  threads or tasks) before it polls again. A poll whose answer was lost is asked again; the
  messages it had leased come back after the subscription's `ack_wait`, as SPEC §4 says.
  Closing the iterator (`break`, `close()`) gives back the leases it holds but has not yet
  handed out (a `nack`), so they are delivered again at once.

A connection that stays lost for `reconnect` seconds ends the iterator with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .errors import InvalidArgument, LogstoreError, ServerError, ServerUnreachable
from .types import Delivery, Message, SubscriptionInfo

T = TypeVar("T")
Start = str | int | datetime | None

FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 2.0


class Source(Protocol):
    """What the iterators need: `Store` and `Client` both are one."""

    def resolve_start(self, topic_id: str, start: Start = None) -> int: ...

    def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: None, wait: float
    ) -> list[Message]: ...

    def poll(self, topic_id: str, name: str, max_messages: int, wait: float) -> list[Delivery]: ...

    def ack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo: ...

    def nack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo: ...


class AsyncSource(Protocol):
    """What the asyncio iterators need: `AsyncClient` is one."""

    async def resolve_start(self, topic_id: str, start: Start = None) -> int: ...

    async def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: None, wait: float
    ) -> list[Message]: ...

    async def poll(
        self, topic_id: str, name: str, max_messages: int, wait: float
    ) -> list[Delivery]: ...

    async def ack(
        self, topic_id: str, name: str, offsets: Iterable[int | str]
    ) -> SubscriptionInfo: ...

    async def nack(
        self, topic_id: str, name: str, offsets: Iterable[int | str]
    ) -> SubscriptionInfo: ...


def transient(exc: BaseException) -> bool:
    """A failure that passes when the server is back: no connection, or a 503 (shutting
    down, overloaded, storage unavailable)."""
    return isinstance(exc, ServerUnreachable) or (
        isinstance(exc, ServerError) and exc.status == 503
    )


def _next_delay(delay: float) -> float:
    return min(delay * 2, MAX_RETRY_DELAY)


def _retrying(action: Callable[[], T], reconnect: float) -> T:
    """`action()`, tried again after transient failures for up to `reconnect` seconds."""
    deadline, delay = None, FIRST_RETRY_DELAY
    while True:
        try:
            return action()
        except LogstoreError as exc:
            if not transient(exc):
                raise
            deadline = deadline or time.monotonic() + reconnect
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = _next_delay(delay)


async def _aretrying(action: Callable[[], Awaitable[T]], reconnect: float) -> T:
    deadline, delay = None, FIRST_RETRY_DELAY
    while True:
        try:
            return await action()
        except LogstoreError as exc:
            if not transient(exc):
                raise
            deadline = deadline or time.monotonic() + reconnect
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = _next_delay(delay)


def _check(max_messages: int, wait: float) -> None:
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise InvalidArgument(f"the batch size must be an int of at least 1, not {max_messages!r}")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait > 0:
        raise InvalidArgument(f"wait must be a positive number of seconds, not {wait!r}")


# --------------------------------------------------------------- messages


def messages(
    source: Source,
    topic_id: str,
    offset: Start = None,
    *,
    follow: bool = True,
    max_messages: int = 100,
    wait: float = 30.0,
    reconnect: float = 60.0,
) -> Iterator[Message]:
    """Messages from `offset` ("earliest" when None, "latest", an offset or a datetime) to
    the end; with `follow`, then each new one as it is written (long polls of `wait`
    seconds), without end."""
    _check(max_messages, wait)
    position = _retrying(lambda: source.resolve_start(topic_id, offset), reconnect)
    read_wait = wait if follow else 0.0
    while True:
        batch = _retrying(
            lambda at=position: source.read(topic_id, at, max_messages, None, read_wait),
            reconnect,
        )
        if not batch and not follow:
            return
        for message in batch:
            position = message.offset + 1
            yield message


async def amessages(
    source: AsyncSource,
    topic_id: str,
    offset: Start = None,
    *,
    follow: bool = True,
    max_messages: int = 100,
    wait: float = 30.0,
    reconnect: float = 60.0,
) -> AsyncIterator[Message]:
    """`messages` for asyncio (`async for`)."""
    _check(max_messages, wait)
    position = await _aretrying(lambda: source.resolve_start(topic_id, offset), reconnect)
    read_wait = wait if follow else 0.0
    while True:
        batch = await _aretrying(
            lambda at=position: source.read(topic_id, at, max_messages, None, read_wait),
            reconnect,
        )
        if not batch and not follow:
            return
        for message in batch:
            position = message.offset + 1
            yield message


# ------------------------------------------------------------- deliveries


class _Delivered:
    """The fields of a delivery, read through to it (shared by both `Received` kinds)."""

    __slots__ = ("_tracker", "delivery")

    def __init__(self, delivery: Delivery, tracker: Any):
        self.delivery = delivery
        self._tracker = tracker

    @property
    def offset(self) -> int:
        return self.delivery.offset

    @property
    def timestamp(self) -> int:
        return self.delivery.timestamp

    @property
    def key(self) -> bytes | None:
        return self.delivery.key

    @property
    def headers(self) -> Mapping[str, str]:
        return self.delivery.headers

    @property
    def value(self) -> bytes:
        return self.delivery.value

    @property
    def delivery_count(self) -> int:
        return self.delivery.delivery_count

    @property
    def lease(self) -> str:
        return self.delivery.lease

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.delivery!r})"


class Received(_Delivered):
    """A delivery from `deliveries`: `delivery` and its fields, plus `ack()` and `nack()`,
    which settle it on the store or server it came from (by its lease token)."""

    __slots__ = ()

    def ack(self) -> SubscriptionInfo:
        return self._tracker.settle(self.delivery, "ack")

    def nack(self) -> SubscriptionInfo:
        return self._tracker.settle(self.delivery, "nack")


class AsyncReceived(_Delivered):
    """`Received` for asyncio: `await received.ack()`."""

    __slots__ = ()

    async def ack(self) -> SubscriptionInfo:
        return await self._tracker.settle(self.delivery, "ack")

    async def nack(self) -> SubscriptionInfo:
        return await self._tracker.settle(self.delivery, "nack")


class _Outstanding:
    """Leased, unsettled deliveries of one iterator: counts them, settles them, and makes
    the iterator wait while too many are out. Thread-safe."""

    def __init__(self, source: Source, topic_id: str, name: str, limit: int, reconnect: float):
        self.source, self.topic_id, self.name = source, topic_id, name
        self.limit, self.reconnect = limit, reconnect
        self.count = 0
        self.settled: set[str] = set()
        self.changed = threading.Condition()

    def room(self) -> int:
        """How many more may be leased now; waits while none."""
        with self.changed:
            self.changed.wait_for(lambda: self.count < self.limit)
            return self.limit - self.count

    def add(self, n: int) -> None:
        with self.changed:
            self.count += n

    def settle(self, delivery: Delivery, action: str) -> SubscriptionInfo:
        settle = self.source.ack if action == "ack" else self.source.nack
        info = _retrying(lambda: settle(self.topic_id, self.name, [delivery.lease]), self.reconnect)
        with self.changed:
            if delivery.lease not in self.settled:  # the second settle of one is no news
                self.settled.add(delivery.lease)
                self.count -= 1
                self.changed.notify_all()
        return info


class _AsyncOutstanding:
    """`_Outstanding` for one event loop."""

    def __init__(self, source: AsyncSource, topic_id: str, name: str, limit: int, reconnect: float):
        self.source, self.topic_id, self.name = source, topic_id, name
        self.limit, self.reconnect = limit, reconnect
        self.count = 0
        self.settled: set[str] = set()
        self.changed = asyncio.Event()

    async def room(self) -> int:
        while self.count >= self.limit:
            self.changed.clear()
            await self.changed.wait()
        return self.limit - self.count

    async def settle(self, delivery: Delivery, action: str) -> SubscriptionInfo:
        settle = self.source.ack if action == "ack" else self.source.nack
        info = await _aretrying(
            lambda: settle(self.topic_id, self.name, [delivery.lease]), self.reconnect
        )
        if delivery.lease not in self.settled:
            self.settled.add(delivery.lease)
            self.count -= 1
            self.changed.set()
        return info


def deliveries(
    source: Source,
    topic_id: str,
    name: str,
    *,
    max_outstanding: int = 100,
    wait: float = 30.0,
    reconnect: float = 60.0,
) -> Iterator[Received]:
    """Leased deliveries of subscription `name`, without end (long polls of `wait` s)."""
    _check(max_outstanding, wait)
    tracker = _Outstanding(source, topic_id, name, max_outstanding, reconnect)
    while True:
        room = tracker.room()
        batch = _retrying(lambda n=room: source.poll(topic_id, name, n, wait), reconnect)
        tracker.add(len(batch))
        handed = 0
        try:
            for delivery in batch:
                yield Received(delivery, tracker)
                handed += 1
        finally:
            rest = batch[handed + 1 :] if handed < len(batch) else []
            if rest:  # closed early: give back what was never handed out
                with contextlib.suppress(LogstoreError):
                    source.nack(topic_id, name, [d.lease for d in rest])


async def adeliveries(
    source: AsyncSource,
    topic_id: str,
    name: str,
    *,
    max_outstanding: int = 100,
    wait: float = 30.0,
    reconnect: float = 60.0,
) -> AsyncIterator[AsyncReceived]:
    """`deliveries` for asyncio (`async for`)."""
    _check(max_outstanding, wait)
    tracker = _AsyncOutstanding(source, topic_id, name, max_outstanding, reconnect)
    while True:
        room = await tracker.room()
        batch = await _aretrying(lambda n=room: source.poll(topic_id, name, n, wait), reconnect)
        tracker.count += len(batch)
        handed = 0
        try:
            for delivery in batch:
                yield AsyncReceived(delivery, tracker)
                handed += 1
        finally:
            rest = batch[handed + 1 :] if handed < len(batch) else []
            if rest:
                with contextlib.suppress(LogstoreError):
                    await source.nack(topic_id, name, [d.lease for d in rest])
