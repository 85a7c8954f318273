"""Bad input over HTTP answers a clear 4xx and changes nothing (issue #14, items 1-3, 9, 10).

Each test is named after the item it keeps fixed; all run against a real server on a
127.0.0.1 port (`LiveServer`), most with raw bytes so that the client cannot clean them up.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from pathlib import Path

import pytest
from test_server_support import raw_exchange

from logstore import InvalidArgument
from logstore.engine.base import TopicSettings
from logstore_server import Authenticator, ServerConfig

pytest_plugins = ["test_server_support"]

JSON = {"Content-Type": "application/json"}


def _raw(live, method: str, target: bytes, body: bytes = b"", headers: bytes = b"") -> tuple:
    """(status, JSON body or raw bytes, head) of one request sent as bytes."""
    request = (
        method.encode()
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        + b"Content-Length: %d\r\n" % len(body)
        + headers
        + b"\r\n"
        + body
    )
    answer = raw_exchange(live.port, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(payload), head
    except ValueError:
        return status, payload, head


# ------------------------------------------------------------ item 1: lone surrogates


def test_item1_topic_name_with_a_lone_surrogate_is_refused_and_nothing_created(live):
    status, body, _ = _raw(
        live, "PUT", b"/topics/t", b'{"name": "a\\ud800"}', b"Content-Type: application/json\r\n"
    )
    assert status == 400 and body["error"] == "invalid_request"
    assert body["message"].startswith("name ")
    assert live.store.topics() == []
    assert live.request("GET", "/topics").status == 200


def test_item1_library_refuses_a_topic_name_utf8_cannot_encode(store):
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        store.create_topic("t", name="\ud800")
    assert store.topics() == []


def test_item1_a_stored_name_with_a_lone_surrogate_still_lists(store, make_live):
    """A store written before names were checked: its listing answers 200 with the name as
    a JSON escape (what it is), not 500. The engine is called directly, as old code did."""
    store._engine.create_topic("t", TopicSettings("bad \ud800", None, None, 4096), exist_ok=False)
    live = make_live()
    for path in ("/topics", "/topics/t"):
        reply = live.request("GET", path)
        assert reply.status == 200
        assert b"bad \\ud800" in reply.body
    assert json.loads(live.request("GET", "/topics/t").body)["name"] == "bad \ud800"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/topics/t/messages", b'{"messages":[{"value":"a","key":"\\udc00"}]}', "key"),
        ("/topics/t/messages", b'{"messages":[{"value":"\\ud800"}]}', "value"),
        (
            "/topics/t/messages",
            b'{"messages":[{"value":"a","headers":{"\\ud800":"x"}}]}',
            "headers",
        ),
        (
            "/topics/t/messages",
            b'{"messages":[{"value":"a","headers":{"h":"\\ud800"}}]}',
            "headers",
        ),
        ("/topics/t/subscriptions/s", b'{"start":"\\ud800"}', "start"),
        ("/topics/t/subscriptions/s", b'{"dead_letter_topic":"\\ud800"}', "dead_letter_topic"),
    ],
)
def test_item1_lone_surrogates_in_bodies_are_refused_naming_the_field(live, path, body, field):
    live.request("PUT", "/topics/t")
    method = "POST" if path.endswith("messages") else "PUT"
    status, answer, _ = _raw(
        live, method, path.encode(), body, b"Content-Type: application/json\r\n"
    )
    assert status == 400 and answer["error"] in ("invalid_request", "invalid_name")
    assert field in answer["message"]
    assert live.store.topic("t").end_offset == 0
    assert live.store.subscriptions("t") == []


def test_item1_idempotency_key_that_is_not_utf8_is_refused(live):
    live.request("PUT", "/topics/t")
    status, answer, _ = _raw(
        live, "POST", b"/topics/t/messages", b"x", b"Idempotency-Key: \xff\r\n"
    )
    assert status == 400 and "Idempotency-Key" in answer["message"]
    assert live.store.topic("t").end_offset == 0


# ------------------------------------------------------- item 2: Content-Encoding


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not compressed at all"),
        ("deflate", b"not compressed at all"),
        ("gzip", gzip.compress(b"hello")),
        ("deflate", zlib.compress(b"hello")),
        ("x-unknown", b"hello"),
    ],
)
def test_item2_compressed_request_bodies_are_refused_with_415_and_no_traceback(
    live, caplog, encoding, body
):
    live.request("PUT", "/topics/t")
    with caplog.at_level(logging.DEBUG):
        status, answer, _ = _raw(
            live,
            "POST",
            b"/topics/t/messages",
            body,
            b"Content-Encoding: " + encoding.encode() + b"\r\n",
        )
        assert live.request("GET", "/health").status == 200
    assert status == 415 and answer["error"] == "unsupported_media_type"
    assert encoding in answer["message"]
    assert live.store.topic("t").end_offset == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_item2_identity_encoding_is_accepted(live):
    live.request("PUT", "/topics/t")
    reply = live.request(
        "POST", "/topics/t/messages", b"x", headers={"Content-Encoding": "identity"}
    )
    assert reply.status == 201


# ------------------------------------------------------ item 3: trailing newline


@pytest.mark.parametrize(
    "path", ["/topics/abc%0A", "/topics/abc%0D%0A", "/topics/t/subscriptions/s%0A"]
)
def test_item3_names_with_a_trailing_newline_are_refused(live, path):
    live.request("PUT", "/topics/t")
    reply = live.request("PUT", path)
    assert reply.status == 400 and reply.json["error"] == "invalid_name"
    assert [t.id for t in live.store.topics()] == ["t"]
    assert live.store.subscriptions("t") == []
    assert not any("\n" in p.name or "\r" in p.name for p in Path(live.store.path).rglob("*"))


# ------------------------------------------------ item 9: the server's side of the document


@pytest.mark.parametrize("wait", ["1_0", "inf", "nan", "-1", "1e", "0x1", "%201", "1.", ".5"])
def test_item9_wait_is_a_json_number_or_refused(live, wait):
    live.request("PUT", "/topics/t")
    reply = live.request("GET", f"/topics/t/messages?offset=0&wait={wait}")
    assert reply.status == 400 and "wait" in reply.json["message"]


@pytest.mark.parametrize("wait", ["0", "0.01", "1e-2", "1E-2", "0.0"])
def test_item9_wait_takes_what_json_calls_a_number(live, wait):
    live.request("PUT", "/topics/t")
    assert live.request("GET", f"/topics/t/messages?offset=0&wait={wait}").status == 200


@pytest.mark.parametrize("value", ["1_0", "%2B1", "1.0", "%D9%A1"])  # %D9%A1: an Arabic 1
def test_item9_integer_query_parameters_are_digits_only(live, value):
    live.request("PUT", "/topics/t")
    for param in ("offset", "max", "max_bytes"):
        reply = live.request("GET", f"/topics/t/messages?{param}={value}")
        assert reply.status == 400 and param in reply.json["message"]


def test_item9_a_max_of_any_size_is_lowered_to_the_cap(live):
    live.request("PUT", "/topics/t")
    live.request("POST", "/topics/t/messages", json_body={"messages": [{"value": "a"}] * 3})
    for digits in ("9" * 20, "1" + "0" * 5000):
        reply = live.request("GET", f"/topics/t/messages?max={digits}")
        assert reply.status == 200 and len(reply.json["messages"]) == 3


def test_item9_offsets_above_the_documented_maximum_are_refused(live):
    live.request("PUT", "/topics/t")
    reply = live.request("GET", f"/topics/t/messages?offset={2**63}")
    assert reply.status == 400 and "at most" in reply.json["message"]
    assert live.request("GET", f"/topics/t/messages?offset={2**63 - 1}").status == 416


def test_item9_key_with_percent_escapes_that_are_not_utf8_is_refused(live):
    live.request("PUT", "/topics/t")
    for key in (b"%FF", b"%ED%A0%80", b"a%C3"):
        status, answer, _ = _raw(live, "POST", b"/topics/t/messages?key=" + key, b"x")
        assert status == 400 and "key" in answer["message"]
    assert live.store.topic("t").end_offset == 0
    assert live.request("POST", "/topics/t/messages?key=%C3%A9+x", b"v").status == 201
    assert live.store.read("t", 0)[0].key == "é x".encode()


def test_item9_integer_valued_json_numbers_are_integers_as_the_document_says(live):
    live.request("PUT", "/topics/t", json_body={"segment_bytes": 4096.0})
    assert live.store.topic("t").segment_bytes == 4096
    live.request("POST", "/topics/t/messages", json_body={"messages": [{"value": "a"}] * 3})
    live.request("PUT", "/topics/t/subscriptions/s")
    reply = live.request("POST", "/topics/t/subscriptions/s/ack", json_body={"up_to": 2.0})
    assert reply.status == 200 and reply.json["ack_floor"] == 2
    reply = live.request("POST", "/topics/t/subscriptions/s/ack", json_body={"up_to": 2.5})
    assert reply.status == 400
    # exact: 2**53 + 1 as a float literal would round to 2**53
    reply = live.request(
        "POST", "/topics/t/subscriptions/s/ack", b'{"up_to": 9007199254740993.0}', headers=JSON
    )
    assert reply.status == 416 and "9007199254740993" in reply.json["message"]


def test_item9_publish_of_an_empty_message_names_message_0(live):
    live.request("PUT", "/topics/t")
    reply = live.request("POST", "/topics/t/messages", json_body={"messages": [{}]})
    assert reply.status == 400 and "message 0" in reply.json["message"]
    assert live.store.topic("t").end_offset == 0


@pytest.mark.parametrize(
    "message",
    [
        {"value": None},
        {"value_b64": None},
        {"value": "a", "key": None, "key_b64": "YQ=="},
        {"value": "a", "value_b64": "YQ=="},
    ],
)
def test_item9_null_is_not_a_value_and_key_forms_exclude_each_other(live, message):
    live.request("PUT", "/topics/t")
    reply = live.request("POST", "/topics/t/messages", json_body={"messages": [message]})
    assert reply.status == 400 and "message 0" in reply.json["message"]


def test_item9_null_fields_of_ack_nack_seek_are_refused(live):
    live.request("PUT", "/topics/t")
    live.request("PUT", "/topics/t/subscriptions/s")
    for action, body in [
        ("ack", {"offsets": None, "up_to": 0}),
        ("nack", {"leases": None, "offsets": []}),
        ("seek", {"offset": None}),
    ]:
        reply = live.request("POST", f"/topics/t/subscriptions/s/{action}", json_body=body)
        assert reply.status == 400 and "null" in reply.json["message"], action


def test_item9_lease_tokens_are_checked_before_the_library_sees_them(live):
    live.request("PUT", "/topics/t")
    live.request("PUT", "/topics/t/subscriptions/s")
    for token in ["\u00b2-1", "1-\u0661", "x", "1-"]:
        reply = live.request("POST", "/topics/t/subscriptions/s/ack", json_body={"leases": [token]})
        assert reply.status == 400, token


def test_item9_subscription_start_takes_rfc3339_lower_case_t_and_z(live):
    live.request("PUT", "/topics/t")
    body = {"start": "2020-01-01t00:00:00z"}
    assert live.request("PUT", "/topics/t/subscriptions/s", json_body=body).status == 201


def test_item9_an_empty_display_name_is_accepted(live):
    reply = live.request("PUT", "/topics/t", json_body={"name": ""})
    assert reply.status == 201 and reply.json["name"] == ""


# ---------------------------------------------------------------------- item 10


METRICS_DOC = {
    "tokens": [
        {"name": "ops", "token": "admin-token-0123456789", "admin": True},
        {"name": "scraper", "token": "scraper-token-0123456789", "metrics": True},
        {
            "name": "eu-scraper",
            "token": "eu-scraper-token-0123456789",
            "metrics": True,
            "subscribe": ["orders.eu"],
        },
    ]
}


def test_item10_metrics_show_only_the_topics_the_token_may_see(make_live):
    live = make_live(ServerConfig(auth=Authenticator.from_document(METRICS_DOC)))
    admin = {"Authorization": "Bearer admin-token-0123456789"}
    for topic in ("orders.eu", "secret-payroll"):
        assert live.request("PUT", f"/topics/{topic}", headers=admin).status == 201
        live.request("POST", f"/topics/{topic}/messages", b"x", headers=admin)
        live.request("PUT", f"/topics/{topic}/subscriptions/hidden-sub", headers=admin)

    def scrape(token: str) -> str:
        reply = live.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200
        return reply.body.decode()

    everything = scrape("admin-token-0123456789")
    assert "secret-payroll" in everything and "orders.eu" in everything
    bare = scrape("scraper-token-0123456789")
    assert "secret-payroll" not in bare and "orders.eu" not in bare and "hidden-sub" not in bare
    assert "logstore_long_polls_waiting" in bare  # server-wide series stay
    eu = scrape("eu-scraper-token-0123456789")
    assert "orders.eu" in eu and "secret-payroll" not in eu


def test_item10_server_header_names_no_versions(live):
    for method, path in [("GET", "/health"), ("GET", "/nowhere"), ("PUT", "/topics/bad%20name")]:
        reply = live.request(method, path)
        assert reply.headers["Server"] == "logstore", (method, path)


@pytest.mark.parametrize(
    "path", ["/health", "/topics", "/topics/t", "/topics/t/messages?offset=0", "/openapi.json"]
)
def test_item10_head_answers_like_get_without_a_body(live, path):
    live.request("PUT", "/topics/t")
    live.request("POST", "/topics/t/messages", b"x")
    get = live.request("GET", path)
    status, payload, head = _raw(live, "HEAD", path.encode())
    assert status == get.status == 200
    assert payload == b""
    assert b"content-type: " + get.headers["Content-Type"].encode() in head.lower()


def test_item10_head_of_an_event_stream_answers_its_headers_and_ends(live):
    live.request("PUT", "/topics/t")
    status, payload, head = _raw(live, "HEAD", b"/topics/t/events?offset=0")
    assert (status, payload) == (200, b"")
    assert b"content-type: text/event-stream" in head.lower()
    assert live.state.sse_streams.active == 0


def test_item10_head_of_a_missing_topic_answers_404(live):
    status, payload, _ = _raw(live, "HEAD", b"/topics/nope")
    assert status == 404 and payload == b""


def test_item2_a_compressed_body_without_a_token_is_refused_before_auth_and_logs_nothing(
    make_live, caplog
):
    live = make_live(ServerConfig(auth=Authenticator.from_document(METRICS_DOC)))
    with caplog.at_level(logging.DEBUG):
        status, answer, _ = _raw(
            live, "POST", b"/topics/t/messages", b"not gzip", b"Content-Encoding: gzip\r\n"
        )
        assert live.request("GET", "/health").status == 200
    assert status == 415 and answer["error"] == "unsupported_media_type"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
