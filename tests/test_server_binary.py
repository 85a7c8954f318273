"""The binary form over HTTP (SPEC §6): replay sends stored frames, publish takes one frame,
poll carries deliveries with their counts and leases; errors stay JSON."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from logstore import Corruption, Record, binary, frames
from logstore.engine.local.segment import SUFFIX

pytest_plugins = ["test_server_support"]

FRAMES = {"Accept": binary.CONTENT_TYPE}
PUBLISH = {"Content-Type": binary.CONTENT_TYPE}


@pytest.fixture
def orders(live):
    assert live.request("PUT", "/topics/orders").status == 201
    return live


def _segment(server) -> Path:
    return next(Path(server.store.path).glob("topics/*/*" + SUFFIX))


def _replay(server, query: str, first: int):
    reply = server.request("GET", f"/topics/orders/messages?{query}", headers=FRAMES)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == binary.CONTENT_TYPE
    end = int(reply.headers[binary.NEXT_OFFSET])
    return reply, binary.decode_replay(reply.body, first, end)


def test_binary_publish_is_one_atomic_batch_numbered_by_the_server(orders):
    orders.store.write("orders", b"zero")
    body = binary.encode_publish([b"a", Record(b"b", key=b"k", headers={"h": "v"}), b"c"])
    reply = orders.request("POST", "/topics/orders/messages", body, headers=PUBLISH)
    assert (reply.status, reply.json) == (201, {"first_offset": 1, "count": 3})
    got = orders.store.read("orders", 1, 10)
    assert [(m.offset, m.value, m.key, dict(m.headers)) for m in got] == [
        (1, b"a", None, {}),
        (2, b"b", b"k", {"h": "v"}),
        (3, b"c", None, {}),
    ]


def test_binary_publish_with_a_bad_crc_answers_400_and_stores_nothing(orders):
    body = bytearray(binary.encode_publish([b"hello", b"world"]))
    body[-1] ^= 0x40
    reply = orders.request("POST", "/topics/orders/messages", bytes(body), headers=PUBLISH)
    assert reply.status == 400
    assert reply.json["error"] == "invalid_request"
    assert "CRC" in reply.json["message"] and "orders" in reply.json["message"]
    assert orders.store.topic("orders").end_offset == 0


@pytest.mark.parametrize("body", [b"", b"\x00" * 10, b"not a frame at all, just text"])
def test_binary_publish_of_something_not_a_frame_answers_400(orders, body):
    reply = orders.request("POST", "/topics/orders/messages", body, headers=PUBLISH)
    assert (reply.status, reply.json["error"]) == (400, "invalid_request")
    assert orders.store.topic("orders").end_offset == 0


def test_binary_publish_over_the_message_limit_answers_413(make_live):
    server = make_live()
    server.store.create_topic("orders")
    big = binary.encode_publish([b"x" * (server.store.max_message_bytes + 1)])
    reply = server.request("POST", "/topics/orders/messages", big, headers=PUBLISH)
    assert (reply.status, reply.json["error"]) == (413, "payload_too_large")


def test_binary_publish_with_idempotency_key_appends_once(orders):
    body = binary.encode_publish([b"once"] * 3)
    headers = {**PUBLISH, "Idempotency-Key": "abc"}
    first = orders.request("POST", "/topics/orders/messages", body, headers=headers)
    again = orders.request("POST", "/topics/orders/messages", body, headers=headers)
    assert first.json == again.json == {"first_offset": 0, "count": 3}
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert orders.store.topic("orders").end_offset == 3


def test_binary_replay_sends_the_stored_frames_as_they_lie(orders):
    for i in range(10):
        orders.store.write_many("orders", [b"m%d-%d" % (i, j) for j in range(10)])
    reply, messages = _replay(orders, "offset=35&max=20", 35)
    assert [m.value for m in messages] == [m.value for m in orders.store.read("orders", 35, 20)]
    assert reply.headers[binary.NEXT_OFFSET] == "55"
    assert reply.headers[binary.START_OFFSET] == "0"
    assert reply.headers[binary.END_OFFSET] == "100"
    stored = _segment(orders).read_bytes()
    assert reply.body in stored  # the frames 30..59, byte for byte
    assert frames.parse_header(reply.body, 0).base_offset == 30


def test_binary_replay_agrees_with_json_replay_for_every_kind_of_message(orders):
    orders.store.write("orders", b"\xff\x00 bytes")
    orders.store.write("orders", b"text", key=b"\xfekey", headers={"a": "b"})
    orders.store.write_many("orders", [b"x", b"y"])
    _, messages = _replay(orders, "offset=0&max=100", 0)
    assert messages == orders.store.read("orders", 0, 100)
    as_json = orders.request("GET", "/topics/orders/messages?offset=0").json
    assert [m["offset"] for m in as_json["messages"]] == [m.offset for m in messages]


def test_binary_long_poll_wakes_with_the_new_frame(orders):
    orders.store.write("orders", b"old")
    threading.Timer(0.2, orders.store.write, ("orders", b"new")).start()
    started = time.monotonic()
    _, messages = _replay(orders, "offset=1&wait=5", 1)
    # Woken by the publish, not answered empty when the 5 s ran out:
    assert [m.value for m in messages] == [b"new"] and time.monotonic() - started < 4.5
    json_reply = orders.request("GET", "/topics/orders/messages?offset=1&wait=5")
    assert json.loads(json_reply.body)["messages"][0]["value"] == "new"  # caches kept apart


def test_binary_replay_errors_stay_json(orders):
    reply = orders.request("GET", "/topics/orders/messages?offset=99", headers=FRAMES)
    assert reply.status == 416
    assert reply.json["error"] == "offset_out_of_range"
    assert (reply.json["start_offset"], reply.json["end_offset"]) == (0, 0)


def test_damage_on_disk_reaches_the_binary_client_as_corruption(orders):
    orders.store.write_many("orders", [b"a" * 50] * 10)
    # Damage the frame's payload in the page cache behind the store's back: the server
    # checks it, falls back to the library's read, which raises Corruption (500 corrupt_data)
    path = _segment(orders)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    reply = orders.request("GET", "/topics/orders/messages?offset=0", headers=FRAMES)
    assert (reply.status, reply.json["error"]) == (500, "corrupt_data")


def test_a_frame_damaged_on_the_way_raises_corruption_in_the_receiver(orders):
    orders.store.write_many("orders", [b"payload"] * 5)
    reply, _ = _replay(orders, "offset=0", 0)
    damaged = bytearray(reply.body)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(Corruption):
        binary.decode_replay(bytes(damaged), 0, 5)


def test_binary_poll_carries_delivery_counts_and_leases_that_ack(orders):
    orders.store.write_many("orders", [b"a", b"b", b"c"])
    assert orders.request("PUT", "/topics/orders/subscriptions/s", json_body={"ack_wait": 0.1})
    first = orders.request("POST", "/topics/orders/subscriptions/s/poll?max=1", headers=FRAMES)
    assert first.headers["Content-Type"] == binary.CONTENT_TYPE
    assert [d.offset for d in binary.decode_poll(first.body)] == [0]
    time.sleep(0.2)  # its lease expires
    reply = orders.request("POST", "/topics/orders/subscriptions/s/poll?max=10", headers=FRAMES)
    deliveries = binary.decode_poll(reply.body)
    assert [(d.offset, d.delivery_count, d.value) for d in deliveries] == [
        (0, 2, b"a"),
        (1, 1, b"b"),
        (2, 1, b"c"),
    ]
    ack = orders.request(
        "POST",
        "/topics/orders/subscriptions/s/ack",
        json_body={"leases": [d.lease for d in deliveries]},
    )
    assert (ack.status, ack.json["ack_floor"], ack.json["pending"]) == (200, 3, 0)


def test_binary_replay_max_bytes_counts_values_and_keys_as_read_does(orders):
    for i in range(50):
        orders.store.write("orders", b"%03d" % i + b"." * 47)  # one 50-byte value a frame
    for limit in (1, 99, 100, 101, 1000):
        _, messages = _replay(orders, f"offset=1&max_bytes={limit}", 1)
        assert len(messages) == max(1, limit // 50), limit
