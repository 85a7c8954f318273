"""Publish and replay over HTTP: bodies, batches, parameters, limits, idempotency."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from test_server_support import LiveServer, raw_exchange

from logstore import Store

pytest_plugins = ["test_server_support"]


@pytest.fixture
def orders(live):
    assert live.request("PUT", "/topics/orders").status == 201
    return live


def _publish(server, messages, **kw):
    return server.request("POST", "/topics/orders/messages", json_body={"messages": messages}, **kw)


def test_raw_body_is_one_message_with_key_from_query(orders):
    reply = orders.request("POST", "/topics/orders/messages?key=user-7", b"\x00\xffraw")
    assert reply.status == 201
    assert reply.json == {"first_offset": 0, "count": 1}
    [m] = orders.store.read("orders", 0)
    assert (m.value, m.key) == (b"\x00\xffraw", b"user-7")


def test_empty_raw_body_is_an_empty_message(orders):
    assert orders.request("POST", "/topics/orders/messages", b"").status == 201
    assert orders.store.read("orders", 0)[0].value == b""


def test_json_batch_is_atomic_with_contiguous_offsets(orders):
    orders.request("POST", "/topics/orders/messages", b"first")
    reply = _publish(
        orders,
        [
            {"value": "text ✓"},
            {"value_b64": base64.b64encode(b"\xff\xfe").decode(), "key": "k"},
            {"value": "", "key_b64": base64.b64encode(b"\x80").decode(), "headers": {"a": "b"}},
        ],
    )
    assert reply.status == 201 and reply.json == {"first_offset": 1, "count": 3}
    messages = orders.store.read("orders", 1)
    assert [m.offset for m in messages] == [1, 2, 3]
    assert len({m.timestamp for m in messages}) == 1  # one frame, one batch
    assert [m.value for m in messages] == ["text ✓".encode(), b"\xff\xfe", b""]
    assert [m.key for m in messages] == [None, b"k", b"\x80"]
    assert dict(messages[2].headers) == {"a": "b"}


def test_replay_encodes_text_as_value_and_other_bytes_as_value_b64(orders):
    before = time.time_ns() // 1_000_000
    _publish(orders, [{"value": "hello", "key": "k", "headers": {"h": "v"}}])
    orders.request("POST", "/topics/orders/messages", b"\xff\x00")
    after = time.time_ns() // 1_000_000
    page = orders.request("GET", "/topics/orders/messages").json
    first, second = page["messages"]
    stored = [m.timestamp for m in orders.store.read("orders", 0)]
    assert before <= stored[0] <= stored[1] <= after  # milliseconds of the wall clock
    assert first == {
        "offset": 0,
        "timestamp": stored[0],
        "key": "k",
        "headers": {"h": "v"},
        "value": "hello",
    }
    assert second["timestamp"] == stored[1]
    assert "value" not in second and base64.b64decode(second["value_b64"]) == b"\xff\x00"
    assert second["key"] is None
    assert (page["next_offset"], page["start_offset"], page["end_offset"]) == (2, 0, 2)


def test_replay_from_offset_with_max_and_max_bytes(orders):
    _publish(orders, [{"value": f"m{i:02d}"} for i in range(20)])
    page = orders.request("GET", "/topics/orders/messages?offset=5&max=3").json
    assert [m["value"] for m in page["messages"]] == ["m05", "m06", "m07"]
    assert page["next_offset"] == 8
    page = orders.request("GET", "/topics/orders/messages?offset=5&max_bytes=7").json
    assert [m["value"] for m in page["messages"]] == ["m05", "m06"]
    page = orders.request("GET", "/topics/orders/messages?offset=20").json
    assert page["messages"] == [] and page["next_offset"] == 20


def test_replay_by_timestamp(orders):
    orders.request("POST", "/topics/orders/messages", b"old")
    time.sleep(0.01)
    cut = int(time.time() * 1000)
    time.sleep(0.01)
    orders.request("POST", "/topics/orders/messages", b"new")
    page = orders.request("GET", f"/topics/orders/messages?timestamp={cut}").json
    assert [m["value"] for m in page["messages"]] == ["new"]
    future = orders.request("GET", f"/topics/orders/messages?timestamp={cut * 2}").json
    assert future["messages"] == [] and future["next_offset"] == 2


def test_offset_outside_the_log_answers_416_with_both_bounds(orders):
    orders.request("POST", "/topics/orders/messages", b"x")
    for offset in (2, 10**18, 9_999_999_999_999_999_999 // 10):
        reply = orders.request("GET", f"/topics/orders/messages?offset={offset}")
        assert reply.status == 416
        body = reply.json
        assert body["error"] == "offset_out_of_range"
        assert (body["start_offset"], body["end_offset"]) == (0, 1)
    # Beyond the end with wait: answered at once, not after waiting.
    started = time.monotonic()
    reply = orders.request("GET", "/topics/orders/messages?offset=5&wait=5")
    assert reply.status == 416 and time.monotonic() - started < 1


@pytest.mark.parametrize(
    "query",
    [
        "offset=-1",
        "offset=abc",
        "offset=1.5",
        "offset=",
        "offset=99999999999999999999999",
        "max=0",
        "max=-5",
        "max=ten",
        "max_bytes=0",
        "wait=-1",
        "wait=abc",
        "wait=nan",
        "wait=inf",
        "wait=1e999",
        "timestamp=-3",
        "offset=0&timestamp=0",
    ],
)
def test_bad_read_parameters_answer_400(orders, query):
    reply = orders.request("GET", f"/topics/orders/messages?{query}")
    assert reply.status == 400, reply.body
    assert reply.json["error"] == "invalid_request"
    assert set(reply.json) == {"error", "message"}


def test_huge_max_and_wait_are_capped_not_refused(make_live):
    server = make_live(max_read_messages=5, max_wait_seconds=0.2)
    server.request("PUT", "/topics/t")
    server.request(
        "POST",
        "/topics/t/messages",
        json_body={"messages": [{"value": str(i)} for i in range(10)]},
    )
    page = server.request("GET", "/topics/t/messages?max=1000000000").json
    assert len(page["messages"]) == 5
    started = time.monotonic()
    page = server.request("GET", "/topics/t/messages?offset=10&wait=100000").json
    assert page["messages"] == [] and time.monotonic() - started < 2


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"{}",
        b'{"messages": []}',
        b'{"messages": {}}',
        b'{"messages": [1]}',
        b'{"messages": [{}]}',
        b'{"messages": [{"value": 5}]}',
        b'{"messages": [{"value": null}]}',
        b'{"messages": [{"value": "a", "value_b64": "YQ=="}]}',
        b'{"messages": [{"value_b64": "not base64!"}]}',
        b'{"messages": [{"value_b64": 12}]}',
        b'{"messages": [{"value": "a", "key": 7}]}',
        b'{"messages": [{"value": "a", "headers": {"h": 1}}]}',
        b'{"messages": [{"value": "a", "headers": ["h"]}]}',
        b'{"messages": [{"value": "a", "extra": 1}]}',
        b'{"messages": [{"value": "\\ud800"}]}',
        b'{"messages": [{"value": "a"}], "more": 1}',
        b'{"messages": [{"value": "a"}]' + b" " * 10 + b"garbage",
        b"\xff\xfe\x00",
    ],
)
def test_bad_publish_bodies_answer_400_and_store_nothing(orders, body):
    reply = orders.request(
        "POST", "/topics/orders/messages", body, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400, reply.body
    assert reply.json["error"] == "invalid_request"
    assert orders.store.topic("orders").end_offset == 0


def test_message_over_the_limit_answers_413_and_the_batch_is_not_stored(orders):
    big = "x" * (2**20 + 1)
    reply = _publish(orders, [{"value": "small"}, {"value": big}])
    assert reply.status == 413 and reply.json["error"] == "payload_too_large"
    reply = orders.request("POST", "/topics/orders/messages", big.encode())
    assert reply.status == 413
    assert orders.store.topic("orders").end_offset == 0


def test_batch_over_the_limit_answers_413(orders):
    reply = _publish(orders, [{"value": ""}] * 10_001)
    assert reply.status == 413 and reply.json["error"] == "payload_too_large"
    assert _publish(orders, [{"value": ""}] * 10_000).json["count"] == 10_000


def test_body_over_the_limit_answers_413_without_reading_it(make_live):
    server = make_live(max_body_bytes=1000)
    server.request("PUT", "/topics/t")
    reply = server.request("POST", "/topics/t/messages", b"x" * 1001)
    assert reply.status == 413 and reply.json["error"] == "payload_too_large"
    # Chunked (no Content-Length): refused once the read passes the limit.
    chunk = b"x" * 800
    raw = (
        b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
        + b"0\r\n\r\n"
    )
    answer = raw_exchange(server.port, raw)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert server.store.topic("t").end_offset == 0


def test_slow_body_answers_408(make_live):
    server = make_live(body_timeout_seconds=0.3)
    server.request("PUT", "/topics/t")
    raw = b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    answer = raw_exchange(server.port, raw, timeout=5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"request_timeout"' in answer


def test_idempotency_key_answers_the_first_result_without_appending(orders):
    headers = {"Idempotency-Key": "order-42"}
    first = orders.request("POST", "/topics/orders/messages", b"a", headers=headers)
    again = orders.request("POST", "/topics/orders/messages", b"a", headers=headers)
    assert first.status == again.status == 201
    assert first.json == again.json == {"first_offset": 0, "count": 1}
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = orders.request(
        "POST", "/topics/orders/messages", b"b", headers={"Idempotency-Key": "2"}
    )
    assert other.json["first_offset"] == 1
    assert orders.store.topic("orders").end_offset == 2


def test_idempotency_key_is_per_topic_and_forgotten_with_the_topic(orders):
    orders.request("PUT", "/topics/other")
    headers = {"Idempotency-Key": "k"}
    orders.request("POST", "/topics/orders/messages", b"a", headers=headers)
    reply = orders.request("POST", "/topics/other/messages", b"a", headers=headers)
    assert "Idempotent-Replayed" not in reply.headers
    orders.request("DELETE", "/topics/orders")
    orders.request("PUT", "/topics/orders")
    reply = orders.request("POST", "/topics/orders/messages", b"a", headers=headers)
    assert "Idempotent-Replayed" not in reply.headers


def test_failed_publish_is_not_remembered_by_its_idempotency_key(orders):
    headers = {"Idempotency-Key": "retry-me", "Content-Type": "application/json"}
    bad = orders.request(
        "POST",
        "/topics/orders/messages",
        b'{"messages": [{"value": "' + b"x" * (2**20 + 1) + b'"}]}',
        headers=headers,
    )
    assert bad.status == 413
    good = orders.request(
        "POST", "/topics/orders/messages", b"ok", headers={"Idempotency-Key": "retry-me"}
    )
    assert good.status == 201 and "Idempotent-Replayed" not in good.headers


def test_concurrent_retries_with_one_idempotency_key_append_once(orders):
    results = []

    def send():
        reply = orders.request(
            "POST", "/topics/orders/messages", b"once", headers={"Idempotency-Key": "same"}
        )
        results.append(reply.json["first_offset"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 8
    assert orders.store.topic("orders").end_offset == 1


def test_idempotency_window_expires(tmp_path):
    with Store(tmp_path / "data", fsync="never", idempotency_window=0.2) as store:
        server = LiveServer(store)
        try:
            server.request("PUT", "/topics/t")
            headers = {"Idempotency-Key": "k"}

            def publish():
                return server.request("POST", "/topics/t/messages", b"a", headers=headers)

            assert "Idempotent-Replayed" not in publish().headers
            assert publish().headers.get("Idempotent-Replayed") == "true"
            time.sleep(0.25)
            assert "Idempotent-Replayed" not in publish().headers
            assert store.topic("t").end_offset == 2
        finally:
            server.stop()


def test_overlong_idempotency_key_answers_400(orders):
    reply = orders.request(
        "POST", "/topics/orders/messages", b"a", headers={"Idempotency-Key": "k" * 300}
    )
    assert reply.status == 400


def test_published_json_round_trips_through_replay(orders):
    sent = [
        {"value": "plain"},
        {"value": "ключ", "key": "ключ", "headers": {"ü": "ß", "empty": ""}},
        {"value_b64": base64.b64encode(bytes(range(256))).decode()},
    ]
    _publish(orders, sent)
    got = orders.request("GET", "/topics/orders/messages").json["messages"]
    for s, g in zip(sent, got, strict=True):
        for field in ("value", "value_b64", "key", "headers"):
            if field in s:
                assert g[field] == s[field]
    assert [(g["offset"], g["key"], g["headers"]) for g in got] == [
        (0, None, {}),
        (1, "ключ", {"ü": "ß", "empty": ""}),
        (2, None, {}),
    ]
    assert "value_b64" not in got[0] and "value" not in got[2]
    stored = orders.store.read("orders", 0)  # the bytes the store holds, not the reply's JSON
    assert [(m.value, m.key, dict(m.headers)) for m in stored] == [
        (b"plain", None, {}),
        ("ключ".encode(), "ключ".encode(), {"ü": "ß", "empty": ""}),
        (bytes(range(256)), None, {}),
    ]
    assert [g["timestamp"] for g in got] == [m.timestamp for m in stored]


@pytest.mark.parametrize(
    "value, key, headers",
    [
        (b"plain", None, {}),
        (b'quote " backslash \\ newline \n tab \t nul \x00 \x1f', b'k"ey', {"a": "b\n"}),
        ("ünïcödé ✓ \u2028 𝄞".encode(), "ключ".encode(), {"ü": "ß", "": ""}),
        (b"\xff\xfe binary", b"\x80", {}),
        (b"", b"", {}),
    ],
)
def test_message_json_is_the_json_of_the_message(value, key, headers):
    from logstore import Message
    from logstore.wire import message_json

    m = Message(offset=7, timestamp=1_700_000_000_000, key=key, headers=headers, value=value)
    doc = json.loads(message_json(m))
    expected = {"offset": 7, "timestamp": 1_700_000_000_000, "headers": headers}
    for name, raw in (("key", key), ("value", value)):
        try:
            expected[name] = None if raw is None else raw.decode()
        except UnicodeDecodeError:
            expected[f"{name}_b64"] = base64.b64encode(raw).decode()
    assert doc == expected
