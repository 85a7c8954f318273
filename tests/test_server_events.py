"""Server-Sent Events: framing, start and resume, keep-alive, slow and vanished readers."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time

import pytest
from test_server_support import LiveServer, wait_until

pytest_plugins = ["test_server_support"]


class EventStream:
    """A client of /topics/{topic}/events on its own socket (optionally a tiny buffer)."""

    def __init__(self, server, query="", headers=None, rcvbuf=None, timeout=10.0):
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", server.port))
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.conn.sock = sock
        self.conn.request("GET", f"/topics/t/events{query}", headers=headers or {})
        self.response = self.conn.getresponse()

    def next_block(self) -> list[str]:
        """The lines of the next event or comment (up to the blank line)."""
        lines = []
        while True:
            line = self.response.readline().decode()
            if not line:
                raise EOFError
            if line == "\n":
                if lines:
                    return lines
                continue
            lines.append(line.rstrip("\n"))

    def next_event(self) -> tuple[int, dict]:
        while True:
            block = self.next_block()
            if block[0].startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in block)
            return int(fields["id"]), json.loads(fields["data"])

    def close(self):
        self.conn.close()


@pytest.fixture
def topic(live):
    live.request("PUT", "/topics/t")
    return live


def _publish(server, *values):
    for v in values:
        server.request("POST", "/topics/t/messages", v.encode())


def test_stream_sends_each_new_message_as_an_event_with_its_offset_as_id(topic):
    _publish(topic, "before")
    stream = EventStream(topic)
    assert stream.response.status == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert wait_until(lambda: topic.state.sse_streams.active == 1)
    _publish(topic, "one", "two")
    events = [stream.next_event() for _ in range(2)]
    assert [i for i, _ in events] == [1, 2]
    assert [d["value"] for _, d in events] == ["one", "two"]
    assert set(events[0][1]) == {"offset", "timestamp", "key", "headers", "value"}
    stream.close()


def test_stream_from_an_offset_replays_history_first(topic):
    _publish(topic, "a", "b", "c")
    stream = EventStream(topic, "?offset=1")
    assert [stream.next_event()[0] for _ in range(2)] == [1, 2]
    stream.close()


def test_last_event_id_resumes_right_after_it(topic):
    _publish(topic, "a", "b", "c", "d")
    stream = EventStream(topic, "?offset=0", headers={"Last-Event-ID": "1"})
    assert [stream.next_event()[0] for _ in range(2)] == [2, 3]
    stream.close()


def test_bad_start_answers_json_errors_before_the_stream(topic):
    assert topic.request("GET", "/topics/t/events?offset=5").status == 416
    assert topic.request("GET", "/topics/t/events?offset=x").status == 400
    reply = topic.request("GET", "/topics/t/events", headers={"Last-Event-ID": "abc"})
    assert reply.status == 400 and reply.json["error"] == "invalid_request"
    assert topic.request("GET", "/topics/nope/events").status == 404


def test_idle_stream_gets_keep_alive_comments(make_live):
    server = make_live(sse_keepalive_seconds=0.1)
    server.request("PUT", "/topics/t")
    stream = EventStream(server)
    comments = [stream.next_block() for _ in range(3)]
    assert all(block[0].startswith(":") for block in comments)
    stream.close()


def test_client_disconnect_ends_the_stream_at_once(topic):
    async def count():
        return len(asyncio.all_tasks())

    baseline = topic.call(count())
    stream = EventStream(topic)
    assert wait_until(lambda: topic.state.sse_streams.active == 1)
    stream.close()
    assert wait_until(lambda: topic.state.sse_streams.active == 0, timeout=2)
    assert wait_until(lambda: topic.call(count()) <= baseline, timeout=2)


def test_slow_reader_does_not_make_the_server_buffer_the_log(make_live):
    server = make_live(sse_send_timeout_seconds=30)
    server.request("PUT", "/topics/t")
    stream = EventStream(server, "?offset=0", rcvbuf=32 * 1024, timeout=30)
    assert wait_until(lambda: server.state.sse_streams.active == 1)
    value = "v" * 10_000
    batch = {"messages": [{"value": value}] * 100}
    for _ in range(40):  # 40 MB while the client reads nothing
        assert server.request("POST", "/topics/t/messages", json_body=batch).status == 201
    time.sleep(0.5)
    sent = sum(c[1] for (t, via), c in server.state.metrics.delivered.items() if via == "events")
    assert sent < 12 * 2**20, f"the server pushed {sent} bytes to a client that reads nothing"
    offsets = [stream.next_event()[0] for _ in range(4000)]
    assert offsets == list(range(4000))
    stream.close()


def test_reader_that_reads_nothing_is_disconnected_after_the_send_timeout(make_live, caplog):
    server = make_live(sse_send_timeout_seconds=0.5)
    server.request("PUT", "/topics/t")
    stream = EventStream(server, "?offset=0", rcvbuf=4096, timeout=30)
    assert wait_until(lambda: server.state.sse_streams.active == 1)
    batch = {"messages": [{"value": "v" * 10_000}] * 100}
    for _ in range(20):
        server.request("POST", "/topics/t/messages", json_body=batch)
    assert wait_until(lambda: server.state.sse_streams.active == 0, timeout=10)
    with pytest.raises((EOFError, ConnectionError, http.client.IncompleteRead)):
        for _ in range(3000):  # what the kernel had already delivered, then the reset
            stream.next_block()
    stream.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_too_many_streams_answer_503(make_live):
    server = make_live(max_sse_streams=1)
    server.request("PUT", "/topics/t")
    stream = EventStream(server)
    assert wait_until(lambda: server.state.sse_streams.active == 1)
    refused = server.request("GET", "/topics/t/events")
    assert refused.status == 503 and refused.json["error"] == "overloaded"
    assert "Retry-After" in refused.headers
    stream.close()


def test_deleted_topic_ends_the_stream_with_an_error_event(topic):
    stream = EventStream(topic)
    assert wait_until(lambda: topic.state.sse_streams.active == 1)
    topic.request("DELETE", "/topics/t")
    block = stream.next_block()
    while block[0].startswith(":"):
        block = stream.next_block()
    assert block[0] == "event: error"
    assert json.loads(block[1].split(": ", 1)[1])["error"] == "topic_not_found"
    stream.close()


def test_shutdown_ends_open_streams(store):
    server = LiveServer(store)
    server.request("PUT", "/topics/t")
    stream = EventStream(server)
    assert wait_until(lambda: server.state.sse_streams.active == 1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(EOFError):
        while True:
            stream.next_block()
