"""Topics over HTTP: create / info / list / delete, names, and errors for bad requests."""

from __future__ import annotations

import pytest

pytest_plugins = ["test_server_support"]


def test_create_topic_answers_201_then_200_for_same_settings_and_409_for_different(live):
    created = live.request("PUT", "/topics/orders", json_body={"name": "Orders"})
    assert created.status == 201
    info = created.json
    assert info["id"] == "orders" and info["name"] == "Orders"
    assert info["start_offset"] == 0 and info["end_offset"] == 0
    assert set(info) == {
        "id",
        "name",
        "start_offset",
        "end_offset",
        "size_bytes",
        "segments",
        "created_at",
        "retention_ms",
        "retention_bytes",
        "segment_bytes",
    }
    again = live.request("PUT", "/topics/orders", json_body={"name": "Orders"})
    assert again.status == 200 and again.json["created_at"] == info["created_at"]
    different = live.request("PUT", "/topics/orders", json_body={"retention_ms": 1000})
    assert different.status == 409
    assert different.json["error"] == "topic_exists"


def test_create_topic_without_body_uses_defaults(live):
    reply = live.request("PUT", "/topics/plain")
    assert reply.status == 201
    assert reply.json["name"] == "plain"
    assert reply.json["segment_bytes"] == 64 * 2**20


def test_topic_settings_round_trip(live):
    settings = {"name": "Ünïcode ✓", "retention_ms": 60000, "retention_bytes": 10**9}
    settings["segment_bytes"] = 1 << 20
    info = live.request("PUT", "/topics/t1", json_body=settings).json
    assert {k: info[k] for k in settings} == settings
    assert live.request("GET", "/topics/t1").json == info


def test_list_topics_and_delete(live):
    for name in ("b", "a"):
        live.request("PUT", f"/topics/{name}")
    listed = live.request("GET", "/topics").json["topics"]
    assert [t["id"] for t in listed] == ["a", "b"]
    assert live.request("DELETE", "/topics/a").status == 204
    assert live.request("DELETE", "/topics/a").json["error"] == "topic_not_found"
    assert [t["id"] for t in live.request("GET", "/topics").json["topics"]] == ["b"]


def test_deleted_and_recreated_topic_starts_again_at_offset_zero(live):
    live.request("PUT", "/topics/t")
    live.request("POST", "/topics/t/messages", b"x")
    live.request("DELETE", "/topics/t")
    live.request("PUT", "/topics/t")
    assert live.request("POST", "/topics/t/messages", b"y").json["first_offset"] == 0


def test_unknown_topic_answers_404(live):
    for method, path in [
        ("GET", "/topics/nope"),
        ("DELETE", "/topics/nope"),
        ("GET", "/topics/nope/messages"),
        ("POST", "/topics/nope/messages"),
        ("GET", "/topics/nope/subscriptions"),
    ]:
        reply = live.request(method, path, b"x" if method == "POST" else None)
        assert reply.status == 404, (method, path)
        assert reply.json["error"] == "topic_not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/topics/..",
        "/topics/..%2F..%2Fetc",
        "/topics/a%2Fb",
        "/topics/.hidden",
        "/topics/-dash",
        "/topics/with%20space",
        "/topics/%00",
        "/topics/" + "x" * 250,
        "/topics/caf%C3%A9",
    ],
)
def test_invalid_names_and_path_traversal_answer_400_invalid_name(live, path):
    for method in ("PUT", "GET", "DELETE"):
        reply = live.request(method, path)
        assert reply.status == 400, (method, path, reply.status)
        assert reply.json["error"] == "invalid_name"
    assert live.store.topics() == []


def test_dot_dot_segments_never_reach_a_topic(live):
    live.request("PUT", "/topics/orders")
    for path in ("/topics/orders/../../topics", "/topics/orders/..%2F..%2Fmeta/messages"):
        reply = live.request("GET", path)
        assert reply.status in (400, 404), path
        assert reply.json["error"] in ("invalid_name", "not_found")
    assert [t.id for t in live.store.topics()] == ["orders"]


def test_bad_topic_bodies_answer_400_not_500(live):
    bad = [
        b"{",
        b"[]",
        b'"text"',
        b'{"name": 5}',
        b'{"retention_ms": -1}',
        b'{"retention_ms": "soon"}',
        b'{"retention_bytes": 1.5}',
        b'{"segment_bytes": 10}',
        b'{"segment_bytes": true}',
        b'{"name": "' + b"n" * 300 + b'"}',
        b'{"colour": "red"}',
        b'{"retention_ms": NaN}',
        b"[" * 100000 + b"]" * 100000,
    ]
    for body in bad:
        reply = live.request("PUT", "/topics/t", body, headers={"Content-Type": "application/json"})
        assert reply.status == 400, (body[:40], reply.status, reply.body[:200])
        assert reply.json["error"] == "invalid_request", body[:40]
        assert set(reply.json) == {"error", "message"}
    assert live.store.topics() == []


def test_non_json_topic_body_answers_415(live):
    reply = live.request("PUT", "/topics/t", b"name=x", headers={"Content-Type": "text/plain"})
    assert reply.status == 415
    assert reply.json["error"] == "unsupported_media_type"


def test_unknown_route_404_and_wrong_method_405_are_json(live):
    reply = live.request("GET", "/nothing/here")
    assert reply.status == 404 and reply.json["error"] == "not_found"
    reply = live.request("PATCH", "/topics/x")
    assert reply.status == 405 and reply.json["error"] == "method_not_allowed"
    assert "GET" in reply.headers["Allow"]


def test_health(live):
    reply = live.request("GET", "/health")
    assert reply.status == 200 and reply.json == {"status": "ok"}
