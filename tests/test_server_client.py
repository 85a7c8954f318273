"""`logstore.Client` against a real server: Store's methods, types and exceptions."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from datetime import UTC, datetime

import pytest

from logstore import (
    Client,
    Delivery,
    InvalidArgument,
    InvalidName,
    LogstoreError,
    Message,
    OffsetOutOfRange,
    Record,
    ServerError,
    ServerUnreachable,
    SubscriptionExists,
    SubscriptionInfo,
    SubscriptionNotFound,
    TopicExists,
    TopicInfo,
    TopicNotFound,
)
from logstore.wire import (
    delivery_from_json,
    delivery_json,
    message_from_json,
    message_json,
    record_from_json,
    record_json,
)
from logstore_server import Authenticator, ServerConfig

pytest_plugins = ["test_server_support"]


@pytest.fixture
def client(live):
    with Client(live.url) as c:
        yield c


def test_topics_are_the_stores_own_types(client, store):
    created = client.create_topic("orders", name="Orders", retention_ms=60_000)
    assert isinstance(created, TopicInfo) and created == store.topic("orders")
    assert client.create_topic("orders", "Orders", 60_000, exist_ok=True) == created
    with pytest.raises(TopicExists):
        client.create_topic("orders", "Orders", 60_000)  # same settings, no exist_ok
    with pytest.raises(TopicExists, match="topic_exists"):
        client.create_topic("orders", "Other", exist_ok=True)
    assert client.topics() == store.topics() and client.topic("orders") == created
    client.delete_topic("orders")
    with pytest.raises(TopicNotFound) as caught:
        client.topic("orders")
    assert caught.value.topic == "orders" and str(caught.value).startswith("topic_not_found: ")


def test_write_and_read_round_trip_any_bytes_keys_and_headers(client, store):
    client.create_topic("t")
    assert client.write("t", b"raw body") == 0
    assert client.write("t", b"\xff\x00binary", key=b"\x80k", headers={"h": "v"}) == 1
    batch = [b"plain", Record("ünï".encode(), key=b"k", headers={"a": "b"})]
    assert client.write_many("t", batch) == 2
    got = client.read("t")
    assert all(type(m) is Message for m in got)
    assert got == store.read("t", 0)
    assert [m.value for m in client.read("t", 2, max_messages=1)] == [b"plain"]
    assert client.read("t", timestamp=got[3].timestamp)[0].offset <= 3
    assert client.read("t", 4) == []


def test_read_waits_for_a_message_then_returns_it(client):
    client.create_topic("t")

    def publish_late() -> None:
        with Client(client.url) as other:
            other.write("t", b"late")

    timer = threading.Timer(0.2, publish_late)
    timer.start()
    started = time.monotonic()
    [message] = client.read("t", 0, wait=10)
    assert message.value == b"late" and time.monotonic() - started < 5
    timer.join()


def test_resolve_start_is_the_servers(client, store):
    client.create_topic("t")
    client.write_many("t", [b"a", b"b", b"c"])
    for start in (None, "earliest", "latest", 1, 3):
        assert client.resolve_start("t", start) == store.resolve_start("t", start)
    future = int(time.time() * 1000) + 60_000
    assert client.resolve_start("t", timestamp=0) == 0
    assert client.resolve_start("t", timestamp=future) == 3
    assert client.resolve_start("t", datetime(2000, 1, 1, tzinfo=UTC)) == 0
    with pytest.raises(OffsetOutOfRange) as caught:
        client.resolve_start("t", 9)
    assert (caught.value.offset, caught.value.start_offset, caught.value.end_offset) == (9, 0, 3)


def test_subscriptions_poll_ack_nack_commit_seek(client, store):
    client.create_topic("t")
    client.write_many("t", [b"a", b"b", b"c", b"d"])
    info = client.subscribe("t", "s", ack_wait=10)
    assert isinstance(info, SubscriptionInfo) and info == store.subscription("t", "s")
    assert client.subscribe("t", "s", ack_wait=10) == info
    with pytest.raises(SubscriptionExists):
        client.subscribe("t", "s", ack_wait=5)
    assert client.subscriptions("t") == [info]
    a, b, c, d = client.poll("t", "s", max_messages=4)
    assert all(isinstance(x, Delivery) for x in (a, b, c, d))
    assert (a.offset, a.value, a.delivery_count) == (0, b"a", 1) and isinstance(a.lease, str)
    assert client.ack("t", "s", [a.lease, 1]).ack_floor == 2
    assert client.nack("t", "s", [c.lease, d.offset]).pending == 0
    again = client.poll("t", "s")
    assert [(x.offset, x.delivery_count) for x in again] == [(2, 2), (3, 2)]
    assert client.commit("t", "s", 4).lag == 0
    assert client.seek("t", "s", 1).ack_floor == 1
    assert client.seek("t", "s", position="latest").ack_floor == 4
    assert client.seek("t", "s", timestamp=datetime(2000, 1, 1, tzinfo=UTC)).ack_floor == 0
    client.unsubscribe("t", "s")
    with pytest.raises(SubscriptionNotFound) as caught:
        client.subscription("t", "s")
    assert (caught.value.topic, caught.value.subscription) == ("t", "s")


def test_subscribe_at_a_time_or_an_offset(client):
    client.create_topic("t")
    client.write_many("t", [b"a", b"b"])
    client.subscribe("t", "from-1", start=1)
    client.subscribe("t", "since-2000", start=datetime(2000, 1, 1, tzinfo=UTC))
    assert [d.offset for d in client.poll("t", "from-1")] == [1]
    assert [d.offset for d in client.poll("t", "since-2000")] == [0, 1]
    with pytest.raises(OffsetOutOfRange):
        client.subscribe("t", "beyond", start=5)


def test_error_answers_become_the_librarys_exceptions(client):
    with pytest.raises(InvalidName):
        client.topic("../etc")
    client.create_topic("t")
    with pytest.raises(InvalidArgument, match="invalid_request"):
        client.read("t", max_messages=0)
    with pytest.raises(OffsetOutOfRange) as caught:
        client.read("t", 5)
    assert (caught.value.topic, caught.value.offset, caught.value.end_offset) == ("t", 5, 0)


def test_unknown_codes_are_server_errors_with_status(make_live):
    auth = Authenticator.from_document({"tokens": [{"token": "reader", "subscribe": ["*"]}]})
    server = make_live(ServerConfig(auth=auth))
    with Client(server.url) as anonymous, pytest.raises(ServerError) as caught:
        anonymous.topics()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert isinstance(caught.value, LogstoreError)
    with Client(server.url, token="reader") as reader:
        assert reader.topics() == []
        with pytest.raises(ServerError) as caught:
            reader.create_topic("t")
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_unreachable_server_is_a_connection_error():
    with Client("http://127.0.0.1:9", timeout=2) as client, pytest.raises(ServerUnreachable) as e:
        client.topics()
    assert isinstance(e.value, ConnectionError) and "cannot reach the server" in str(e.value)
    with pytest.raises(InvalidArgument):
        Client("ftp://example.com")


def test_one_connection_is_kept_and_reopened_after_the_server_closes_it(make_live):
    server = make_live(idle_timeout_seconds=0.2)
    with Client(server.url) as client:
        client.create_topic("t")
        [connection] = client._idle
        client.topics()
        assert list(client._idle) == [connection]  # kept alive between calls
        time.sleep(0.5)  # the server closes the idle connection
        assert client.write("t", b"x") == 0  # a POST, sent once on a fresh connection
        assert list(client._idle) != [connection]
    assert [m.value for m in server.store.read("t", 0)] == [b"x"]


@pytest.mark.parametrize(
    "key, headers, value",
    [
        (None, {}, b"text"),
        (b"k", {"a": "b", "ü": "ß"}, "ünïcödé \u2028 𝄞".encode()),
        (b"\x80", {}, b"\xff\xfe binary"),
        (b"", {}, b""),
    ],
)
def test_the_codec_round_trips_messages_deliveries_and_records(key, headers, value):
    m = Message(offset=3, timestamp=1_700_000_000_000, key=key, headers=headers, value=value)
    assert message_from_json(json.loads(message_json(m))) == m
    doc = {**json.loads(message_json(m)), "delivery_count": 2, "lease": "3-9"}
    d = delivery_from_json(doc)
    assert isinstance(d, Delivery) and (d.delivery_count, d.lease) == (2, "3-9")
    assert json.loads(delivery_json(d)) == doc
    assert dataclasses.astuple(d) == dataclasses.astuple(m)
    record = record_from_json(record_json(Record(value, key, headers)), "message 0")
    assert record == Record(value, key, headers or None)
    if key is None and not headers:
        assert record_json(value) == {"value": value.decode()}
    binary = record_json(Record(b"\xff", b"\xfe"))
    assert binary == {"value_b64": base64.b64encode(b"\xff").decode(), "key_b64": "/g=="}
