"""Bearer tokens: the auth file, 401 for anything but a known token, 403 per permission."""

from __future__ import annotations

import json

import pytest

from logstore_server import Authenticator, AuthFileError, ServerConfig, hash_token

pytest_plugins = ["test_server_support"]

TOKENS = {
    "admin": "admin-token-0123456789",
    "writer": "writer-token-0123456789",
    "reader": "reader-token-0123456789",
    "scraper": "scraper-token-0123456789",
}

AUTH_DOC = {
    "tokens": [
        {"name": "ops", "token": TOKENS["admin"], "admin": True},
        {"name": "writer", "token_hash": hash_token(TOKENS["writer"]), "publish": ["orders.*"]},
        {"name": "reader", "token_hash": hash_token(TOKENS["reader"]), "subscribe": ["orders.eu"]},
        {"name": "scraper", "token": TOKENS["scraper"], "metrics": True},
    ]
}


@pytest.fixture
def secured(make_live):
    server = make_live(ServerConfig(auth=Authenticator.from_document(AUTH_DOC)))
    for topic in ("orders.eu", "orders.us", "payments"):
        assert _as(server, "admin", "PUT", f"/topics/{topic}").status == 201
    return server


def _as(server, who, method, path, body=None, **kw):
    headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
    return server.request(method, path, body, headers=headers, **kw)


def test_health_needs_no_token(secured):
    assert secured.request("GET", "/health").status == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        "Bearer " + TOKENS["admin"][:-1],
        "Bearer " + TOKENS["admin"] + "x",
        "Basic " + TOKENS["admin"],
        "Bearer " + hash_token(TOKENS["writer"]),
        "Bearer \u00e9\u00e9",
    ],
)
def test_missing_wrong_and_unknown_tokens_get_the_same_401(secured, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("GET", "/topics"), ("GET", "/metrics"), ("GET", "/nowhere")]:
        reply = secured.request(method, path, headers=headers)
        assert reply.status == 401
        assert reply.json == {
            "error": "unauthorized",
            "message": "a valid token is required: send Authorization: Bearer <token>",
        }
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="logstore"'


def test_publish_permission_follows_topic_patterns(secured):
    assert _as(secured, "writer", "POST", "/topics/orders.eu/messages", b"x").status == 201
    assert _as(secured, "writer", "POST", "/topics/orders.us/messages", b"x").status == 201
    denied = _as(secured, "writer", "POST", "/topics/payments/messages", b"x")
    assert denied.status == 403 and denied.json["error"] == "forbidden"
    assert _as(secured, "writer", "GET", "/topics/orders.eu/messages").status == 403
    assert _as(secured, "writer", "GET", "/topics/orders.eu/events").status == 403


def test_subscribe_permission_allows_reading_only(secured):
    assert _as(secured, "reader", "GET", "/topics/orders.eu/messages").status == 200
    assert _as(secured, "reader", "GET", "/topics/orders.us/messages").status == 403
    assert _as(secured, "reader", "POST", "/topics/orders.eu/messages", b"x").status == 403
    assert _as(secured, "reader", "GET", "/topics/orders.eu/subscriptions").status == 200
    assert _as(secured, "reader", "GET", "/topics/orders.us/subscriptions").status == 403


def test_only_admin_creates_and_deletes_topics(secured):
    for who in ("writer", "reader", "scraper"):
        assert _as(secured, who, "PUT", "/topics/orders.new").status == 403
        assert _as(secured, who, "DELETE", "/topics/orders.eu").status == 403
    assert _as(secured, "admin", "DELETE", "/topics/payments").status == 204


def test_topic_list_shows_what_the_token_may_use(secured):
    def ids(who):
        return [t["id"] for t in _as(secured, who, "GET", "/topics").json["topics"]]

    assert ids("admin") == ["orders.eu", "orders.us", "payments"]
    assert ids("writer") == ["orders.eu", "orders.us"]
    assert ids("reader") == ["orders.eu"]
    assert ids("scraper") == []
    assert _as(secured, "reader", "GET", "/topics/orders.eu").status == 200
    assert _as(secured, "reader", "GET", "/topics/payments").status == 403


def test_metrics_need_admin_or_the_metrics_permission(secured):
    assert _as(secured, "admin", "GET", "/metrics").status == 200
    assert _as(secured, "scraper", "GET", "/metrics").status == 200
    assert _as(secured, "writer", "GET", "/metrics").status == 403


def test_forbidden_before_not_found_so_names_do_not_leak(secured):
    assert _as(secured, "writer", "POST", "/topics/secret/messages", b"x").status == 403


@pytest.mark.parametrize(
    "doc, complaint",
    [
        ([], "JSON object"),
        ({"tokens": {}}, "JSON object"),
        ({"tokens": ["x"]}, "must be an object"),
        ({"tokens": [{"admin": True}]}, "exactly one"),
        ({"tokens": [{"token": "a", "token_hash": hash_token("a")}]}, "exactly one"),
        ({"tokens": [{"token": ""}]}, "non-empty"),
        ({"tokens": [{"token_hash": "md5:abc"}]}, "sha256"),
        ({"tokens": [{"token_hash": "sha256:xyz"}]}, "sha256"),
        ({"tokens": [{"token": "a", "publish": "orders"}]}, "list of topic patterns"),
        ({"tokens": [{"token": "a", "admin": "yes"}]}, "true or false"),
        ({"tokens": [{"token": "a", "role": "admin"}]}, "unknown fields"),
        ({"tokens": [{"token": "a"}, {"token_hash": hash_token("a")}]}, "same token twice"),
    ],
)
def test_bad_auth_files_are_refused_with_a_reason(doc, complaint):
    with pytest.raises(AuthFileError, match=complaint):
        Authenticator.from_document(doc)


def test_auth_file_is_read_from_disk(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(AUTH_DOC))
    auth = Authenticator.from_file(str(path))
    assert auth.authenticate("Bearer " + TOKENS["writer"]).name == "writer"
    path.write_text("{broken")
    with pytest.raises(AuthFileError, match="cannot read auth file"):
        Authenticator.from_file(str(path))
