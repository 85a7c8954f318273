"""Idempotency-Key for publish: a retried request answers the first result, appends nothing.

A client that lost the answer to a publish (timeout, dropped connection) cannot know whether
it was stored. Sending the same `Idempotency-Key` header again to the same topic within
`window` seconds (2 minutes) returns the first request's result instead of appending again;
a retry that arrives while the first is still in progress waits for it. A publish that
failed is forgotten, so its retry really runs.

The keys live in this process's memory only (a restart forgets them) and at most
`max_keys` are kept (oldest dropped first), so the cache cannot grow without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

MAX_KEY_LENGTH = 256


class IdempotencyCache:
    def __init__(self, window: float = 120.0, max_keys: int = 100_000):
        self.window = window
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], tuple[float, asyncio.Future]] = OrderedDict()

    async def run(
        self, topic: str, key: str, publish: Callable[[], Awaitable[dict]]
    ) -> tuple[dict, bool]:
        """The result of `publish()` (run once per key), and whether it was a replay."""
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get((topic, key))
        if entry is not None:
            return await asyncio.shield(entry[1]), True
        future = asyncio.ensure_future(publish())
        self._entries[(topic, key)] = (now, future)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        future.add_done_callback(lambda f: self._forget_failed(topic, key, f))
        # Shielded: a client that disconnects does not cancel the write, and its retry
        # then finds the result here.
        return await asyncio.shield(future), False

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's keys go with it: a re-created topic starts afresh."""
        for k in [k for k in self._entries if k[0] == topic]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)

    def _forget_failed(self, topic: str, key: str, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            entry = self._entries.get((topic, key))
            if entry is not None and entry[1] is future:
                del self._entries[(topic, key)]

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if now - first[0] < self.window:
                return
            entries.popitem(last=False)
