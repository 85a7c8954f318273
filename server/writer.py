"""A storage thread that takes calls in bulk: cheap hand-offs for fast, ordered work.

`loop.run_in_executor` costs every call a thread wake-up and an event-loop wake-up, which
for a small publish under fsync="never" (a `pwrite` into the page cache) is more than the
write itself. This thread instead takes every call queued since its last round, runs them in
order, and hands all their results back to the event loop with one `call_soon_threadsafe`:
under load the hand-off cost is shared by a whole batch of requests.

It runs calls one at a time, so it only suits work that does not wait on the disk: under
fsync="always" publishes go to the thread pool instead, where concurrent writers share
fsyncs (the library's group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BatchingThread:
    def __init__(self, name: str):
        # SimpleQueue: a put is one C call that wakes the thread only when it sleeps, with no
        # Python-level lock for the event loop and this thread to contend for.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(*args)`; its result (or exception) arrives on the returned future."""
        if self._stopping:
            raise RuntimeError("the storage thread has stopped")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        """Finish what is queued, then end the thread (blocks until it has)."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < _MAX_BATCH:
                    batch.append(self._queue.get_nowait())
            results: dict[asyncio.AbstractEventLoop, list] = {}
            for item in batch:
                if item is None:
                    self._hand_back(results)
                    return
                loop, future, fn, args = item
                try:
                    outcome = (future, fn(*args), None)
                except BaseException as exc:  # handed to the awaiting handler, not lost
                    outcome = (future, None, exc)
                results.setdefault(loop, []).append(outcome)
            self._hand_back(results)

    @staticmethod
    def _hand_back(results: dict[asyncio.AbstractEventLoop, list]) -> None:
        for loop, outcomes in results.items():
            try:
                loop.call_soon_threadsafe(_settle, outcomes)
            except RuntimeError:
                continue  # that event loop is closed: nobody waits for these any more


_MAX_BATCH = 1024


def _settle(outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
