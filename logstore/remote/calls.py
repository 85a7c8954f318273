"""Every API call of the clients, once: the requests it makes and how it reads the answers.

Each call is a *plan*: a generator that yields `Request`s and receives their `Response`s
(only successful ones: an error answer becomes the library's exception in `check` before
the plan sees it) and returns the call's result. `Client` runs plans over blocking sockets,
`AsyncClient` over asyncio; neither knows anything about a call but its plan, so the two
stay thin and cannot drift apart. Most plans make one request; `resolve_start` may make two,
and long polls longer than the server's ceiling ask again for the time left.

Names are checked here with the library's own check (the same `InvalidName`, and no round
trip for a bad one); every other argument is checked by the server, whose 400 answer becomes
`InvalidArgument`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import logstore.remote.formats as formats

from .. import wire
from ..config import check_name
from ..errors import (
    Corruption,
    Forbidden,
    InvalidArgument,
    InvalidName,
    LogstoreError,
    MessageTooLarge,
    OffsetOutOfRange,
    ServerError,
    StorageError,
    StorageFull,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicExists,
    TopicNotFound,
    Unauthorized,
)
from ..types import Delivery, Message, Record, Replayed, SubscriptionInfo, TopicInfo
from .http import Response

T = TypeVar("T")

JSON_BODY = "Content-Type: application/json\r\n"
RAW_BODY = "Content-Type: application/octet-stream\r\n"
_SUB = "subscription name"


@dataclasses.dataclass(slots=True)
class Request:
    """One HTTP request of a plan, and what the transport needs to know to send it.

    `retry`: whether it may be sent again after a failure that may have happened after the
    server got it (see `retry.py` for the rule). `wait`: the seconds a long poll may take,
    added to the client's timeout. `topic`, `subscription`, `offset`: what the request is
    about, for the exception of an error answer. `retried` is set by the transport when it
    sent the request more than once."""

    method: str
    target: str
    headers: str = ""
    body: bytes = b""
    retry: bool = True
    wait: float = 0.0
    topic: str = ""
    subscription: str = ""
    offset: int | None = None
    retried: bool = False


Plan = Generator[Request, Response, T]


def run_to_end(plan: Plan[T], response: Response) -> T:
    """Give a plan's last request its answer and return the plan's result (helper for
    transports; a plan that asks for more raises RuntimeError)."""
    try:
        plan.send(response)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the plan asked for another request")


# ---------------------------------------------------------------- topics


def create_topic(
    topic_id: str,
    name: str | None,
    retention_ms: int | None,
    retention_bytes: int | None,
    segment_bytes: int,
    exist_ok: bool,
) -> Plan[TopicInfo]:
    check_name(topic_id)
    settings = {
        "name": name,
        "retention_ms": retention_ms,
        "retention_bytes": retention_bytes,
        "segment_bytes": segment_bytes,
    }
    request = Request("PUT", _topic(topic_id), JSON_BODY, _json(settings), topic=topic_id)
    response = yield request
    # 200: it existed with these settings. After a retry that may be this very request's
    # doing (its first answer was lost), so only a first attempt's 200 means "it existed".
    if response.status == 200 and not exist_ok and not request.retried:
        raise TopicExists(topic_id)
    return topic_info(_doc(response))


def topics() -> Plan[list[TopicInfo]]:
    response = yield Request("GET", "/topics")
    return [topic_info(t) for t in _doc(response)["topics"]]


def topic(topic_id: str) -> Plan[TopicInfo]:
    response = yield Request("GET", _topic(check_name(topic_id)), topic=topic_id)
    return topic_info(_doc(response))


def delete_topic(topic_id: str) -> Plan[None]:
    yield Request("DELETE", _topic(check_name(topic_id)), topic=topic_id)


# ------------------------------------------------------------- publishing


def write(
    topic_id: str,
    value: bytes,
    key: bytes | None,
    headers: Mapping[str, str] | None,
    idempotency_key: str | None,
    binary: bool,
) -> Plan[int]:
    if key is None and not headers and not binary:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument(f"message value must be bytes, not {type(value).__name__}")
        return (yield from _publish(topic_id, RAW_BODY, bytes(value), idempotency_key))
    return (yield from write_many(topic_id, [Record(value, key, headers)], idempotency_key, binary))


def write_many(
    topic_id: str,
    messages: Iterable[bytes | Record],
    idempotency_key: str | None,
    binary: bool,
) -> Plan[int]:
    items = [_checked(m) for m in messages]
    if not items:
        raise InvalidArgument(f"a batch for topic {topic_id!r} is empty")
    if binary:
        body_type, body = formats.BINARY_BODY, formats.publish_body(items)
    else:
        body_type, body = JSON_BODY, _json({"messages": [wire.record_json(m) for m in items]})
    return (yield from _publish(topic_id, body_type, body, idempotency_key))


def write_batches(
    topic_id: str,
    batches: Sequence[Iterable[bytes | Record]],
    idempotency_keys: Sequence[str | None] | None,
    binary: bool,
) -> Plan[list[int]]:
    """One publish per batch, in order (each atomic; they are not synced together as the
    library's `write_batches` does: over HTTP the server's group commit shares fsyncs)."""
    keys = [None] * len(batches) if idempotency_keys is None else list(idempotency_keys)
    if len(keys) != len(batches):
        raise InvalidArgument(
            f"idempotency_keys has {len(keys)} entries for {len(batches)} batches"
        )
    firsts = []
    for batch, key in zip(batches, keys, strict=True):
        firsts.append((yield from write_many(topic_id, batch, key, binary)))
    return firsts


def _checked(item: object) -> bytes | Record:
    """A message of a batch, its types checked as `Store` checks them (sizes are the
    server's to check: its limit may differ)."""
    if type(item) is bytes:
        return item
    record = item if isinstance(item, Record) else Record(item)  # type: ignore[arg-type]
    if not isinstance(record.value, bytes | bytearray | memoryview):
        raise InvalidArgument(f"message value must be bytes, not {type(record.value).__name__}")
    if record.key is not None and not isinstance(record.key, bytes | bytearray | memoryview):
        raise InvalidArgument(f"message key must be bytes or None, not {type(record.key)!r}")
    headers = record.headers
    if headers and not (
        isinstance(headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise InvalidArgument("message headers must map str to str")
    if headers:
        try:
            "".join(f"{k}{v}" for k, v in headers.items()).encode()
        except UnicodeEncodeError:
            raise InvalidArgument("message headers must be valid Unicode text") from None
    if type(item) is not Record or type(record.value) is not bytes:
        key = None if record.key is None else bytes(record.key)
        return Record(bytes(record.value), key, dict(headers) if headers else None)
    return record


def _publish(topic_id: str, body_type: str, body: bytes, key: str | None) -> Plan[int]:
    """POST a batch with an Idempotency-Key (the caller's, or a fresh random one): sent
    again after a lost answer, the server answers the first result and appends nothing."""
    check_name(topic_id)
    key = uuid.uuid4().hex if key is None else _idempotency_key(key)
    headers = f"{body_type}Idempotency-Key: {key}\r\n"
    response = yield Request("POST", _topic(topic_id, "/messages"), headers, body, topic=topic_id)
    first = _doc(response)["first_offset"]
    return Replayed(first) if response.headers.get("idempotent-replayed") == "true" else first


# ---------------------------------------------------------------- reading


def read(
    topic_id: str,
    offset: int,
    max_messages: int,
    max_bytes: int | None,
    wait: float,
    binary: bool,
    *,
    timestamp: int | None = None,
) -> Plan[list[Message]]:
    """GET messages; a long poll the server cut short (its `wait` ceiling) asks again.
    A read from a time first asks where that time starts (frames begin where the stored
    frame does, so the client must know the offset to cut them at)."""
    check_name(topic_id)
    if type(offset) is int and offset < 0:  # no such offset: the server takes none below 0
        info = yield from topic(topic_id)
        raise OffsetOutOfRange(topic_id, offset, info.start_offset, info.end_offset)
    if timestamp is not None:
        offset = yield from offset_for_time(topic_id, timestamp)
    deadline = time.monotonic() + wait if wait else 0.0
    while True:
        query = _query(offset=offset, max=max_messages, max_bytes=max_bytes, wait=wait or None)
        response = yield Request(
            "GET",
            _topic(topic_id, "/messages" + query),
            formats.BINARY_ACCEPT if binary else "",
            wait=wait,
            topic=topic_id,
            offset=offset,
        )
        page = formats.replay_page(response, offset, max_messages, max_bytes)
        wait = deadline - time.monotonic() if wait else 0.0
        if page.messages or wait <= 0.01:
            return page.messages


def wait(topic_id: str, offset: int, timeout: float, binary: bool) -> Plan[bool]:
    """True once a message at `offset` is readable, False after `timeout` seconds."""
    messages = yield from read(topic_id, offset, 1, 1, timeout, binary)
    return bool(messages)


def offset_for_time(topic_id: str, timestamp_ms: int | datetime) -> Plan[int]:
    """The server resolves `timestamp=`; every stored timestamp is >= 0, so an earlier time
    means the same as 0 (the server takes no negative numbers)."""
    ms = max(_milliseconds(timestamp_ms), 0)
    check_name(topic_id)
    query = _query(timestamp=ms, max=1, max_bytes=1)
    response = yield Request("GET", _topic(topic_id, "/messages" + query), topic=topic_id)
    doc = _doc(response)
    return doc["messages"][0]["offset"] if doc["messages"] else doc["next_offset"]


def resolve_start(
    topic_id: str, start: str | int | datetime | None, timestamp: int | None
) -> Plan[int]:
    """Where a read starts, as the server resolves it (`Store.resolve_start`'s rules)."""
    check_name(topic_id)
    if timestamp is not None:
        if start is not None:
            raise InvalidArgument("give a start or a timestamp, not both")
        return (yield from offset_for_time(topic_id, timestamp))
    if isinstance(start, datetime):
        return (yield from offset_for_time(topic_id, start))
    if start == "latest":
        return (yield from topic(topic_id)).end_offset
    if start not in (None, "earliest") and (isinstance(start, bool) or not isinstance(start, int)):
        raise InvalidArgument(
            f"start must be 'earliest', 'latest', an int offset or a datetime, not {start!r}"
        )
    offset = None if start in (None, "earliest") else start
    query = _query(offset=offset, max=1, max_bytes=1)
    response = yield Request(
        "GET", _topic(topic_id, "/messages" + query), topic=topic_id, offset=offset
    )
    doc = _doc(response)
    return doc["messages"][0]["offset"] if doc["messages"] else doc["next_offset"]


# ---------------------------------------------------------- subscriptions


def subscribe(
    topic_id: str,
    name: str,
    start: str | int | datetime,
    ack_wait: float,
    max_deliveries: int | None,
    dead_letter_topic: str | None,
    start_time: int | datetime | None,
) -> Plan[SubscriptionInfo]:
    if start_time is not None:
        if start != "earliest":
            raise InvalidArgument("give start or start_time, not both")
        start = start_time if isinstance(start_time, datetime) else _from_ms(start_time)
    if isinstance(start, datetime):
        moment = start if start.tzinfo else start.replace(tzinfo=UTC)
        start = moment.isoformat()
    settings = {
        "start": start,
        "ack_wait": ack_wait,
        "max_deliveries": max_deliveries,
        "dead_letter_topic": dead_letter_topic,
    }
    at = start if isinstance(start, int) else None
    response = yield _sub_request("PUT", topic_id, name, "", _json(settings), offset=at)
    return subscription_info(_doc(response))


def unsubscribe(topic_id: str, name: str) -> Plan[None]:
    yield _sub_request("DELETE", topic_id, name)


def subscriptions(topic_id: str) -> Plan[list[SubscriptionInfo]]:
    check_name(topic_id)
    response = yield Request("GET", _topic(topic_id, "/subscriptions"), topic=topic_id)
    return [subscription_info(s) for s in _doc(response)["subscriptions"]]


def subscription(topic_id: str, name: str) -> Plan[SubscriptionInfo]:
    response = yield _sub_request("GET", topic_id, name)
    return subscription_info(_doc(response))


def poll(
    topic_id: str,
    name: str,
    max_messages: int,
    wait: float,
    max_bytes: int | None,
    binary: bool,
) -> Plan[list[Delivery]]:
    """POST poll, never sent twice (see `retry.py`); a long poll the server cut short at its
    `wait` ceiling asks again for the time left."""
    deadline = time.monotonic() + wait if wait else 0.0
    while True:
        request = _sub_request("POST", topic_id, name, "/poll", retry=False)
        request.target += _query(max=max_messages, wait=wait or None, max_bytes=max_bytes)
        request.wait = wait
        if binary:
            request.headers += formats.BINARY_ACCEPT
        deliveries = formats.poll_answer((yield request))
        wait = deadline - time.monotonic() if wait else 0.0
        if deliveries or wait <= 0.01:
            return deliveries


def ack(topic_id: str, name: str, items: Iterable[int | str]) -> Plan[SubscriptionInfo]:
    return _settle("/ack", topic_id, name, items)


def nack(topic_id: str, name: str, items: Iterable[int | str]) -> Plan[SubscriptionInfo]:
    return _settle("/nack", topic_id, name, items)


def commit(topic_id: str, name: str, up_to: int) -> Plan[SubscriptionInfo]:
    if isinstance(up_to, bool) or not isinstance(up_to, int):
        raise InvalidArgument(f"up_to must be an int offset, not {up_to!r}")
    response = yield _sub_request("POST", topic_id, name, "/ack", _json({"up_to": up_to}))
    return subscription_info(_doc(response))


def seek(
    topic_id: str,
    name: str,
    offset: int | None,
    timestamp: int | datetime | None,
    position: str | None,
) -> Plan[SubscriptionInfo]:
    if isinstance(timestamp, datetime) or (isinstance(timestamp, int) and timestamp < 0):
        timestamp = max(_milliseconds(timestamp), 0)
    given = {"offset": offset, "timestamp": timestamp, "position": position}
    body = {k: v for k, v in given.items() if v is not None}
    if len(body) != 1:
        raise InvalidArgument("seek needs exactly one of offset, timestamp or position")
    response = yield _sub_request("POST", topic_id, name, "/seek", _json(body), offset=offset)
    return subscription_info(_doc(response))


def _settle(
    action: str, topic_id: str, name: str, items: Iterable[int | str]
) -> Plan[SubscriptionInfo]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise InvalidArgument(
            f"{action[1:]} takes a list of offsets or lease tokens, not {items!r}"
        )
    offsets: list[int] = []
    leases: list[str] = []
    for item in items:
        (leases if isinstance(item, str) else offsets).append(item)
    body = _json({"offsets": offsets, "leases": leases})
    response = yield _sub_request("POST", topic_id, name, action, body)
    return subscription_info(_doc(response))


def _sub_request(
    method: str,
    topic_id: str,
    name: str,
    tail: str = "",
    body: bytes = b"",
    *,
    retry: bool = True,
    offset: int | None = None,
) -> Request:
    check_name(topic_id)
    check_name(name, _SUB)
    target = f"/topics/{topic_id}/subscriptions/{name}{tail}"
    headers = JSON_BODY if body else ""
    return Request(
        method, target, headers, body, retry=retry, topic=topic_id, subscription=name, offset=offset
    )


# ------------------------------------------------------------- answers


_TOPIC_FIELDS = tuple(f.name for f in dataclasses.fields(TopicInfo))
_SUBSCRIPTION_FIELDS = tuple(f.name for f in dataclasses.fields(SubscriptionInfo))


def topic_info(doc: Mapping[str, Any]) -> TopicInfo:
    return TopicInfo(*[doc[f] for f in _TOPIC_FIELDS])


def subscription_info(doc: Mapping[str, Any]) -> SubscriptionInfo:
    return SubscriptionInfo(*[doc[f] for f in _SUBSCRIPTION_FIELDS])


def check(request: Request, response: Response, url: str) -> Response:
    """The response when it is a success; the library's exception for an error answer.

    A retried DELETE answered 404 did its work on an earlier attempt whose answer was lost:
    that is success too."""
    status = response.status
    if status < 400:
        return response
    if status == 404 and request.retried and request.method == "DELETE":
        return Response(204, {}, b"", response.keep_alive)
    raise error(request, response, url)


_TOO_LARGE = re.compile(r"(\d+) bytes.*?limit of (\d+)")


def error(request: Request, response: Response, url: str) -> LogstoreError:
    """The library's exception for an error answer; its text is the server's code and
    message (they say what to do), its attributes what the library's would carry."""
    status = response.status
    try:
        doc = json.loads(response.body)
        code, message = doc["error"], doc["message"]
    except (ValueError, KeyError, TypeError):
        text = response.body[:200].decode(errors="replace").strip()
        code, message, doc = "", f"HTTP {status} from {url}: {text or 'no error body'}", {}
    topic, sub = request.topic, request.subscription
    exc: LogstoreError
    match code:
        case "invalid_name":
            exc = InvalidName(message)
        case "invalid_request":
            exc = InvalidArgument(message)
        case "topic_not_found":
            exc = TopicNotFound(_named_topic(message, topic))
        case "subscription_not_found":
            exc = SubscriptionNotFound(topic, sub)
        case "topic_exists":
            exc = TopicExists(topic)
        case "subscription_exists":
            exc = SubscriptionExists(topic, sub)
        case "offset_out_of_range":
            named = re.match(r"offset (-?\d+) ", message)
            offset = request.offset if named is None else int(named[1])
            offset = -1 if offset is None else offset
            exc = OffsetOutOfRange(topic, offset, doc["start_offset"], doc["end_offset"])
        case "payload_too_large":
            sizes = _TOO_LARGE.search(message)
            size, limit = (int(sizes[1]), int(sizes[2])) if sizes else (-1, -1)
            exc = MessageTooLarge(topic, size, limit)
        case "storage_full":
            exc = StorageFull(topic, message)
        case "storage_unavailable":
            exc = StorageError(topic, message)
        case "corrupt_data":
            where = -1 if request.offset is None else request.offset
            exc = Corruption(f"topic {topic!r} at {url}", where, message)
        case _ if status == 401:
            exc = Unauthorized(status, code, message)
        case _ if status == 403:
            exc = Forbidden(status, code, message)
        case _:
            return ServerError(status, code, message)
    exc.args = (f"{code}: {message}",)
    return exc


def _named_topic(message: str, fallback: str) -> str:
    """The topic a 404 names (a subscription's dead-letter topic may be another)."""
    named = re.match(r"topic '([^']*)'", message)
    return named[1] if named else fallback


def _doc(response: Response) -> Any:
    return json.loads(response.body)


# ------------------------------------------------------------- requests


def _topic(topic_id: str, tail: str = "") -> str:
    return f"/topics/{topic_id}{tail}"


def _query(**params: object) -> str:
    """`?a=1&b=2` of the parameters that are not None (all numbers: nothing to escape)."""
    given = [f"{k}={v}" for k, v in params.items() if v is not None]
    return "?" + "&".join(given) if given else ""


def _json(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _idempotency_key(key: object) -> str:
    if not isinstance(key, str) or not key or not key.isprintable() or not key.isascii():
        raise InvalidArgument(
            f"an idempotency key must be printable ASCII text of 1 to 256 characters, "
            f"not {key!r:.80}"
        )
    return key


def _milliseconds(moment: int | datetime) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(moment, bool) or not isinstance(moment, int):
        raise InvalidArgument(f"timestamp must be int milliseconds, not {moment!r}")
    return moment


def _from_ms(ms: int) -> datetime:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise InvalidArgument(f"start_time must be int milliseconds or a datetime, not {ms!r}")
    return datetime.fromtimestamp(ms / 1000, UTC)
