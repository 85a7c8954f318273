"""The publishing thread: every publish queued since its last round, written at once.

`loop.run_in_executor` costs every call a thread wake-up and an event-loop wake-up, which
for a small publish is more than the write itself. This thread instead takes every publish
queued since its last round, writes each topic's share with one `Store.write_batches` (one
`pwrite` and, under fsync="always", one fsync for all of them; each publish stays its own
atomic batch, with its Idempotency-Key if it has one: the store applies that policy), and
hands all the results back to the event loop with one `call_soon_threadsafe`. While it
waits for an fsync, the next round queues up: group commit with one thread and no herd of
pool threads.

Why batch again on top of the store's own group commit: the store shares an fsync among
callers that are each blocked in a write, so relying on it alone needs one pool thread per
publish in flight and two wake-ups per publish; gathering on this side pays those once per
round and gives the store each topic's share as one `write_batches` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

from logstore import InvalidArgument, MessageTooLarge, Record, Store


class PublishingThread:
    def __init__(self, store: Store, name: str = "storage-publisher"):
        self._store = store
        # SimpleQueue: a put is one C call that wakes the thread only when it sleeps, with no
        # Python-level lock for the event loop and this thread to contend for.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def publish(
        self, topic: str, items: list[bytes | Record], idempotency_key: str | None = None
    ) -> asyncio.Future[int]:
        """Queue one atomic batch for `topic`; its first offset (a `Replayed` when its
        idempotency key answered it) or error arrives on the returned future."""
        if self._stopping:
            raise RuntimeError("the publishing thread has stopped")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, topic, items, idempotency_key))
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
            stop = None in batch
            by_topic: dict[str, list] = {}
            for item in batch:
                if item is not None:
                    by_topic.setdefault(item[2], []).append(item)
            results: dict[asyncio.AbstractEventLoop, list] = {}
            for topic, items in by_topic.items():
                keys = [i[4] for i in items]
                outcomes = self._write(topic, [i[3] for i in items], keys if any(keys) else None)
                for (loop, future, *_), outcome in zip(items, outcomes, strict=True):
                    results.setdefault(loop, []).append((future, *outcome))
            self._hand_back(results)
            if stop:
                return

    def _write(
        self, topic: str, batches: list[list], keys: list[str | None] | None
    ) -> list[tuple[Any, BaseException | None]]:
        """(first offset, None) or (None, error) per batch.

        A batch the store refuses before writing anything (a bad or too large message) fails
        only itself: the others are written again without it. A failed write or fsync fails
        every batch of the round, never retried: after a failed fsync the kernel may have
        dropped the pages, and a retry that then succeeded would acknowledge data that a
        power loss can take (the store refuses further writes itself)."""
        try:
            firsts = self._store.write_batches(topic, batches, idempotency_keys=keys)
            return [(first, None) for first in firsts]
        except (InvalidArgument, MessageTooLarge) as exc:
            if len(batches) == 1:
                return [(None, exc)]
        except BaseException as exc:  # handed to the awaiting handlers, not lost
            return [(None, exc)] * len(batches)
        keys = keys or [None] * len(batches)
        return [
            outcome
            for b, k in zip(batches, keys, strict=True)
            for outcome in self._write(topic, [b], None if k is None else [k])
        ]

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
