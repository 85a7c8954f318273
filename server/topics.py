"""Handlers for topics, publish and replay (long poll)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from logstore import (
    DEFAULT_SEGMENT_BYTES,
    MAX_IDEMPOTENCY_KEY,
    EncodedBatch,
    Message,
    Record,
    Replayed,
    Store,
    TopicExists,
    binary,
    frames,
)
from logstore.wire import message_json

from . import codec, params
from .auth import require
from .codec import json_response
from .errors import invalid
from .keys import GRANT, READ_OFFSET
from .limits import PageBudget, encoded_within
from .state import STATE, ServerState

_TOPIC_FIELDS = {"name", "retention_ms", "retention_bytes", "segment_bytes"}
DEFAULT_READ_MESSAGES = 100


async def list_topics(request: web.Request) -> web.Response:
    state, grant = request.app[STATE], request[GRANT]
    topics = await state.run(state.store.topics)
    visible = [dataclasses.asdict(t) for t in topics if grant.sees(t.id)]
    return json_response({"topics": visible})


async def create_topic(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "admin", topic)
    doc = await _small_json(request, state)
    params.only_fields(doc, _TOPIC_FIELDS)
    name = params.text_field(doc, "name")
    segment_bytes = params.optional_int(doc, "segment_bytes", minimum=1)
    create = functools.partial(
        state.store.create_topic,
        topic,
        name=name,
        retention_ms=params.optional_int(doc, "retention_ms", minimum=1),
        retention_bytes=params.optional_int(doc, "retention_bytes", minimum=1),
        segment_bytes=segment_bytes or DEFAULT_SEGMENT_BYTES,
    )
    try:
        info, status = await state.run(create), 201
    except TopicExists:
        # Exists: 200 when its settings are these (exist_ok), else TopicExists -> 409.
        info, status = await state.run(functools.partial(create, exist_ok=True)), 200
    return json_response(dataclasses.asdict(info), status=status)


async def get_topic(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    if not request[GRANT].sees(topic):
        require(request[GRANT], "subscribe", topic)
    info = await state.run(state.store.topic, topic)
    return json_response(dataclasses.asdict(info))


async def delete_topic(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "admin", topic)
    await state.run(state.store.delete_topic, topic)
    state.metrics.forget_topic(topic)
    state.forget_topic(topic)
    return web.Response(status=204)


async def publish(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "publish", topic)
    limits = state.limits
    body = await params.read_body(request, limits.max_body_bytes, limits.body_timeout_seconds)
    if request.content_type == binary.CONTENT_TYPE:  # one frame: checked by the store
        items, nbytes = EncodedBatch(body), len(body)
    elif request.content_type == "application/json":
        items, nbytes = codec.parse_batch(codec.loads(body), limits.max_batch_messages)
    else:
        key = params.query_text(request, "key")
        items, nbytes = [body if key is None else Record(body, key.encode())], len(body)
    # Idempotency-Key: the store answers a retry with the first write's offset (as a
    # `Replayed`) and appends nothing; the policy is `Store.write_batches`'.
    key = params.header_text(request, "Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise invalid(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    first = await state.publish(topic, items, key)
    count = frames.parse_header(items, 0).count if type(items) is EncodedBatch else len(items)
    replayed = isinstance(first, Replayed)
    if not replayed:
        state.metrics.count_published(topic, count, nbytes)
    body = b'{"first_offset":%d,"count":%d}' % (first, count)
    return web.Response(body=body, status=201, headers=_REPLAYED if replayed else _JSON)


_JSON = {"Content-Type": "application/json"}
_REPLAYED = {**_JSON, "Idempotent-Replayed": "true"}


@dataclass(slots=True)
class Page:
    """One answer of GET .../messages, encoded in the storage thread."""

    body: bytes
    count: int
    nbytes: int
    headers: Mapping[str, str] | None = None  # None: JSON


async def read_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "subscribe", topic)
    limits = state.limits
    offset = params.query_int(request, "offset")
    timestamp = params.query_int(request, "timestamp")
    if offset is not None and timestamp is not None:
        raise invalid("give offset or timestamp, not both")
    max_messages = params.query_max(request, limits.max_read_messages, DEFAULT_READ_MESSAGES)
    max_bytes = params.query_int(request, "max_bytes", minimum=1)
    wait = params.query_seconds(request, "wait", limits.max_wait_seconds)
    request[READ_OFFSET] = offset
    read = read_stored_page if params.accepts_frames(request) else read_page
    budget = PageBudget(max_bytes, limits.page_bytes)
    info = state.open_topic_info(topic) if wait > 0 and offset is not None else None
    if info is not None and offset == info.end_offset:
        page = None  # the usual long poll at the end: straight to waiting, no thread hop
    else:
        offset, page = await state.run(
            first_read, read, state.store, topic, offset, timestamp, max_messages, budget, wait > 0
        )
        state.mark_open(topic)
    if page is None:
        request[READ_OFFSET] = offset
        with state.long_polls.hold():
            await state.unless_shutdown(state.store.wait_async(topic, offset, wait))
        page = state.tail_page(read, topic, offset, max_messages, budget)
    state.metrics.count_delivered(topic, "replay", page.count, page.nbytes)
    return web.Response(body=page.body, headers=page.headers or _JSON)


def first_read(
    read: Callable[..., Page],
    store: Store,
    topic: str,
    offset: int | None,
    timestamp: int | None,
    max_messages: int,
    budget: PageBudget,
    may_wait: bool,
) -> tuple[int, Page | None]:
    """Resolve the start (416 outside the topic) and read a page, unless it is at the end
    and the client may wait."""
    offset = store.resolve_start(topic, offset, timestamp=timestamp)
    if may_wait and offset >= store.topic(topic).end_offset:
        return offset, None
    return offset, read(store, topic, offset, max_messages, budget)


def read_page(store: Store, topic: str, offset: int, max_messages: int, budget: PageBudget) -> Page:
    """A page within `budget` (but always the first message)."""
    messages = store.read(topic, offset, max_messages, budget.stored)
    encoded = encoded_within(messages, budget.encoded, _message_bytes)
    del messages[len(encoded) :]
    info = store.topic(topic)
    next_offset = messages[-1].offset + 1 if messages else offset
    body = b"".join(
        [
            b'{"messages":[',
            b",".join(encoded),
            b'],"next_offset":%d,"start_offset":%d,"end_offset":%d}'
            % (next_offset, info.start_offset, info.end_offset),
        ]
    )
    return Page(body, len(messages), sum(len(m.value) for m in messages))


def read_stored_page(
    store: Store, topic: str, offset: int, max_messages: int, budget: PageBudget
) -> Page:
    """A page in the binary form: stored frames as they lie (see `logstore.binary`).

    The server's budget counts the frames' bytes; a client's `max_bytes` counts values and
    keys, as `Store.read` does, so that read (decoding) says how many messages it allows."""
    max_bytes: int | None = budget.encoded
    if budget.requested is not None:
        max_messages = len(store.read(topic, offset, max_messages, budget.stored))
        max_bytes = None
    stored = store.read_stored(topic, offset, max_messages, max_bytes)
    info = store.topic(topic)
    headers = {
        "Content-Type": binary.CONTENT_TYPE,
        binary.NEXT_OFFSET: str(stored.next_offset),
        binary.START_OFFSET: str(info.start_offset),
        binary.END_OFFSET: str(info.end_offset),
    }
    return Page(stored.data, stored.next_offset - offset, len(stored.data), headers)


def _message_bytes(m: Message) -> bytes:
    return message_json(m).encode()


async def _small_json(request: web.Request, state: ServerState) -> dict:
    limits = state.limits
    return await params.json_object(request, limits.max_body_bytes, limits.body_timeout_seconds)
