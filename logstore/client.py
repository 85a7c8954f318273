"""`Client`: the HTTP API of `logstore serve` (SPEC §6) as `Store`'s methods, synchronously.

    from logstore import Record
    from logstore.client import Client

    with Client("http://127.0.0.1:8080", token=None) as client:
        client.create_topic("orders", exist_ok=True)
        first = client.write_many("orders", [b"a", Record(b"b", key=b"k")])
        for message in client.read("orders", first, wait=5.0):
            print(message.offset, message.value)
        client.subscribe("orders", "billing")
        for d in client.poll("orders", "billing", wait=5.0):
            client.ack("orders", "billing", [d.lease])

The methods are named like `Store`'s, take the same arguments and give back the same types
(`TopicInfo`, `Message`, `Delivery`, `SubscriptionInfo`), so code written for one runs on the
other; the CLI and examples/ rely on that. Differences: `read` without an offset starts at the
oldest retained message (as the server does), and `read` takes `timestamp=` too.

Errors are the library's exceptions, made from the server's `{"error": code, "message": ...}`
answer with the attributes the library gives them (`OffsetOutOfRange` with its bounds, ...);
their text is the code and the server's message. A code the library has no exception for is a
`ServerError` (with `status` and `code`); no answer at all is `ServerUnreachable`.

One kept-alive HTTP/1.1 connection (`http.client`, the standard library only), opened again
when the server has closed it while idle: use one client per thread. A request waits
`timeout` seconds for the server, plus the `wait` of a long poll.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import select
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from . import (
    DEFAULT_SEGMENT_BYTES,
    Delivery,
    InvalidArgument,
    InvalidName,
    LogstoreError,
    Message,
    OffsetOutOfRange,
    Record,
    StorageFull,
    SubscriptionExists,
    SubscriptionInfo,
    SubscriptionNotFound,
    TopicExists,
    TopicInfo,
    TopicNotFound,
    wire,
)

DEFAULT_URL = "http://127.0.0.1:8080"
"""Where `logstore serve` listens by default."""

T = TypeVar("T")


class ServerError(LogstoreError):
    """An error answer the library has no exception for (401, 403, 503 overloaded, ...)."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        super().__init__(f"{code}: {message}" if code else message)


class ServerUnreachable(LogstoreError, ConnectionError):
    """No answer: the connection was refused, dropped, or the server took too long."""

    def __init__(self, url: str, reason: object):
        self.url = url
        super().__init__(f"cannot reach the server at {url}: {reason}")


class Client:
    """A logstore server at `url` (http:// or https://, optionally with a path prefix)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"the server URL must be http(s)://HOST[:PORT], not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._prefix = parts.path.rstrip("/")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._conn = kind(parts.hostname, parts.port, timeout=timeout)
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self._conn.close()

    # --------------------------------------------------------------- topics

    def create_topic(
        self,
        topic_id: str,
        name: str | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """Create a topic. With `exist_ok`, an existing topic with the same settings is fine."""
        settings = {
            "name": name,
            "retention_ms": retention_ms,
            "retention_bytes": retention_bytes,
            "segment_bytes": segment_bytes,
        }
        status, doc = self._exchange("PUT", _path(topic_id), settings)
        if status == 200 and not exist_ok:  # 200: it exists already, with these settings
            raise TopicExists(topic_id)
        return _info(TopicInfo, doc)

    def topics(self) -> list[TopicInfo]:
        return [_info(TopicInfo, t) for t in self._call("GET", "/topics")["topics"]]

    def topic(self, topic_id: str) -> TopicInfo:
        return _info(TopicInfo, self._call("GET", _path(topic_id)))

    def delete_topic(self, topic_id: str) -> None:
        """Delete a topic and its subscriptions; a re-created topic starts at offset 0."""
        self._call("DELETE", _path(topic_id))

    # ------------------------------------------------------ writing, reading

    def write(
        self,
        topic_id: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Append one message; its offset. A bare value goes as the raw body (no JSON)."""
        if key is None and not headers:
            return self._call("POST", _path(topic_id, "messages"), bytes(value))["first_offset"]
        return self.write_many(topic_id, [Record(value, key, headers)])

    def write_many(self, topic_id: str, messages: Iterable[bytes | Record]) -> int:
        """Append a batch atomically (all or nothing); the first offset."""
        batch = {"messages": [wire.record_json(m) for m in messages]}
        return self._call("POST", _path(topic_id, "messages"), batch)["first_offset"]

    def read(
        self,
        topic_id: str,
        offset: int | None = None,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
        *,
        timestamp: int | None = None,
    ) -> list[Message]:
        """Messages from `offset` (default: the oldest retained) or from the first at or after
        `timestamp` (ms); with `wait`, the server holds the answer up to that long for one."""
        query = {
            "offset": offset,
            "timestamp": timestamp,
            "max": max_messages,
            "max_bytes": max_bytes,
            "wait": wait or None,
        }
        page = self._call("GET", _path(topic_id, "messages"), query=query, wait=wait, at=offset)
        return [wire.message_from_json(m) for m in page["messages"]]

    def resolve_start(
        self,
        topic_id: str,
        start: str | int | datetime | None = None,
        *,
        timestamp: int | None = None,
    ) -> int:
        """Where a read starts, as the server resolves it: `start` is None or "earliest" (the
        oldest retained), "latest" (the end), an offset (OffsetOutOfRange outside the topic)
        or a datetime; `timestamp` (ms) means the first offset at or after it."""
        if isinstance(start, datetime):
            start, timestamp = None, _ms(start)
        if start == "latest":
            return self.topic(topic_id).end_offset
        offset = None if start == "earliest" else start
        query = {"offset": offset, "timestamp": timestamp, "max": 1}
        page = self._call("GET", _path(topic_id, "messages"), query=query, at=offset)
        return page["messages"][0]["offset"] if page["messages"] else page["next_offset"]

    # -------------------------------------------------------- subscriptions

    def subscribe(
        self,
        topic_id: str,
        name: str,
        start: str | int | datetime = "earliest",
        ack_wait: float = 30.0,
        max_deliveries: int | None = None,
        dead_letter_topic: str | None = None,
    ) -> SubscriptionInfo:
        """Create a durable subscription (a no-op if it exists with the same settings)."""
        settings = {
            "start": start.isoformat() if isinstance(start, datetime) else start,
            "ack_wait": ack_wait,
            "max_deliveries": max_deliveries,
            "dead_letter_topic": dead_letter_topic,
        }
        at = start if isinstance(start, int) else None
        return _info(
            SubscriptionInfo, self._call("PUT", _path(topic_id, sub=name), settings, at=at)
        )

    def unsubscribe(self, topic_id: str, name: str) -> None:
        self._call("DELETE", _path(topic_id, sub=name))

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        doc = self._call("GET", _path(topic_id, "subscriptions"))
        return [_info(SubscriptionInfo, s) for s in doc["subscriptions"]]

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        return _info(SubscriptionInfo, self._call("GET", _path(topic_id, sub=name)))

    def poll(
        self, topic_id: str, name: str, max_messages: int = 100, wait: float = 0.0
    ) -> list[Delivery]:
        """Lease the next deliverable messages to this caller for the subscription's ack_wait."""
        query = {"max": max_messages, "wait": wait or None}
        doc = self._call("POST", _path(topic_id, "poll", sub=name), query=query, wait=wait)
        return [wire.delivery_from_json(d) for d in doc["messages"]]

    def ack(self, topic_id: str, name: str, items: Iterable[int | str]) -> SubscriptionInfo:
        """Acknowledge offsets and/or lease tokens (`Delivery.lease`)."""
        return self._settle("ack", topic_id, name, items)

    def nack(self, topic_id: str, name: str, items: Iterable[int | str]) -> SubscriptionInfo:
        """End these leases (offsets and/or lease tokens) now: deliver the messages again."""
        return self._settle("nack", topic_id, name, items)

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to`."""
        doc = self._call("POST", _path(topic_id, "ack", sub=name), {"up_to": up_to})
        return _info(SubscriptionInfo, doc)

    def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        """Move the subscription to an offset, a time, or "earliest"/"latest" (replay)."""
        if isinstance(timestamp, datetime):
            timestamp = _ms(timestamp)
        body = {"offset": offset, "timestamp": timestamp, "position": position}
        body = {k: v for k, v in body.items() if v is not None}
        doc = self._call("POST", _path(topic_id, "seek", sub=name), body, at=offset)
        return _info(SubscriptionInfo, doc)

    def _settle(
        self, action: str, topic_id: str, name: str, items: Iterable[int | str]
    ) -> SubscriptionInfo:
        offsets: list[int] = []
        leases: list[str] = []
        for item in items:
            (leases if isinstance(item, str) else offsets).append(item)
        body = {"offsets": offsets, "leases": leases}
        return _info(SubscriptionInfo, self._call("POST", _path(topic_id, action, sub=name), body))

    # ------------------------------------------------------------------ HTTP

    def _call(self, method: str, path: str, body: object = None, **options: Any) -> Any:
        """The JSON answer of `_exchange` (None when empty)."""
        return self._exchange(method, path, body, **options)[1]

    def _exchange(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        query: Mapping[str, object] | None = None,
        wait: float = 0.0,
        at: int | None = None,
    ) -> tuple[int, Any]:
        """The status and JSON answer (None when empty) of a request; the library's exception
        for an error answer. `wait`: the long poll's, added to the timeout; `at`: the offset
        asked for, for an OffsetOutOfRange."""
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        headers = dict(self._headers)
        data = None
        if isinstance(body, bytes):
            data, headers["Content-Type"] = body, "application/octet-stream"
        elif body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status, raw = self._send(method, target, data, headers, self.timeout + wait)
        if status >= 400:
            raise _error(status, raw, path, at)
        return status, json.loads(raw) if raw else None

    def _send(
        self, method: str, target: str, data: bytes | None, headers: dict, timeout: float
    ) -> tuple[int, bytes]:
        conn = self._conn
        if conn.sock is not None and _closed_by_peer(conn.sock):
            conn.close()  # the server closed it while idle (keep-alive timeout, restart)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except BaseException as exc:
            conn.close()  # half a request or answer is on it (or Ctrl-C): never reuse it
            if isinstance(exc, OSError | http.client.HTTPException):
                raise ServerUnreachable(self.url, exc) from exc
            raise


def _path(topic_id: str, tail: str = "", *, sub: str | None = None) -> str:
    """`/topics/{topic}[/subscriptions/{sub}][/{tail}]`, names percent-encoded."""
    path = "/topics/" + urllib.parse.quote(topic_id, safe="")
    if sub is not None:
        path += "/subscriptions/" + urllib.parse.quote(sub, safe="")
    return f"{path}/{tail}" if tail else path


def _names(path: str) -> tuple[str, str]:
    """(topic, subscription) of a path made by `_path` ("" where it names none)."""
    parts = [urllib.parse.unquote(p) for p in path.split("/")]
    topic = parts[2] if len(parts) > 2 and parts[1] == "topics" else ""
    sub = parts[4] if len(parts) > 4 and parts[3] == "subscriptions" else ""
    return topic, sub


def _error(status: int, raw: bytes, path: str, at: int | None) -> LogstoreError:
    """The library's exception for an error answer, its text the code and the message."""
    try:
        doc = json.loads(raw)
        code, message = doc["error"], doc["message"]
    except (ValueError, KeyError, TypeError):
        text = raw[:200].decode(errors="replace").strip()
        return ServerError(status, "", f"HTTP {status}: {text}" if text else f"HTTP {status}")
    topic, sub = _names(path)
    exc: LogstoreError
    match code:
        case "invalid_name":
            exc = InvalidName(message)
        case "invalid_request":
            exc = InvalidArgument(message)
        case "topic_not_found":
            exc = TopicNotFound(topic)
        case "subscription_not_found":
            exc = SubscriptionNotFound(topic, sub)
        case "topic_exists":
            exc = TopicExists(topic)
        case "subscription_exists":
            exc = SubscriptionExists(topic, sub)
        case "offset_out_of_range":
            offset = -1 if at is None else at
            exc = OffsetOutOfRange(topic, offset, doc["start_offset"], doc["end_offset"])
        case "storage_full":
            exc = StorageFull(topic, message)
        case _:
            return ServerError(status, code, message)
    exc.args = (f"{code}: {message}",)  # the server's words: they say what to do
    return exc


def _info(cls: type[T], doc: Mapping[str, Any]) -> T:
    """A `TopicInfo` / `SubscriptionInfo` from its JSON (fields the server adds are ignored)."""
    return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls)})


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _closed_by_peer(sock: object) -> bool:
    """An idle connection with something to read has been closed by the server (EOF)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
