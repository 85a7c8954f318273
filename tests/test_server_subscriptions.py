"""Subscriptions over HTTP: manage, leased long-poll delivery, ack / nack / seek, fan-out."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from test_server_support import LiveServer, wait_until

pytest_plugins = ["test_server_support"]

SUB = "/topics/t/subscriptions/billing"


@pytest.fixture
def topic(live):
    live.request("PUT", "/topics/t")
    return live


def _publish(server, *values, topic="t"):
    batch = {"messages": [{"value": v} for v in values]}
    return server.request("POST", f"/topics/{topic}/messages", json_body=batch).json


def _poll(server, query="", sub=SUB, **kw):
    reply = server.request("POST", f"{sub}/poll{query}", **kw)
    assert reply.status == 200, reply.body
    return reply.json["messages"]


def test_subscribe_201_then_200_then_409_for_different_settings(topic):
    created = topic.request("PUT", SUB, json_body={"ack_wait": 10})
    assert created.status == 201
    info = created.json
    assert set(info) == {
        "topic",
        "name",
        "ack_floor",
        "pending",
        "lag",
        "ack_wait",
        "max_deliveries",
        "dead_letter_topic",
        "created_at",
    }
    assert (info["topic"], info["name"], info["ack_wait"]) == ("t", "billing", 10)
    assert topic.request("PUT", SUB, json_body={"ack_wait": 10}).status == 200
    conflict = topic.request("PUT", SUB, json_body={"ack_wait": 5})
    assert conflict.status == 409 and conflict.json["error"] == "subscription_exists"


def test_list_info_and_unsubscribe(topic):
    topic.request("PUT", SUB)
    topic.request("PUT", "/topics/t/subscriptions/audit")
    names = [
        s["name"] for s in topic.request("GET", "/topics/t/subscriptions").json["subscriptions"]
    ]
    assert sorted(names) == ["audit", "billing"]
    assert topic.request("GET", SUB).json["name"] == "billing"
    assert topic.request("DELETE", SUB).status == 204
    missing = topic.request("GET", SUB)
    assert missing.status == 404 and missing.json["error"] == "subscription_not_found"
    assert topic.request("DELETE", SUB).status == 404
    assert topic.request("POST", f"{SUB}/poll").status == 404


def test_poll_leases_messages_with_delivery_count_and_ack_moves_the_floor(topic):
    _publish(topic, "a", "b", "c")
    topic.request("PUT", SUB)
    messages = _poll(topic, "?max=2")
    assert [(m["offset"], m["value"], m["delivery_count"]) for m in messages] == [
        (0, "a", 1),
        (1, "b", 1),
    ]
    assert _poll(topic, "?max=5")[0]["offset"] == 2  # leased ones are not handed out twice
    assert _poll(topic) == []
    info = topic.request("POST", f"{SUB}/ack", json_body={"offsets": [0, 2]}).json
    assert info["ack_floor"] == 1 and info["pending"] == 1 and info["lag"] == 1
    info = topic.request("POST", f"{SUB}/ack", json_body={"up_to": 3}).json
    assert info["ack_floor"] == 3 and info["lag"] == 0


def test_nack_redelivers_at_once_with_a_higher_delivery_count(topic):
    _publish(topic, "a")
    topic.request("PUT", SUB)
    [first] = _poll(topic)
    info = topic.request("POST", f"{SUB}/nack", json_body={"offsets": [first["offset"]]})
    assert info.status == 200
    [again] = _poll(topic)
    assert (again["offset"], again["delivery_count"]) == (0, 2)


def test_poll_answers_carry_a_lease_token_that_ack_accepts(topic):
    _publish(topic, "a", "b", "c")
    topic.request("PUT", SUB)
    messages = _poll(topic)
    leases = [m["lease"] for m in messages]
    assert all(isinstance(t, str) and t for t in leases) and len(set(leases)) == 3
    info = topic.request("POST", f"{SUB}/ack", json_body={"leases": leases[:2]}).json
    assert (info["ack_floor"], info["pending"], info["lag"]) == (2, 1, 1)
    both = {"offsets": [], "leases": [leases[2]]}
    assert topic.request("POST", f"{SUB}/ack", json_body=both).json["ack_floor"] == 3


def test_nack_by_lease_token_redelivers_at_once(topic):
    _publish(topic, "a", "b")
    topic.request("PUT", SUB)
    first, second = _poll(topic)
    body = {"leases": [first["lease"]], "offsets": [second["offset"]]}
    assert topic.request("POST", f"{SUB}/nack", json_body=body).json["pending"] == 0
    again = _poll(topic)
    assert [(m["offset"], m["delivery_count"]) for m in again] == [(0, 2), (1, 2)]
    assert again[0]["lease"] != first["lease"]  # a new lease, a new token


def test_a_token_of_an_expired_lease_acks_its_offset_and_nacks_nothing(topic):
    _publish(topic, "a", "b")
    topic.request("PUT", SUB, json_body={"ack_wait": 0.2})
    old_a, old_b = _poll(topic)
    time.sleep(0.3)  # both leases expire; the messages are leased again
    new_a, new_b = _poll(topic)
    assert (new_a["delivery_count"], new_b["delivery_count"]) == (2, 2)
    info = topic.request("POST", f"{SUB}/nack", json_body={"leases": [old_a["lease"]]}).json
    assert info["pending"] == 2  # the stale token ends nobody's lease
    assert _poll(topic) == []
    info = topic.request("POST", f"{SUB}/ack", json_body={"leases": [old_b["lease"]]}).json
    assert (info["ack_floor"], info["pending"], info["lag"]) == (0, 1, 1)  # offset 1 is done


def test_lost_poll_answer_loses_no_message_its_lease_expires(topic):
    _publish(topic, "precious")
    topic.request("PUT", SUB, json_body={"ack_wait": 0.3})
    _poll(topic)  # the answer is "lost": never acknowledged
    assert _poll(topic) == []
    time.sleep(0.35)
    [again] = _poll(topic)
    assert (again["value"], again["delivery_count"]) == ("precious", 2)


def test_long_poll_on_a_subscription_wakes_on_publish(topic):
    topic.request("PUT", SUB, json_body={"start": "latest"})
    result = []
    thread = threading.Thread(target=lambda: result.append(_poll(topic, "?wait=20", timeout=30)))
    thread.start()
    assert wait_until(lambda: topic.state.long_polls.active == 1)
    published = time.monotonic()
    _publish(topic, "news")
    thread.join(10)
    assert time.monotonic() - published < 1
    assert [m["value"] for m in result[0]] == ["news"]


def test_poll_that_times_out_answers_an_empty_list(topic):
    topic.request("PUT", SUB)
    started = time.monotonic()
    assert _poll(topic, "?wait=0.2") == []
    assert 0.19 < time.monotonic() - started < 3


def test_client_gone_during_a_subscription_long_poll_loses_nothing(topic):
    topic.request("PUT", SUB)
    sock = socket.create_connection(("127.0.0.1", topic.port))
    sock.sendall(
        f"POST {SUB}/poll?wait=60 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert wait_until(lambda: topic.state.long_polls.active == 1)
    sock.close()
    assert wait_until(lambda: topic.state.long_polls.active == 0, timeout=2)
    _publish(topic, "kept")
    [message] = _poll(topic)
    assert message["value"] == "kept"


def test_every_subscription_gets_every_message_fan_out(topic):
    for name in ("billing", "shipping", "audit"):
        topic.request("PUT", f"/topics/t/subscriptions/{name}")
    _publish(topic, "one", "two")
    for name in ("billing", "shipping", "audit"):
        got = _poll(topic, sub=f"/topics/t/subscriptions/{name}")
        assert [m["value"] for m in got] == ["one", "two"]


def test_competing_consumers_never_share_a_lease(topic):
    topic.request("PUT", SUB)
    _publish(topic, *[str(i) for i in range(200)])
    seen: list[int] = []
    lock = threading.Lock()

    def consume():
        while True:
            batch = _poll(topic, "?max=7")
            if not batch:
                return
            with lock:
                seen.extend(m["offset"] for m in batch)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seen) == list(range(200))


def test_seek_by_offset_timestamp_and_position(topic):
    _publish(topic, "a", "b", "c")
    topic.request("PUT", SUB)
    _poll(topic)
    topic.request("POST", f"{SUB}/ack", json_body={"up_to": 3})
    info = topic.request("POST", f"{SUB}/seek", json_body={"offset": 1}).json
    assert info["ack_floor"] == 1
    assert [m["value"] for m in _poll(topic)] == ["b", "c"]
    topic.request("POST", f"{SUB}/seek", json_body={"position": "earliest"})
    assert [m["offset"] for m in _poll(topic)] == [0, 1, 2]
    topic.request("POST", f"{SUB}/seek", json_body={"position": "latest"})
    assert _poll(topic) == []
    topic.request("POST", f"{SUB}/seek", json_body={"timestamp": 0})
    assert len(_poll(topic)) == 3


def test_subscription_start_positions(topic):
    _publish(topic, "a", "b", "c")
    topic.request("PUT", "/topics/t/subscriptions/s1", json_body={"start": "latest"})
    topic.request("PUT", "/topics/t/subscriptions/s2", json_body={"start": 2})
    topic.request("PUT", "/topics/t/subscriptions/s3", json_body={"start": "2000-01-01T00:00:00"})
    assert _poll(topic, sub="/topics/t/subscriptions/s1") == []
    assert [m["offset"] for m in _poll(topic, sub="/topics/t/subscriptions/s2")] == [2]
    assert len(_poll(topic, sub="/topics/t/subscriptions/s3")) == 3


@pytest.mark.parametrize(
    "path, body",
    [
        (SUB, {"ack_wait": 0}),
        (SUB, {"ack_wait": "long"}),
        (SUB, {"ack_wait": True}),
        (SUB, {"max_deliveries": 0}),
        (SUB, {"start": "yesterday"}),
        (SUB, {"start": -1}),
        (SUB, {"start": 1.5}),
        (SUB, {"dead_letter_topic": "../x", "max_deliveries": 3}),
        (SUB, {"dead_letter_topic": "dlq"}),
        (SUB, {"colour": 1}),
        (f"{SUB}/ack", {}),
        (f"{SUB}/ack", {"offsets": "1"}),
        (f"{SUB}/ack", {"offsets": [-1]}),
        (f"{SUB}/ack", {"offsets": [1.5]}),
        (f"{SUB}/ack", {"up_to": "3"}),
        (f"{SUB}/nack", {}),
        (f"{SUB}/nack", {"up_to": 1}),
        (f"{SUB}/ack", {"leases": "0-1"}),
        (f"{SUB}/ack", {"leases": [7]}),
        (f"{SUB}/ack", {"leases": [""]}),
        (f"{SUB}/ack", {"leases": ["not-a-token"]}),
        (f"{SUB}/nack", {"leases": ["x" * 300]}),
        (f"{SUB}/seek", {}),
        (f"{SUB}/seek", {"offset": 1, "position": "latest"}),
        (f"{SUB}/seek", {"position": "middle"}),
        (f"{SUB}/seek", {"timestamp": -5}),
    ],
)
def test_bad_subscription_requests_answer_400(topic, path, body):
    if path != SUB:
        topic.request("PUT", SUB)
    topic.request("PUT", "/topics/dlq")
    reply = topic.request("PUT" if path == SUB else "POST", path, json_body=body)
    assert reply.status in (400, 404), reply.body
    assert reply.status == 400 and reply.json["error"] in ("invalid_request", "invalid_name")


def test_offsets_beyond_the_end_answer_416(topic):
    _publish(topic, "a")
    topic.request("PUT", SUB)
    for path, body in [
        (f"{SUB}/ack", {"up_to": 5}),
        (f"{SUB}/ack", {"offsets": [9]}),
        (f"{SUB}/seek", {"offset": 5}),
    ]:
        reply = topic.request("POST", path, json_body=body)
        assert reply.status == 416, (path, reply.body)
        assert reply.json["end_offset"] == 1


def test_dead_letters_after_max_deliveries(topic):
    topic.request("PUT", "/topics/dlq")
    settings = {"ack_wait": 30, "max_deliveries": 2, "dead_letter_topic": "dlq"}
    assert topic.request("PUT", SUB, json_body=settings).status == 201
    _publish(topic, "poison")
    for _ in range(2):
        [m] = _poll(topic)
        topic.request("POST", f"{SUB}/nack", json_body={"offsets": [m["offset"]]})
    assert _poll(topic) == []
    [dead] = topic.request("GET", "/topics/dlq/messages").json["messages"]
    assert dead["value"] == "poison"
    assert dead["headers"]["x-logstore-source-topic"] == "t"


def test_metrics_show_subscription_lag(topic):
    topic.request("PUT", SUB)
    _publish(topic, "a", "b")
    text = topic.request("GET", "/metrics").body.decode()
    assert 'logstore_subscription_lag{topic="t",subscription="billing"} 2' in text
    _poll(topic)
    text = topic.request("GET", "/metrics").body.decode()
    assert 'logstore_delivered_messages_total{topic="t",via="poll"} 2' in text


def test_shutdown_answers_waiting_subscription_polls(store):
    server = LiveServer(store)
    server.request("PUT", "/topics/t")
    server.request("PUT", SUB)
    result = []
    thread = threading.Thread(target=lambda: result.append(_poll(server, "?wait=60", timeout=30)))
    thread.start()
    assert wait_until(lambda: server.state.long_polls.active == 1)
    started = time.monotonic()
    server.stop()
    thread.join(10)
    assert result == [[]] and time.monotonic() - started < 5
