"""Answers that come as several messages (a batch's acks, a batch Direct Get, a pull
request's deliveries): one wildcard inbox subscription for the connection, a subject
under it and a queue for each request. nats-py's `request` takes only the first answer.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

STATUS = "Status"


class Replies:
    """Opened once on the connection's loop; used only there."""

    def __init__(self, nc: Any):
        self.nc = nc
        self.prefix = ""
        self._queues: dict[str, asyncio.Queue] = {}
        self._numbers = itertools.count()

    async def open(self) -> None:
        if not self.prefix:
            prefix = self.nc.new_inbox()
            await self.nc.subscribe(f"{prefix}.*", cb=self._route)
            self.prefix = prefix

    def new(self) -> tuple[str, asyncio.Queue]:
        """A reply subject and the queue its answers arrive on (`done` when finished)."""
        subject = f"{self.prefix}.{next(self._numbers)}"
        queue = self._queues[subject] = asyncio.Queue()
        return subject, queue

    def done(self, subject: str) -> None:
        self._queues.pop(subject, None)

    async def _route(self, msg: Any) -> None:
        queue = self._queues.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg)


def status(msg: Any) -> str | None:
    """The status code of a status message (no payload, `Status` header), else None."""
    headers = msg.headers
    if headers and not msg.data:
        return headers.get(STATUS)
    return None
