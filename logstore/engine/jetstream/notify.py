"""Waiting for a topic to grow, woken by the notification subject, without polling.

Each stream republishes the last message of every batch, headers only, on its
notification subject (`names.notify_subject`); the engine subscribes once per topic it
waits on, on first use, and wakes the waiters whose offset that sequence passes. Writes
acknowledged in this process wake them at once (`stored`). A notice can be lost (NATS core
delivery), so a waiter asks the stream leader for the extent when it starts and once more
at its deadline, never in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import codec, names


class Notices:
    """Used only on the connection's loop."""

    def __init__(
        self,
        nc: Any,
        stream_of: Callable[[str], str],
        last_sequence: Callable[[str], Awaitable[int]],
    ):
        self.nc = nc
        self.stream_of = stream_of
        self.last_sequence = last_sequence  # coroutine: the stream's last sequence (leader)
        self._subscriptions: dict[str, Any] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future]]] = {}

    def stored(self, stream: str, sequence: int) -> None:
        """`sequence` of `stream` is stored: wake every waiter it passes."""
        waiters = self._waiters.get(stream)
        if not waiters:
            return
        keep = []
        for target, future in waiters:
            if sequence >= target:
                if not future.done():
                    future.set_result(True)
            elif not future.done():
                keep.append((target, future))
        self._waiters[stream] = keep

    async def _watch(self, stream: str) -> None:
        if stream in self._subscriptions:
            return

        async def notice(msg: Any) -> None:
            sequence = msg.headers.get(codec.SEQUENCE) if msg.headers else None
            if sequence is not None:
                self.stored(stream, int(sequence))

        self._subscriptions[stream] = await self.nc.subscribe(
            names.notify_subject(stream), cb=notice
        )
        await self.nc.flush()  # interest registered before the extent is asked for

    async def forget(self, stream: str) -> None:
        subscription = self._subscriptions.pop(stream, None)
        if subscription is not None:
            await subscription.unsubscribe()

    async def wait_beyond(self, topic_id: str, offset: int, timeout: float) -> bool:
        """True once the end offset is past `offset` (sequence > offset), False after
        `timeout` seconds without it."""
        stream = self.stream_of(topic_id)
        target = offset + 1
        await self._watch(stream)
        if await self.last_sequence(topic_id) >= target:
            return True
        if timeout <= 0:
            return False
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(stream, []).append((target, future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return await self.last_sequence(topic_id) >= target  # a lost notice
        finally:
            waiters = self._waiters.get(stream)
            if waiters:
                self._waiters[stream] = [w for w in waiters if w[1] is not future]
