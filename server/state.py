"""What the handlers share: the store, the limits, the thread pool, counters, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from logstore import Record, Store, TopicInfo, TopicNotFound

from .auth import Authenticator
from .limits import Gate, Limits, PageBudget
from .metrics import Metrics
from .writer import PublishingThread

T = TypeVar("T")


@dataclass(frozen=True)
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    auth: Authenticator | None = None
    """None: no authentication (only sensible on a loopback address)."""


class ServerState:
    """One per application, at `app[STATE]`."""

    def __init__(self, store: Store, config: ServerConfig):
        self.store = store
        self.config = config
        self.limits = limits = config.limits
        self.metrics = Metrics()
        self.long_polls = Gate(
            "waiting long polls", limits.max_long_polls, limits.retry_after_seconds
        )
        self.sse_streams = Gate("event streams", limits.max_sse_streams, limits.retry_after_seconds)
        self.bodies_in_transit = Gate(
            "bytes of request bodies in transit",
            limits.max_body_bytes_in_transit,
            limits.retry_after_seconds,
        )
        self.sse_reads = asyncio.Semaphore(limits.sse_read_threads)
        self.shutting_down = False
        self._executor: ThreadPoolExecutor | None = None
        self._publishers: list[PublishingThread] = []
        self._waiting: set[asyncio.Task] = set()
        self._stopped: set[asyncio.Task] = set()
        self._tail_pages: dict[str, _TailPages] = {}
        self._tail_bytes = 0
        self._open_topics: set[str] = set()

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.limits.io_threads, thread_name_prefix="storage")
        # One executor: the store's asyncio methods hop to the loop's default one.
        asyncio.get_running_loop().set_default_executor(self._executor)
        self._publishers = [
            PublishingThread(self.store, f"storage-publisher-{i}")
            for i in range(self.limits.publish_threads)
        ]

    def begin_shutdown(self) -> None:
        """Refuse new requests and answer every waiting long poll and stream now."""
        self.shutting_down = True
        for task in self._waiting:
            self._stopped.add(task)
            task.cancel()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for publisher in self._publishers:
            await loop.run_in_executor(None, publisher.stop)
        if self._executor is not None:
            await loop.shutdown_default_executor()  # the storage pool, from its own thread

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking storage work (fsync, LMDB commits, file reads) in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def publish(
        self, topic: str, items: list[bytes | Record], idempotency_key: str | None = None
    ) -> int:
        """Append one publish (an atomic batch); its first offset, a `Replayed` when the store
        answered it from its idempotency key.

        A publish without a key on an idle topic whose fsync can wait (the latency path) is
        written here on the event loop when the store can do it with one `pwrite` and no
        wait (`Store.write_batches_now`): no thread hop, and a waiting long poll wakes on
        this loop. Else it goes to its topic's publishing thread, which writes and syncs
        all publishes queued together at once (see `writer`); several threads let
        different topics' fsyncs run in parallel."""
        if idempotency_key is None:
            firsts = self.store.write_batches_now(topic, [items])
            if firsts is not None:
                return firsts[0]
        publishers = self._publishers  # a topic always goes to the same one: order is kept
        publisher = publishers[hash(topic) % len(publishers)]
        return await publisher.publish(topic, items, idempotency_key)

    def mark_open(self, topic: str) -> None:
        """`topic`'s log is open in the store (it was just used from the thread pool)."""
        self._open_topics.add(topic)

    def forget_topic(self, topic: str) -> None:
        self._open_topics.discard(topic)
        self._drop_tail_pages(topic)

    def open_topic_info(self, topic: str) -> TopicInfo | None:
        """The topic's info without a thread hop when its log is already open (then it is
        a few attribute reads); None when opening it might read the disk (recovery)."""
        if topic not in self._open_topics:
            return None
        try:
            return self.store.topic(topic)
        except TopicNotFound:
            self._open_topics.discard(topic)
            raise

    async def unless_shutdown(self, coro: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
        """Await a long wait, cut short by shutdown: (finished, its result).

        Shutdown cancels the waiting handler's own task, and this takes back that one
        cancellation (not a client disconnect's), so a wait costs no extra task or future.
        """
        task = asyncio.current_task()
        if self.shutting_down:
            coro.close()
            return False, None
        self._waiting.add(task)
        try:
            return True, await coro
        except asyncio.CancelledError:
            if task in self._stopped and task.cancelling() == 1:
                task.uncancel()
                return False, None
            raise
        finally:
            self._waiting.discard(task)
            self._stopped.discard(task)

    def tail_page(
        self,
        read: Callable[..., T],
        topic: str,
        offset: int,
        max_messages: int,
        budget: PageBudget,
    ) -> T:
        """The answer of a long poll woken at the end of a topic, read on the event loop.

        What just arrived is in the page cache and small, so reading it here costs less than
        the two thread hops of the pool; the read is capped (`TAIL_READ_MESSAGES`,
        `TAIL_READ_BYTES`: the client asks again for the rest). Every poll woken at the same
        place by the same publish shares one read and one encoded answer (`read` gives
        something with a `body`): the pages of a topic's current end, at most
        `tail_cache_bytes` in all, each generation dropped when the end moves on or
        `TAIL_PAGE_SECONDS` later, whichever comes first (by then its polls are answered)."""
        max_messages = min(max_messages, TAIL_READ_MESSAGES)
        budget = PageBudget(budget.requested, min(budget.encoded, TAIL_READ_BYTES))
        end = self.store.topic(topic).end_offset
        held = self._tail_pages.get(topic)
        if held is None or held.end != end:
            self._drop_tail_pages(topic)
            held = self._tail_pages[topic] = _TailPages(end)
            asyncio.get_running_loop().call_later(
                TAIL_PAGE_SECONDS, self._drop_tail_pages, topic, held
            )
        key = (read, offset, max_messages, budget)  # `read` tells JSON pages from binary
        page = held.pages.get(key)
        if page is None:
            page = read(self.store, topic, offset, max_messages, budget)
            size = len(page.body)
            if self._tail_bytes + size <= self.limits.tail_cache_bytes:
                held.pages[key] = page
                held.nbytes += size
                self._tail_bytes += size
        return page

    def _drop_tail_pages(self, topic: str, only: _TailPages | None = None) -> None:
        held = self._tail_pages.get(topic)
        if held is not None and (only is None or held is only):
            del self._tail_pages[topic]
            self._tail_bytes -= held.nbytes

    @property
    def tail_cache_bytes(self) -> int:
        """Bytes of answers the tail cache holds now."""
        return self._tail_bytes


@dataclass(slots=True)
class _TailPages:
    """The cached answers of long polls woken at a topic's end offset `end`."""

    end: int
    pages: dict[tuple[Callable, int, int, PageBudget], Any] = field(default_factory=dict)
    nbytes: int = 0


STATE = web.AppKey("logstore.state", ServerState)
TAIL_READ_MESSAGES = 100
TAIL_READ_BYTES = 256 * 1024
TAIL_PAGE_SECONDS = 1.0
