"""`Client`: the `Store` API over HTTP, on blocking sockets.

    from logstore import Client
    with Client("http://127.0.0.1:8080", token=None) as store:   # was: Store("data")
        store.create_topic("orders", exist_ok=True)
        store.write("orders", b"hello")
        for message in store.messages("orders", follow=False):
            print(message.offset, message.value)

The methods are `Store`'s (SPEC §3-§4): same names, arguments, results and exceptions, so a
program moves between an embedded store and a server by changing one line. What only makes
sense on the server's machine is left out: `stats`, `idempotency_keys`, `write_batches_now`,
`read_async`, `wait_async`, `poll_async` (use `AsyncClient`), and the constructor's storage
options. `sync` is a no-op (the server syncs per its own fsync policy before it answers a
publish); `close` closes the connections, and later calls raise `StoreClosed`.
`resolve_start` and `read` also take `timestamp=` (ms since the epoch).

Errors are the library's exceptions, built from the server's `{"error", "message"}` answer
(`OffsetOutOfRange` with its bounds, `TopicNotFound` with its topic, ...), their text the
server's code and message; 401 and 403 are `Unauthorized` and `Forbidden`, other codes a
`ServerError` (with `status` and `code`), and no answer at all `ServerUnreachable` (a
`ConnectionError`).

Connections: HTTP/1.1 keep-alive, pooled (at most `pool_size` idle ones are kept), so the
client may be shared by threads; each request waits `timeout` seconds for the server, plus
the `wait` of a long poll. Connection failures are retried with backoff by the rule in
`logstore.remote.retry`; every publish carries an `Idempotency-Key`, so a retried publish
appends once.

On the wire: the binary frame form (SPEC §6) for replay, poll and publish with
`wire="binary"` (the default), JSON with `wire="json"`.
"""

from __future__ import annotations

import collections
import select
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Literal, TypeVar

import logstore.remote.calls as calls

from ..config import DEFAULT_SEGMENT_BYTES
from ..errors import ServerUnreachable, StoreClosed
from ..iterators import Received, deliveries, messages
from ..types import Delivery, Message, Record, SubscriptionInfo, TopicInfo
from .endpoint import Endpoint
from .http import ProtocolError, Response, ResponseParser, encode_request
from .retry import Retry

T = TypeVar("T")
Wire = Literal["binary", "json"]
RECEIVE_BYTES = 256 * 1024


class Connection:
    """One blocking HTTP/1.1 connection: a request, then its whole answer."""

    __slots__ = ("sock",)

    def __init__(self, endpoint: Endpoint, timeout: float):
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.tls is not None:
            sock = endpoint.tls.wrap_socket(sock, server_hostname=endpoint.host)
        self.sock = sock

    def exchange(self, data: bytes, method: str, timeout: float) -> Response:
        sock = self.sock
        sock.settimeout(timeout)
        sock.sendall(data)
        parser = ResponseParser(method)
        while True:
            chunk = sock.recv(RECEIVE_BYTES)
            if not chunk:
                return parser.end()
            response = parser.feed(chunk)
            if response is not None:
                return response

    def closed_by_peer(self) -> bool:
        """An idle connection with something to read was closed by the server (its idle
        timeout, a restart): it must not carry a request."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.sock.close()


class Client:
    """A logstore server at `url` (http:// or https://, optionally with a path prefix) with
    `Store`'s methods. `token`: the bearer token of a server run with `--auth-file`.
    `retry`: how connection failures are retried (`Retry(attempts=0)` never retries)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),  # noqa: B008 (frozen, shared safely)
        wire: Wire = "binary",
        pool_size: int = 8,
    ):
        if wire not in ("binary", "json"):
            raise ValueError(f'wire must be "binary" or "json", not {wire!r}')
        self._endpoint = Endpoint.parse(url, token)
        self.url = self._endpoint.url
        self.timeout = timeout
        self._retry = retry
        self._binary = wire == "binary"
        self._pool_size = pool_size
        self._idle: collections.deque[Connection] = collections.deque()
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection; later calls raise `StoreClosed`."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def sync(self) -> None:
        """Nothing to do: the server has synced every write it acknowledged, per its
        fsync policy."""

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
        """Create a topic; `TopicExists` if it exists, unless `exist_ok` and the settings
        are the same."""
        return self._run(
            calls.create_topic(
                topic_id, name, retention_ms, retention_bytes, segment_bytes, exist_ok
            )
        )

    def topics(self) -> list[TopicInfo]:
        """Every topic (that the token may see), by id."""
        return self._run(calls.topics())

    def topic(self, topic_id: str) -> TopicInfo:
        """One topic's settings and extent; `TopicNotFound` if there is none."""
        return self._run(calls.topic(topic_id))

    def delete_topic(self, topic_id: str) -> None:
        """Delete a topic and its subscriptions; a re-created topic starts at offset 0."""
        self._run(calls.delete_topic(topic_id))

    # ------------------------------------------------------------ writing

    def write(
        self,
        topic_id: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Append one message; its offset (a `Replayed` if the key answered a retry)."""
        return self._run(calls.write(topic_id, value, key, headers, idempotency_key, self._binary))

    def write_many(
        self,
        topic_id: str,
        messages: Iterable[bytes | Record],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Append a batch atomically (all or nothing); the first offset."""
        return self._run(calls.write_many(topic_id, messages, idempotency_key, self._binary))

    def write_batches(
        self,
        topic_id: str,
        batches: Sequence[Iterable[bytes | Record]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Append several batches, each atomic (one request each, in order); first offsets."""
        return self._run(calls.write_batches(topic_id, batches, idempotency_keys, self._binary))

    # ------------------------------------------------------------ reading

    def read(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
        *,
        timestamp: int | None = None,
    ) -> list[Message]:
        """Up to `max_messages` messages from `offset` (or from the first at or after
        `timestamp` ms); with `wait`, a read at the end waits that long for one."""
        return self._run(
            calls.read(
                topic_id, offset, max_messages, max_bytes, wait, self._binary, timestamp=timestamp
            )
        )

    def wait(self, topic_id: str, offset: int, timeout: float) -> bool:
        """Block until a message at `offset` is readable (True) or `timeout` passes."""
        return self._run(calls.wait(topic_id, offset, timeout, self._binary))

    def offset_for_time(self, topic_id: str, timestamp_ms: int | datetime) -> int:
        """The first offset whose timestamp is >= `timestamp_ms`; the end offset if none."""
        return self._run(calls.offset_for_time(topic_id, timestamp_ms))

    def resolve_start(
        self,
        topic_id: str,
        start: str | int | datetime | None = None,
        *,
        timestamp: int | None = None,
    ) -> int:
        """Where a read starts: "earliest" (also None), "latest", an offset, a datetime or
        `timestamp` ms, as an offset."""
        return self._run(calls.resolve_start(topic_id, start, timestamp))

    def messages(
        self,
        topic_id: str,
        offset: str | int | datetime | None = None,
        *,
        follow: bool = True,
        max_messages: int = 100,
        wait: float = 30.0,
        reconnect: float = 60.0,
    ) -> Iterator[Message]:
        """Every message from `offset` on, then (with `follow`) new ones as they arrive;
        see `logstore.iterators.messages`."""
        return messages(
            self,
            topic_id,
            offset,
            follow=follow,
            max_messages=max_messages,
            wait=wait,
            reconnect=reconnect,
        )

    # ------------------------------------------------------ subscriptions

    def subscribe(
        self,
        topic_id: str,
        name: str,
        start: str | int | datetime = "earliest",
        ack_wait: float = 30.0,
        max_deliveries: int | None = None,
        dead_letter_topic: str | None = None,
        *,
        start_time: int | datetime | None = None,
    ) -> SubscriptionInfo:
        """Create a durable subscription (a no-op if it exists with the same settings)."""
        return self._run(
            calls.subscribe(
                topic_id, name, start, ack_wait, max_deliveries, dead_letter_topic, start_time
            )
        )

    def unsubscribe(self, topic_id: str, name: str) -> None:
        """Remove the subscription and its state."""
        self._run(calls.unsubscribe(topic_id, name))

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        """The topic's subscriptions, by name."""
        return self._run(calls.subscriptions(topic_id))

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        """Ack floor, pending leases, lag and settings of one subscription."""
        return self._run(calls.subscription(topic_id, name))

    def poll(
        self,
        topic_id: str,
        name: str,
        max_messages: int = 100,
        wait: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Delivery]:
        """Lease up to `max_messages` messages (and about `max_bytes`, but always one) for
        the subscription's `ack_wait`; with `wait`, wait up to that long for the first."""
        return self._run(calls.poll(topic_id, name, max_messages, wait, max_bytes, self._binary))

    def ack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """Acknowledge offsets or lease tokens (`Delivery.lease`)."""
        return self._run(calls.ack(topic_id, name, offsets))

    def nack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """End these leases now, so the messages are delivered again."""
        return self._run(calls.nack(topic_id, name, offsets))

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to`."""
        return self._run(calls.commit(topic_id, name, up_to))

    def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        """Move the subscription to an offset, a time, or "earliest"/"latest"."""
        return self._run(calls.seek(topic_id, name, offset, timestamp, position))

    def deliveries(
        self,
        topic_id: str,
        name: str,
        *,
        max_outstanding: int = 100,
        wait: float = 30.0,
        reconnect: float = 60.0,
    ) -> Iterator[Received]:
        """Leased deliveries, each with `ack()` / `nack()`, at most `max_outstanding`
        unsettled at a time; see `logstore.iterators.deliveries`."""
        return deliveries(
            self, topic_id, name, max_outstanding=max_outstanding, wait=wait, reconnect=reconnect
        )

    # ---------------------------------------------------------- transport

    def _run(self, plan: calls.Plan[T]) -> T:
        """Send the plan's requests one by one; its result."""
        try:
            request = next(plan)
            while True:
                request = plan.send(self._exchange(request))
        except StopIteration as stop:
            return stop.value

    def _exchange(self, request: calls.Request) -> Response:
        """The successful answer of one request (sent again per the retry rule)."""
        if self._closed:
            raise StoreClosed()
        endpoint = self._endpoint
        data = encode_request(
            request.method,
            endpoint.prefix + request.target,
            endpoint.fixed_headers,
            request.headers,
            request.body,
        )
        timeout = self.timeout + request.wait
        retries = 0
        while True:
            connection = None
            try:
                connection = self._connection()
                response = connection.exchange(data, request.method, timeout)
            except (OSError, ProtocolError) as exc:
                sent = connection is not None
                if connection is not None:
                    connection.close()
                if retries >= self._retry.attempts or (sent and not request.retry):
                    raise ServerUnreachable(self.url, exc) from exc
                time.sleep(self._retry.delay(retries))
                retries += 1
                request.retried = request.retried or sent
                continue
            except BaseException:
                if connection is not None:
                    connection.close()  # half an answer is on it (or Ctrl-C): never reuse
                raise
            if response.keep_alive and len(self._idle) < self._pool_size and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return calls.check(request, response, self.url)

    def _connection(self) -> Connection:
        """An idle connection the server has not closed, or a new one."""
        idle = self._idle
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if not connection.closed_by_peer():
                return connection
            connection.close()
        return Connection(self._endpoint, self.timeout)
