"""Handlers for subscriptions: manage, poll (leased long poll), ack, nack, seek."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from logstore import Store, SubscriptionInfo, SubscriptionNotFound, binary
from logstore.wire import delivery_json

from . import params
from .auth import require
from .codec import json_response
from .errors import invalid
from .keys import GRANT
from .limits import JSON_EXPANSION
from .state import STATE, ServerState

_SUBSCRIBE_FIELDS = {"start", "ack_wait", "max_deliveries", "dead_letter_topic"}
DEFAULT_POLL_MESSAGES = 100


def _names(request: web.Request) -> tuple[ServerState, str, str]:
    topic = params.name(request, "topic", "topic id")
    sub = params.name(request, "sub", "subscription name")
    require(request[GRANT], "subscribe", topic)
    return request.app[STATE], topic, sub


async def _body(request: web.Request, state: ServerState) -> dict:
    limits = state.limits
    return await params.json_object(request, limits.max_body_bytes, limits.body_timeout_seconds)


def _info(info: object, status: int = 200) -> web.Response:
    return json_response(dataclasses.asdict(info), status=status)


async def list_subscriptions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    topic = params.name(request, "topic", "topic id")
    require(request[GRANT], "subscribe", topic)
    infos = await state.run(state.store.subscriptions, topic)
    return json_response({"subscriptions": [dataclasses.asdict(i) for i in infos]})


async def subscribe(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    doc = await _body(request, state)
    params.only_fields(doc, _SUBSCRIBE_FIELDS)
    ack_wait = doc.get("ack_wait", 30.0)
    if type(ack_wait) not in (int, float) or not (math.isfinite(ack_wait) and ack_wait > 0):
        raise invalid(f"ack_wait must be a number of seconds > 0, not {ack_wait!r}")
    dead_letter_topic = params.optional_name(doc, "dead_letter_topic")
    if dead_letter_topic is not None:
        require(request[GRANT], "publish", dead_letter_topic)
    create = functools.partial(
        state.store.subscribe,
        topic,
        sub,
        start=_start(doc.get("start", "earliest")),
        ack_wait=float(ack_wait),
        max_deliveries=params.optional_int(doc, "max_deliveries", minimum=1),
        dead_letter_topic=dead_letter_topic,
    )
    info, created = await state.run(_subscribe, state.store, topic, sub, create)
    return _info(info, 201 if created else 200)


def _subscribe(store: Store, topic: str, sub: str, create: functools.partial) -> tuple:
    """(info, created): an existing subscription with these settings answers 200, not 201."""
    try:
        store.subscription(topic, sub)
    except SubscriptionNotFound:
        return create(), True
    return create(), False


def _start(value: object) -> str | int | datetime:
    if value in ("earliest", "latest") or (type(value) is int and value >= 0):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise invalid(
        'start must be "earliest", "latest", an offset (integer >= 0) or an ISO 8601 time, '
        f"not {value!r}"
    )


async def get_subscription(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    return _info(await state.run(state.store.subscription, topic, sub))


async def unsubscribe(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    await state.run(state.store.unsubscribe, topic, sub)
    return web.Response(status=204)


async def poll(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    limits = state.limits
    max_messages = params.query_max(request, limits.max_read_messages, DEFAULT_POLL_MESSAGES)
    wait = params.query_seconds(request, "wait", limits.max_wait_seconds)
    store = state.store
    # Leased messages cannot be cut after encoding: lease what fits in the worst case.
    max_bytes = max(limits.page_bytes // JSON_EXPANSION, 1)
    encode, content_type = _encoded, "application/json"
    if params.accepts_frames(request):  # frames hold a value as it is: no expansion
        encode, content_type, max_bytes = _encoded_frames, binary.CONTENT_TYPE, limits.page_bytes
    requested = params.query_int(request, "max_bytes", minimum=1)  # lowers the page, never raises
    if requested is not None:
        max_bytes = min(max_bytes, requested)
    if wait > 0:
        with state.long_polls.hold():
            _, deliveries = await state.unless_shutdown(
                store.poll_async(topic, sub, max_messages, wait, max_bytes)
            )
        deliveries = deliveries or []
        if len(deliveries) <= _ENCODE_ON_LOOP:
            body, count, nbytes = encode(deliveries)
        else:  # a big answer is encoded off the event loop, like replay pages
            body, count, nbytes = await state.run(encode, deliveries)
    else:
        body, count, nbytes = await state.run(
            _poll_now, encode, store, topic, sub, max_messages, max_bytes
        )
    state.metrics.count_delivered(topic, "poll", count, nbytes)
    return web.Response(body=body, content_type=content_type)


_ENCODE_ON_LOOP = 16
"""Deliveries a long poll encodes on the event loop; more go to the thread pool."""


def _poll_now(
    encode: Callable[[list], tuple[bytes, int, int]],
    store: Store,
    topic: str,
    sub: str,
    max_messages: int,
    max_bytes: int,
) -> tuple[bytes, int, int]:
    return encode(store.poll(topic, sub, max_messages, max_bytes=max_bytes))


def _encoded(deliveries: list) -> tuple[bytes, int, int]:
    """(JSON body, message count, value bytes) of a poll's answer."""
    body = '{"messages":[' + ",".join([delivery_json(d) for d in deliveries]) + "]}"
    return body.encode(), len(deliveries), sum(len(d.value) for d in deliveries)


def _encoded_frames(deliveries: list) -> tuple[bytes, int, int]:
    """`_encoded` in the binary form (see `logstore.binary`)."""
    body = binary.encode_poll(deliveries)
    return body, len(deliveries), sum(len(d.value) for d in deliveries)


async def ack(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    doc = await _body(request, state)
    params.only_fields(doc, {"offsets", "leases", "up_to"})
    params.refuse_nulls(doc)
    items = params.settle_items(doc, state.limits.max_read_messages)
    up_to = params.optional_int(doc, "up_to", minimum=0)
    if items is None and up_to is None:
        raise invalid('send {"offsets": [...]}, {"leases": [...]} and/or {"up_to": N}')
    return _info(await state.run(_ack, state.store, topic, sub, items, up_to))


def _ack(
    store: Store, topic: str, sub: str, items: list[int | str] | None, up_to: int | None
) -> SubscriptionInfo | None:
    """Acknowledge `items` (offsets and lease tokens), then everything below `up_to`."""
    info = store.ack(topic, sub, items) if items is not None else None
    return store.commit(topic, sub, up_to) if up_to is not None else info


async def nack(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    doc = await _body(request, state)
    params.only_fields(doc, {"offsets", "leases"})
    params.refuse_nulls(doc)
    items = params.settle_items(doc, state.limits.max_read_messages)
    if items is None:
        raise invalid('send {"offsets": [...]} and/or {"leases": [...]}')
    return _info(await state.run(state.store.nack, topic, sub, items))


async def seek(request: web.Request) -> web.Response:
    state, topic, sub = _names(request)
    doc = await _body(request, state)
    params.only_fields(doc, {"offset", "timestamp", "position"})
    params.refuse_nulls(doc)
    if len(doc) != 1:
        raise invalid('send exactly one of {"offset": N}, {"timestamp": ms}, {"position": ...}')
    position = doc.get("position")
    if "position" in doc and position not in ("earliest", "latest"):
        raise invalid(f'position must be "earliest" or "latest", not {position!r}')
    seek_to = functools.partial(
        state.store.seek,
        topic,
        sub,
        params.optional_int(doc, "offset", minimum=0),
        timestamp=params.optional_int(doc, "timestamp", minimum=0),
        position=position,
    )
    return _info(await state.run(seek_to))
