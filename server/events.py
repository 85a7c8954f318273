"""GET /topics/{topic}/events: a topic as a Server-Sent Events stream.

Each message is one event whose `id` is its offset and whose `data` is the Msg JSON. A
reconnecting browser sends `Last-Event-ID` and resumes right after it. Idle streams get a
comment every `sse_keepalive_seconds` so proxies keep them open.

Memory per stream is bounded: the loop sends at most `sse_chunk_bytes` of encoded events at
a time (one larger message goes alone), then awaits the socket write, which (through
aiohttp's flow control) does not return until the kernel has taken the bytes. A reader that
never reads holds about three chunks (the chunk, the transport's copy of what the kernel did
not take, aiohttp's chunked framing of it) and its socket's kernel buffer; a slow reader
slows only its own stream; one that reads nothing for `sse_send_timeout_seconds` is
disconnected. At most `sse_read_threads` streams read the log at once, so many streams
catching up from offset 0 queue among themselves and leave the storage pool to the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from logstore import LogstoreError, Message, OffsetOutOfRange, Store
from logstore.wire import message_json

from . import codec, params
from .auth import require
from .errors import from_logstore, invalid
from .keys import GRANT
from .limits import encoded_within
from .state import STATE, ServerState

log = logging.getLogger("logstore_server.events")

_CHUNK_MESSAGES = 1000
_OFFSET = re.compile(r"[0-9]{1,19}")


async def events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    store = state.store
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "subscribe", topic)
    offset = params.query_int(request, "offset")
    timestamp = params.query_int(request, "timestamp")
    if offset is not None and timestamp is not None:
        raise invalid("give offset or timestamp, not both")
    resume = _last_event_id(request)
    limits = state.limits
    with state.sse_streams.hold():
        offset = await state.run(_first_offset, store, topic, offset, timestamp, resume)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if request.method == "HEAD":  # the headers a GET would get, no stream
            return response
        send = _Sender(request, response, limits.sse_send_timeout_seconds)
        if not await send(b": stream of topic " + topic.encode() + b"\n\n"):
            return response
        try:
            await _pump(state, topic, offset, send)
        except LogstoreError as exc:
            # The status is sent already: the error becomes the stream's last event.
            error = from_logstore(exc, request)
            log.info("event stream of topic %r ends: %s", topic, error.message)
            doc = {"error": error.code, "message": error.message}
            await send(b"event: error\ndata: " + codec.dumps(doc) + b"\n\n")
        return response


async def _pump(state: ServerState, topic: str, offset: int, send: _Sender) -> None:
    """Send events from `offset` until shutdown or the client is gone or too slow."""
    store, limits = state.store, state.limits
    while not state.shutting_down:
        async with state.sse_reads:
            data, next_offset, count, nbytes = await state.run(
                _chunk, store, topic, offset, limits.sse_chunk_bytes
            )
        if count:
            state.metrics.count_delivered(topic, "events", count, nbytes)
            offset = next_offset
            if not await send(data):
                return
            continue
        finished, woke = await state.unless_shutdown(
            store.wait_async(topic, offset, limits.sse_keepalive_seconds)
        )
        if finished and not woke and not await send(b": keep-alive\n\n"):
            return


def _last_event_id(request: web.Request) -> int | None:
    text = request.headers.get("Last-Event-ID")
    if text is None or not text.strip():
        return None
    if not _OFFSET.fullmatch(text.strip()):
        raise invalid(f"Last-Event-ID must be an offset, not {text!r}")
    return int(text)


def _first_offset(
    store: Store, topic: str, offset: int | None, timestamp: int | None, resume: int | None
) -> int:
    """Right after Last-Event-ID (kept within what is retained), else offset / timestamp;
    by default the end: a stream shows new messages."""
    if resume is None:
        start = "latest" if offset is None and timestamp is None else offset
        return store.resolve_start(topic, start, timestamp=timestamp)
    try:
        return store.resolve_start(topic, resume + 1)
    except OffsetOutOfRange as exc:  # retention went past it, or a topic started again
        return exc.start_offset if resume + 1 < exc.start_offset else exc.end_offset


def _chunk(store: Store, topic: str, offset: int, max_bytes: int) -> tuple[bytes, int, int, int]:
    """The next events as bytes (at most `max_bytes` but always one), the offset after
    them, their count and value bytes."""
    try:
        messages = store.read(topic, offset, _CHUNK_MESSAGES, max_bytes)
    except OffsetOutOfRange as exc:
        if offset >= exc.start_offset:
            raise
        # Retention removed messages the stream had not sent yet: go on from the oldest.
        offset = exc.start_offset
        messages = store.read(topic, offset, _CHUNK_MESSAGES, max_bytes)
    if not messages:
        return b"", offset, 0, 0
    events = encoded_within(messages, max_bytes, _event)
    del messages[len(events) :]
    nbytes = sum(len(m.value) for m in messages)
    return b"".join(events), messages[-1].offset + 1, len(messages), nbytes


def _event(m: Message) -> bytes:
    return f"id: {m.offset}\ndata: {message_json(m)}\n\n".encode()


class _Sender:
    """Writes to the stream; False when the client is gone or reads nothing for too long."""

    def __init__(self, request: web.Request, response: web.StreamResponse, timeout: float):
        self._request = request
        self._response = response
        self._timeout = timeout

    async def __call__(self, data: bytes) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._response.write(data)
        except ConnectionError:
            return False
        except TimeoutError:
            # Drop the connection and what the kernel still holds for it; a graceful close
            # would wait for this very client to read.
            if self._request.transport is not None:
                self._request.transport.abort()
            return False
        return True
