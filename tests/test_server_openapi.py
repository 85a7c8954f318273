"""The OpenAPI document: valid, the same routes as the app, and true to real answers."""

from __future__ import annotations

import re

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from logstore_server import ROUTES
from logstore_server.openapi import DOCUMENT, OPEN_DOCUMENT

pytest_plugins = ["test_server_support"]

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def test_document_is_a_valid_openapi_3_1_document():
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


def test_document_lists_exactly_the_routes_the_app_serves(live):
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }
    served = {
        (route.method, route.resource.canonical)
        for route in live.app.router.routes()
        if route.method != "HEAD"
    }
    assert documented == served == {(m, p) for m, p, _ in ROUTES}


def test_served_document_is_the_document(live):
    assert live.request("GET", "/openapi.json").json == OPEN_DOCUMENT
    assert (
        "security" not in OPEN_DOCUMENT
        and OPEN_DOCUMENT["paths"].keys() == DOCUMENT["paths"].keys()
    )
    validate(OPEN_DOCUMENT)


def _operation(method: str, path: str) -> dict:
    path = path.split("?", 1)[0]
    for template, item in DOCUMENT["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not documented")


def _response_schema(operation: dict, status: int) -> dict | None:
    responses = operation["responses"]
    assert str(status) in responses, f"status {status} is not documented: {operation['summary']}"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {})
    return content.get("application/json", {}).get("schema")


def _check(live, method, path, body=None, **kw):
    reply = live.request(method, path, body, **kw)
    schema = _response_schema(_operation(method, path), reply.status)
    if schema is not None:
        OAS31Validator({**schema, "components": DOCUMENT["components"]}).validate(reply.json)
    else:
        assert not reply.body or reply.status == 200
    return reply


def test_real_answers_match_the_documented_statuses_and_schemas(live):
    calls = [
        ("GET", "/health", None, {}),
        ("PUT", "/topics/t", None, {"json_body": {"name": "T", "retention_ms": 1000}}),
        ("PUT", "/topics/t", None, {"json_body": {"name": "T", "retention_ms": 1000}}),
        ("PUT", "/topics/t", None, {"json_body": {"name": "other"}}),
        ("PUT", "/topics/bad..name%2F", None, {}),
        ("PUT", "/topics/x", b"plain", {"headers": {"Content-Type": "text/plain"}}),
        ("GET", "/topics", None, {}),
        ("GET", "/topics/t", None, {}),
        ("GET", "/topics/missing", None, {}),
        ("POST", "/topics/t/messages", b"\xff raw", {}),
        ("POST", "/topics/t/messages", None, {"json_body": {"messages": [{"value": "a"}]}}),
        ("POST", "/topics/t/messages", None, {"json_body": {"messages": []}}),
        ("POST", "/topics/t/messages", b"x" * (2**20 + 1), {}),
        ("GET", "/topics/t/messages?offset=0", None, {}),
        ("GET", "/topics/t/messages?offset=99", None, {}),
        ("GET", "/topics/t/messages?offset=2&wait=0.05", None, {}),
        ("GET", "/topics/t/messages?max=-1", None, {}),
        ("GET", "/topics/t/events?offset=99", None, {}),
        ("GET", "/topics/t/subscriptions", None, {}),
        ("GET", "/topics/t/subscriptions/nope", None, {}),
        ("POST", "/topics/t/subscriptions/s/ack", None, {"json_body": {"offsets": "x"}}),
        ("POST", "/topics/t/subscriptions/s/seek", None, {"json_body": {}}),
        ("DELETE", "/topics/missing", None, {}),
        ("DELETE", "/topics/t", None, {}),
    ]
    statuses = [_check(live, m, p, b, **kw).status for m, p, b, kw in calls]
    assert statuses == [
        200, 201, 200, 409, 400, 415, 200, 200, 404, 201, 201, 400, 413,
        200, 416, 200, 400, 416, 200, 404, 400, 400, 404, 204,
    ]  # fmt: skip


def test_subscription_answers_with_lease_tokens_match_the_document(live):
    _check(live, "PUT", "/topics/t")
    _check(live, "POST", "/topics/t/messages", json_body={"messages": [{"value": "a"}] * 3})
    assert _check(live, "PUT", "/topics/t/subscriptions/s").status == 201
    sub = "/topics/t/subscriptions/s"
    leases = [m["lease"] for m in _check(live, "POST", f"{sub}/poll?max=3").json["messages"]]
    bodies = [
        ("ack", {"leases": leases[:1]}),
        ("ack", {"offsets": [1], "leases": [], "up_to": 1}),
        ("nack", {"leases": leases[2:]}),
        ("nack", {"offsets": [2]}),
        ("nack", {"leases": "not a list"}),
    ]
    statuses = [_check(live, "POST", f"{sub}/{a}", json_body=b).status for a, b in bodies]
    assert statuses == [200, 200, 200, 200, 400]
    validate(DOCUMENT)


def test_metrics_answer_matches_the_document(live):
    reply = live.request("GET", "/metrics")
    assert "200" in _operation("GET", "/metrics")["responses"]
    assert reply.headers["Content-Type"].startswith("text/plain")
