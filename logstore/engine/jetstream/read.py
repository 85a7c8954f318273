"""Reads: batch Direct Get, with leader reads where a replica lags.

A batch Direct Get (`$JS.API.DIRECT.GET.<stream>` with `seq`, `batch`, `max_bytes`) is
answered by any replica that is nearly caught up: its messages, then an end-of-batch status
(204). A replica may lag behind a write this process saw acknowledged, so a read that
stops short of the highest sequence acknowledged here (`Reader.acked`) reads the rest from
the stream leader (`STREAM.MSG.GET`, one message per request), and a read that finds
nothing asks the leader for the stream's extent before answering empty or
`OffsetOutOfRange`. The JetStream size of a message (subject, headers, payload) is larger
than what `max_bytes` counts (values and keys), so Direct Get gets a looser bound and the
answer is cut here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import OffsetOutOfRange
from ...types import Message
from . import api, codec
from .replies import Replies, status

UNBOUNDED_BYTES = 64 * 2**20  # what one Direct Get answer may carry when max_bytes is None
PER_MESSAGE_ALLOWANCE = 1024  # subject and JetStream headers, for the looser bound
LEADER_READ_CHUNK = 64


class Reader:
    def __init__(
        self,
        nc: Any,
        replies: Replies,
        stream_of: Callable[[str], str],
        info: Callable[[str], Awaitable[dict[str, Any]]],
        timeout: float,
        retry_seconds: float,
    ):
        self.nc = nc
        self.replies = replies
        self.stream_of = stream_of
        self.info = info  # coroutine: STREAM.INFO of a topic (from the leader)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.acked: dict[str, int] = {}  # stream -> highest sequence acknowledged here

    def stored(self, stream: str, sequence: int) -> None:
        if sequence > self.acked.get(stream, 0):
            self.acked[stream] = sequence

    def forget(self, stream: str) -> None:
        self.acked.pop(stream, None)

    async def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> list[Message]:
        stream = self.stream_of(topic_id)
        got = await self._direct(topic_id, stream, offset, max_messages, max_bytes)
        if got:
            if got[0].offset != offset:  # below the first retained message
                info = await self.info(topic_id)
                raise _out_of_range(topic_id, offset, info)
            budget = _Budget(max_bytes)
            kept = [m for m in got if budget.take(m)]
            if len(kept) < len(got) or len(kept) == max_messages or budget.spent:
                return kept
            following = kept[-1].offset + 1
            if following < self.acked.get(stream, 0):  # a lagging replica answered
                more = await self._leader(
                    topic_id, stream, following, max_messages - len(kept), budget
                )
                kept.extend(more)
            return kept
        info = await self.info(topic_id)
        start, end = _extent(info)
        if not start <= offset <= end:
            raise _out_of_range(topic_id, offset, info)
        if offset == end:
            return []
        return await self._leader(topic_id, stream, offset, max_messages, _Budget(max_bytes))

    async def _direct(
        self, topic_id: str, stream: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> list[Message]:
        """Messages from `offset` as a replica has them."""
        await self.replies.open()
        if max_bytes is None:
            limit = UNBOUNDED_BYTES
        else:
            limit = min(2 * max_bytes + PER_MESSAGE_ALLOWANCE * max_messages, UNBOUNDED_BYTES)
        doc = json.dumps({"seq": offset + 1, "batch": max_messages, "max_bytes": limit}).encode()
        deadline = time.monotonic() + self.retry_seconds
        while True:
            reply, answers = self.replies.new()
            try:
                await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", doc, reply=reply)
                out: list[Message] = []
                while True:
                    msg = await asyncio.wait_for(answers.get(), self.timeout)
                    code = status(msg)
                    if code is None:
                        out.append(codec.stored_message(msg))
                        if len(out) == max_messages:
                            return out
                    elif code in ("204", "404", "408"):  # the end of the batch, or nothing
                        return out
                    else:
                        problem: Exception = RuntimeError(f"Direct Get answered status {code}")
                        if code == "503":  # no responders: no stream, or no replica up
                            await self.info(topic_id)  # TopicNotFound when it is gone
                        break
            except TimeoutError as exc:
                problem = exc
            finally:
                self.replies.done(reply)
            if time.monotonic() + api.RETRY_PAUSE >= deadline:
                raise api.unavailable(topic_id, problem)
            await asyncio.sleep(api.RETRY_PAUSE)

    async def _leader(
        self, topic_id: str, stream: str, offset: int, max_messages: int, budget: _Budget
    ) -> list[Message]:
        """Messages from `offset` read through the stream leader, until one is missing."""
        out: list[Message] = []
        subject = f"$JS.API.STREAM.MSG.GET.{stream}"
        deadline = time.monotonic() + self.retry_seconds
        while len(out) < max_messages:
            first = offset + len(out)
            count = min(LEADER_READ_CHUNK, max_messages - len(out))
            answers = await asyncio.gather(
                *(
                    _leader_get(self.nc, subject, first + i + 1, topic_id, self.timeout, deadline)
                    for i in range(count)
                )
            )
            for message in answers:
                if message is None or not budget.take(message):
                    return out
                out.append(message)
                if budget.spent:
                    return out
        return out

    async def offset_for_time(self, topic_id: str, timestamp_ms: int) -> int:
        """The first offset whose timestamp is >= `timestamp_ms`; the end offset if none."""
        stream = self.stream_of(topic_id)
        doc = {"start_time": codec.rfc3339(timestamp_ms)}
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                msg = await self.nc.request(
                    f"$JS.API.DIRECT.GET.{stream}", json.dumps(doc).encode(), timeout=self.timeout
                )
            except api.TRANSIENT as exc:
                await self.info(topic_id)  # TopicNotFound when it is gone
                if time.monotonic() + api.RETRY_PAUSE >= deadline:
                    raise api.unavailable(topic_id, exc) from None
                await asyncio.sleep(api.RETRY_PAUSE)
                continue
            if status(msg) is None:
                return int(msg.headers[codec.SEQUENCE]) - 1
            return _extent(await self.info(topic_id))[1]


async def _leader_get(
    nc: Any, subject: str, sequence: int, topic_id: str, timeout: float, deadline: float
) -> Message | None:
    try:
        answer = await api.call(nc, subject, {"seq": sequence}, topic_id, timeout, deadline)
    except api.ApiError as exc:
        if exc.code == 404:
            return None
        raise
    found = answer["message"]
    headers = _headers(found.get("hdrs"))
    value = base64.b64decode(found.get("data") or "")
    return codec.message(headers, value, found["seq"], codec.timestamp_ms(found["time"]))


def _headers(encoded: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if encoded:
        for line in base64.b64decode(encoded).split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep:
                out[key.strip().decode("ascii", "replace")] = value.strip().decode()
    return out


def _extent(info: dict[str, Any]) -> tuple[int, int]:
    state = info["state"]
    first, last = state["first_seq"], state["last_seq"]
    return (first - 1 if first else last), last


def _out_of_range(topic_id: str, offset: int, info: dict[str, Any]) -> OffsetOutOfRange:
    start, end = _extent(info)
    return OffsetOutOfRange(topic_id, offset, start, end)


class _Budget:
    """`max_bytes` as `Store.read` counts it: values and keys, the first message always."""

    __slots__ = ("left", "spent", "taken")

    def __init__(self, max_bytes: int | None):
        self.left = max_bytes
        self.spent = False
        self.taken = 0

    def take(self, m: Message) -> bool:
        if self.left is None:
            return True
        size = len(m.value) + len(m.key or b"")
        if self.taken and size > self.left:
            self.spent = True
            return False
        self.taken += 1
        self.left -= size
        if self.left <= 0:
            self.spent = True
        return True
