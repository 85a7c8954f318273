"""Waiting for new data: the long-poll primitive shared by the library and the server.

A `Watermark` is a number that only grows (a topic's visible end offset). Threads block on it
with `wait_beyond`; asyncio tasks await `wait_beyond_async`, which parks a future that the
writer's thread resolves through `loop.call_soon_threadsafe` (or directly, when the write
ran on that event loop itself), so the event loop never blocks and nobody polls.
Thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
import time


class Watermark:
    def __init__(self, value: int = 0):
        self._value = value
        # Reentrant: a KeyboardInterrupt that lands between taking the lock and entering the
        # `with` block (CPython 3.11 allows that) leaves it held by the main thread, whose
        # `Store.close()` must still get through instead of hanging.
        self._cond = threading.Condition(threading.RLock())
        self._thread_waiters = 0
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()
        self._closed = False

    @property
    def value(self) -> int:
        return self._value

    @property
    def waiters(self) -> int:
        return self._thread_waiters + len(self._futures)

    def advance(self, value: int) -> None:
        """Raise the mark to `value` (never lowers it) and wake whoever waits below it."""
        with self._cond:
            if value <= self._value:
                return
            self._value = value
            self._wake_locked()

    def reset(self, value: int) -> None:
        """Set the mark to `value`, even lower (a write rolled back), waking every waiter."""
        with self._cond:
            self._value = value
            self._wake_locked()

    def close(self) -> None:
        """Wake every waiter now and make every later wait return at once."""
        with self._cond:
            self._closed = True
            self._wake_locked()

    def wait_beyond(self, offset: int, timeout: float) -> bool:
        """Block until the mark exceeds `offset` (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._value <= offset and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._thread_waiters += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._thread_waiters -= 1
            return self._value > offset

    async def wait_beyond_async(self, offset: int, timeout: float) -> bool:
        """`wait_beyond` for asyncio: suspends the task, never the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = (loop, future)
        with self._cond:
            if self._value > offset or self._closed:
                return self._value > offset
            self._futures.add(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                self._futures.discard(entry)
        return self._value > offset

    def _wake_locked(self) -> None:
        if self._thread_waiters:
            self._cond.notify_all()
        if not self._futures:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for loop, future in self._futures:
            by_loop.setdefault(loop, []).append(future)
        here = _running_loop()
        for loop, futures in by_loop.items():  # one hop per event loop, however many wait
            if loop is here:  # a write made on the event loop itself: no wake-up to send
                _resolve(futures)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:
                continue  # that event loop is closed; its waiters are gone with it


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
