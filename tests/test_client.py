"""`Client` and `AsyncClient` where the network misbehaves: dropped answers, a server that
restarts, auth, and the HTTP/1.1 core both share. (What they share with `Store` is checked by
the conformance suite: see conformance.py.)"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable

import pytest
from conformance import BlockingAsyncClient
from test_server_support import ServeProcess

from logstore import (
    AsyncClient,
    Client,
    Corruption,
    Forbidden,
    LogstoreError,
    OffsetOutOfRange,
    Retry,
    ServerError,
    ServerUnreachable,
    Unauthorized,
)
from logstore.remote.http import ProtocolError, ResponseParser, encode_request
from logstore_server import Authenticator, ServerConfig

pytest_plugins = ["test_server_support"]


class AnswerDroppingProxy:
    """A TCP proxy to a server that forwards each request, reads the server's whole answer,
    and then, for the first `drops` answers, closes the client's connection instead of
    relaying it: the request took effect, the client never hears so. `mangle` rewrites the
    body of every answer relayed (damage on the way)."""

    def __init__(self, port: int, drops: int, mangle: Callable[[bytes], bytes] | None = None):
        self.port, self.drops, self.mangle = port, drops, mangle
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(downstream,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, downstream: socket.socket) -> None:
        with downstream, socket.create_connection(("127.0.0.1", self.port)) as upstream:
            while request := _read_request(downstream):
                self.requests += 1
                upstream.sendall(request)
                parser = ResponseParser(request.split(b" ", 1)[0].decode())
                while (answer := parser.feed(upstream.recv(65536))) is None:
                    pass
                if self.drops > 0:
                    self.drops -= 1
                    return  # the answer is lost with the connection
                if self.mangle is not None:
                    answer.body = self.mangle(answer.body)
                head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n" % (
                    answer.status,
                    len(answer.body),
                )
                extra = "".join(
                    f"{k}: {v}\r\n"
                    for k, v in answer.headers.items()
                    if k not in ("content-length", "transfer-encoding")
                )
                downstream.sendall(head + extra.encode() + b"\r\n" + answer.body)

    def close(self) -> None:
        self.listener.close()


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def proxy(live):
    made = []

    def make(drops: int, mangle: Callable[[bytes], bytes] | None = None) -> AnswerDroppingProxy:
        made.append(AnswerDroppingProxy(live.port, drops, mangle))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.mark.parametrize("wire", ["binary", "json"])
def test_a_publish_whose_answer_was_lost_is_retried_and_appended_once(live, proxy, wire):
    live.store.create_topic("t")
    lossy = proxy(drops=1)
    with Client(lossy.url, wire=wire) as client:
        assert client.write_many("t", [b"a", b"b"]) == 0  # the retry answers the first write
        assert client.write("t", b"c") == 2
    assert lossy.requests == 3  # the batch went twice (the first answer dropped), "c" once
    assert [m.value for m in live.store.read("t", 0)] == [b"a", b"b", b"c"]


def test_an_async_publish_whose_answer_was_lost_is_appended_once(live, proxy):
    live.store.create_topic("t")
    lossy = proxy(drops=1)

    async def publish() -> int:
        async with AsyncClient(lossy.url) as client:
            return await client.write("t", b"once")

    assert asyncio.run(publish()) == 0
    assert lossy.requests == 2
    assert [m.value for m in live.store.read("t", 0)] == [b"once"]


def _flip_a_payload_byte(body: bytes) -> bytes:
    if len(body) < 200:  # not a replay page: leave it alone
        return body
    return body[:150] + bytes([body[150] ^ 0x20]) + body[151:]


def test_a_replay_damaged_on_the_way_raises_corruption_in_the_client(live, proxy):
    live.store.create_topic("t")
    live.store.write_many("t", [b"payload %03d" % i for i in range(40)])
    damaging = proxy(0, _flip_a_payload_byte)
    with Client(damaging.url) as client, pytest.raises(Corruption):
        client.read("t", 5, 20)
    with Client(proxy(0).url) as client:  # the same read, undamaged on its way
        assert [m.offset for m in client.read("t", 5, 20)] == list(range(5, 25))


def test_a_poll_whose_answer_was_lost_is_not_sent_again(live, proxy):
    live.store.create_topic("t")
    live.store.write("t", b"x")
    live.store.subscribe("t", "s", ack_wait=60)
    lossy = proxy(drops=1)
    with Client(lossy.url) as client, pytest.raises(ServerUnreachable):
        client.poll("t", "s")
    assert lossy.requests == 1  # a second poll would have leased further messages
    assert live.store.subscription("t", "s").pending == 1  # leased to the lost answer


def test_a_refused_connection_is_retried_with_backoff_then_reported():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", retry=Retry(attempts=2, base=0.01))
    with client, pytest.raises(ServerUnreachable) as caught:
        client.topics()
    assert isinstance(caught.value, ConnectionError) and f":{port}" in str(caught.value)


def test_messages_iterator_survives_a_server_restart_without_gap_or_duplicate(tmp_path):
    server = ServeProcess(tmp_path / "data")
    port = server.port
    got: list[int] = []
    failure: list[BaseException] = []
    try:
        with Client(server.url, timeout=5) as client:
            client.create_topic("t")
            client.write_many("t", [b"%d" % i for i in range(30)])
            reader = Client(server.url, timeout=5, retry=Retry(attempts=1, base=0.01))

            def follow() -> None:
                try:
                    for m in reader.messages("t", 0, max_messages=7, wait=2.0, reconnect=60):
                        got.append(m.offset)
                        if len(got) == 60:
                            return
                except BaseException as exc:  # reported by the assertion below
                    failure.append(exc)

            thread = threading.Thread(target=follow, daemon=True)
            thread.start()
            thread.join(timeout=0.5)  # it has read what there was and waits in a long poll
            server.stop(signal.SIGKILL)  # the long poll's connection dies with the server
            server = ServeProcess(tmp_path / "data", "--port", str(port))
            client.write_many("t", [b"%d" % i for i in range(30, 60)])
            thread.join(timeout=60)
            reader.close()
        assert not failure and not thread.is_alive()
        assert got == list(range(60))
    finally:
        server.stop()


@pytest.fixture
def auth_server(make_live):
    auth = Authenticator.from_document({"tokens": [{"token": "reader", "subscribe": ["*"]}]})
    return make_live(ServerConfig(auth=auth))


def test_401_and_403_are_unauthorized_and_forbidden_in_both_clients(auth_server):
    for make in (Client, BlockingAsyncClient):
        with make(auth_server.url) as anonymous, pytest.raises(Unauthorized) as caught:
            anonymous.topics()
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        with make(auth_server.url, token="reader") as reader:
            assert reader.topics() == []
            with pytest.raises(Forbidden) as caught:
                reader.create_topic("t")
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        assert isinstance(caught.value, ServerError) and isinstance(caught.value, LogstoreError)


@pytest.mark.parametrize("wire", ["binary", "json"])
def test_416_is_offset_out_of_range_with_both_bounds_in_both_clients(live, wire):
    live.store.create_topic("t")
    live.store.write_many("t", [b"a", b"b"])
    for make in (Client, BlockingAsyncClient):
        with make(live.url, wire=wire) as client, pytest.raises(OffsetOutOfRange) as caught:
            client.read("t", 7)
        error = caught.value
        assert (error.topic, error.offset, error.start_offset, error.end_offset) == ("t", 7, 0, 2)


def test_many_concurrent_requests_share_one_async_client(live):
    live.store.create_topic("t")

    async def scenario() -> tuple[list[int], int]:
        async with AsyncClient(live.url, pool_size=4) as client:
            offsets = await asyncio.gather(*[client.write("t", b"%d" % i) for i in range(50)])
            return sorted(offsets), len(client._idle)

    offsets, idle = asyncio.run(scenario())
    assert offsets == list(range(50))
    assert idle <= 4  # more connections were open at once; only the pool's size stay


def test_async_client_runs_on_uvloop_whose_transports_are_not_asyncio_transports(live):
    import uvloop

    live.store.create_topic("t")

    async def scenario() -> list[bytes]:
        async with AsyncClient(live.url) as client:
            await client.write("t", b"on uvloop")
            return [m.value for m in await client.read("t", 0)]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == [b"on uvloop"]


def test_deliveries_bound_the_outstanding_and_settle_through_the_client(live):
    live.store.create_topic("t")
    live.store.write_many("t", [b"%d" % i for i in range(5)])
    live.store.subscribe("t", "s")
    with Client(live.url) as client:
        deliveries = client.deliveries("t", "s", max_outstanding=2, wait=0.2)
        first, second = next(deliveries), next(deliveries)
        assert live.store.subscription("t", "s").pending == 2  # not one more was leased
        first.ack()
        second.nack()
        assert [next(deliveries).offset for _ in range(2)] == [1, 2]  # redelivery first
        assert live.store.subscription("t", "s").ack_floor == 1
        deliveries.close()


def test_the_http_core_reads_chunked_and_close_delimited_answers_in_pieces():
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    parser = ResponseParser()
    results = [parser.feed(answer[i : i + 3]) for i in range(0, len(answer), 3)]
    [response] = [r for r in results if r is not None]
    assert (response.status, response.body, response.headers["x-a"]) == (200, b"hello, world", "b")
    assert response.keep_alive
    close_delimited = ResponseParser()
    assert close_delimited.feed(b"HTTP/1.0 200 OK\r\n\r\nuntil the end") is None
    ended = close_delimited.end()
    assert ended.body == b"until the end" and not ended.keep_alive
    cut = ResponseParser()
    cut.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(ProtocolError, match="before the answer was complete"):
        cut.end()
    with pytest.raises(ProtocolError, match="status line"):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    request = encode_request("POST", "/x", "Host: h\r\n", "A: b\r\n", b"body")
    assert request == b"POST /x HTTP/1.1\r\nHost: h\r\nA: b\r\nContent-Length: 4\r\n\r\nbody"
