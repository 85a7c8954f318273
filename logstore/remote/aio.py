"""`AsyncClient`: the `Store` API over HTTP for asyncio; every method is awaitable.

    from logstore import AsyncClient
    async with AsyncClient("http://127.0.0.1:8080") as store:
        await store.write("orders", b"hello")
        async for message in store.messages("orders"):
            ...

The same calls (`logstore.remote.calls`), errors, retry rule and wire forms as `Client` (see
`logstore.remote.sync`); only the transport differs: asyncio protocols feeding the same
HTTP parser. Many requests may run at once on one client: each takes an idle keep-alive
connection or opens one (at most `pool_size` idle ones are kept). A client belongs to the
event loop it is first used on.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar, cast

import logstore.remote.calls as calls

from ..config import DEFAULT_SEGMENT_BYTES
from ..errors import ServerUnreachable, StoreClosed
from ..iterators import AsyncReceived, adeliveries, amessages
from ..types import Delivery, Message, Record, SubscriptionInfo, TopicInfo
from .endpoint import Endpoint
from .http import ProtocolError, Response, ResponseParser, encode_request
from .retry import Retry
from .sync import Wire

T = TypeVar("T")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: `exchange` writes a request and awaits its whole answer,
    parsed as the bytes arrive (no stream buffers, no task per request)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            transport, connection = await loop.create_connection(
                cls,
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.host if endpoint.tls else None,
            )
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of asyncio.Transport (uvloop's).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            response = parser.feed(data)
        except ProtocolError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if response is not None:
            self._waiter = self._parser = None
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(exc)

    def _finish(self, exc: Exception | None = None) -> None:
        waiter, parser = self._waiter, self._parser
        self._waiter = self._parser = None
        if waiter is None or waiter.done() or parser is None:
            return
        try:
            waiter.set_result(parser.end())
        except ProtocolError as error:
            waiter.set_exception(exc or error)

    async def exchange(self, data: bytes, method: str, timeout: float) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._parser = ResponseParser(method)
        waiter = self._waiter = loop.create_future()
        self.transport.write(data)
        timer = loop.call_later(timeout, self._time_out, waiter, timeout)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _time_out(self, waiter: asyncio.Future[Response], timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError(f"no answer within {timeout:g} s"))
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class AsyncClient:
    """`Client` for asyncio: the same arguments, the same methods, awaitable."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),  # noqa: B008 (frozen, shared safely)
        wire: Wire = "binary",
        pool_size: int = 32,
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

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every idle connection; later calls raise `StoreClosed`."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def sync(self) -> None:
        """Nothing to do: the server has synced every write it acknowledged."""

    # --------------------------------------------------------------- topics

    async def create_topic(
        self,
        topic_id: str,
        name: str | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        return await self._run(
            calls.create_topic(
                topic_id, name, retention_ms, retention_bytes, segment_bytes, exist_ok
            )
        )

    async def topics(self) -> list[TopicInfo]:
        return await self._run(calls.topics())

    async def topic(self, topic_id: str) -> TopicInfo:
        return await self._run(calls.topic(topic_id))

    async def delete_topic(self, topic_id: str) -> None:
        await self._run(calls.delete_topic(topic_id))

    # ------------------------------------------------------------ writing

    async def write(
        self,
        topic_id: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        return await self._run(
            calls.write(topic_id, value, key, headers, idempotency_key, self._binary)
        )

    async def write_many(
        self,
        topic_id: str,
        messages: Iterable[bytes | Record],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        return await self._run(calls.write_many(topic_id, messages, idempotency_key, self._binary))

    async def write_batches(
        self,
        topic_id: str,
        batches: Sequence[Iterable[bytes | Record]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[int]:
        return await self._run(
            calls.write_batches(topic_id, batches, idempotency_keys, self._binary)
        )

    # ------------------------------------------------------------ reading

    async def read(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
        *,
        timestamp: int | None = None,
    ) -> list[Message]:
        return await self._run(
            calls.read(
                topic_id, offset, max_messages, max_bytes, wait, self._binary, timestamp=timestamp
            )
        )

    async def wait(self, topic_id: str, offset: int, timeout: float) -> bool:
        return await self._run(calls.wait(topic_id, offset, timeout, self._binary))

    async def offset_for_time(self, topic_id: str, timestamp_ms: int | datetime) -> int:
        return await self._run(calls.offset_for_time(topic_id, timestamp_ms))

    async def resolve_start(
        self,
        topic_id: str,
        start: str | int | datetime | None = None,
        *,
        timestamp: int | None = None,
    ) -> int:
        return await self._run(calls.resolve_start(topic_id, start, timestamp))

    def messages(
        self,
        topic_id: str,
        offset: str | int | datetime | None = None,
        *,
        follow: bool = True,
        max_messages: int = 100,
        wait: float = 30.0,
        reconnect: float = 60.0,
    ) -> AsyncIterator[Message]:
        """`async for` over messages; see `logstore.iterators.messages`."""
        return amessages(
            self,
            topic_id,
            offset,
            follow=follow,
            max_messages=max_messages,
            wait=wait,
            reconnect=reconnect,
        )

    # ------------------------------------------------------ subscriptions

    async def subscribe(
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
        return await self._run(
            calls.subscribe(
                topic_id, name, start, ack_wait, max_deliveries, dead_letter_topic, start_time
            )
        )

    async def unsubscribe(self, topic_id: str, name: str) -> None:
        await self._run(calls.unsubscribe(topic_id, name))

    async def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        return await self._run(calls.subscriptions(topic_id))

    async def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        return await self._run(calls.subscription(topic_id, name))

    async def poll(
        self,
        topic_id: str,
        name: str,
        max_messages: int = 100,
        wait: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Delivery]:
        return await self._run(
            calls.poll(topic_id, name, max_messages, wait, max_bytes, self._binary)
        )

    async def ack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        return await self._run(calls.ack(topic_id, name, offsets))

    async def nack(
        self, topic_id: str, name: str, offsets: Iterable[int | str]
    ) -> SubscriptionInfo:
        return await self._run(calls.nack(topic_id, name, offsets))

    async def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        return await self._run(calls.commit(topic_id, name, up_to))

    async def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        return await self._run(calls.seek(topic_id, name, offset, timestamp, position))

    def deliveries(
        self,
        topic_id: str,
        name: str,
        *,
        max_outstanding: int = 100,
        wait: float = 30.0,
        reconnect: float = 60.0,
    ) -> AsyncIterator[AsyncReceived]:
        """`async for` over leased deliveries (`await d.ack()`); see
        `logstore.iterators.deliveries`."""
        return adeliveries(
            self, topic_id, name, max_outstanding=max_outstanding, wait=wait, reconnect=reconnect
        )

    # ---------------------------------------------------------- transport

    async def _run(self, plan: calls.Plan[T]) -> T:
        try:
            request = next(plan)
            while True:
                request = plan.send(await self._exchange(request))
        except StopIteration as stop:
            return stop.value

    async def _exchange(self, request: calls.Request) -> Response:
        """`Client._exchange` on asyncio: the same retry rule."""
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
                connection = await self._connection()
                response = await connection.exchange(data, request.method, timeout)
            except (OSError, ProtocolError) as exc:
                sent = connection is not None
                if connection is not None:
                    connection.close()
                if retries >= self._retry.attempts or (sent and not request.retry):
                    raise ServerUnreachable(self.url, exc) from exc
                await asyncio.sleep(self._retry.delay(retries))
                retries += 1
                request.retried = request.retried or sent
                continue
            except BaseException:
                if connection is not None:
                    connection.close()  # cancelled mid-answer: never reuse it
                raise
            if (
                response.keep_alive
                and not connection.closed
                and len(self._idle) < self._pool_size
                and not self._closed
            ):
                self._idle.append(connection)
            else:
                connection.close()
            return calls.check(request, response, self.url)

    async def _connection(self) -> Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return await Connection.open(self._endpoint, self.timeout)
