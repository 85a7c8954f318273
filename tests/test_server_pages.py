"""The pages for people over HTTP (no browser): GET /, /docs, /dashboard/{file}, and
GET /whoami, which tells the dashboard what a token may do. tests/test_dashboard_browser.py
runs the pages themselves in Chromium."""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from pathlib import Path

import pytest
from test_server_support import ServeProcess, http_request

from logstore_server import Authenticator, ServerConfig
from logstore_server.pages import ASSETS

pytest_plugins = ["test_server_support"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(REPO, "server", "dashboard")
ADMIN = "pages-admin-token-0123456789"
READER = "pages-reader-token-0123456789"
AUTH_DOC = {
    "tokens": [
        {"name": "ops", "token": ADMIN, "admin": True},
        {"name": "reader", "token": READER, "subscribe": ["orders.*", "audit"]},
    ]
}


@pytest.fixture
def secured(make_live):
    return make_live(ServerConfig(auth=Authenticator.from_document(AUTH_DOC)))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_pages_and_their_files_need_no_token_with_auth_on(secured):
    for path in ("/", "/docs"):
        reply = secured.request("GET", path)
        assert reply.status == 200, path
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'data-auth="on"' in reply.body and b'data-auth="off"' not in reply.body
    for name, (body, content_type) in ASSETS.items():
        reply = secured.request("GET", f"/dashboard/{name}")
        assert reply.status == 200, name
        assert reply.body == body
        assert reply.headers["Content-Type"].split(";")[0] == content_type


def test_whoami_needs_a_token_and_tells_each_token_its_own_grant(secured):
    assert secured.request("GET", "/whoami").status == 401
    assert secured.request("GET", "/whoami", headers=_bearer("wrong")).status == 401
    reader = secured.request("GET", "/whoami", headers=_bearer(READER))
    assert reader.json == {
        "name": "reader",
        "auth": True,
        "admin": False,
        "metrics": False,
        "publish": [],
        "subscribe": ["orders.*", "audit"],
    }
    admin = secured.request("GET", "/whoami", headers=_bearer(ADMIN)).json
    assert (admin["name"], admin["admin"]) == ("ops", True)


def test_whoami_without_an_auth_file_says_anyone_may_do_everything(live):
    assert live.request("GET", "/whoami").json == {
        "name": "anyone",
        "auth": False,
        "admin": True,
        "metrics": True,
        "publish": [],
        "subscribe": [],
    }
    assert b'data-auth="off"' in live.request("GET", "/").body


def test_pages_allow_only_their_own_origin(live):
    for path in ("/", "/docs", "/dashboard/dashboard.js"):
        policy = live.request("GET", path).headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy, path
        assert "http" not in policy and "*" not in policy


def test_every_file_the_pages_load_is_served_and_none_is_named_on_another_origin(live):
    texts = {name: Path(FOLDER, name).read_text(encoding="utf-8") for name in _files()}
    loaded = set()
    for name, text in texts.items():
        loaded |= set(re.findall(r'(?:src|href)="([^"#]+)"', text))
        loaded |= {f"/dashboard/{m}" for m in re.findall(r'from "\./([^"]+)"', text)}
        # The one absolute URL allowed is SVG's namespace: a name, never fetched.
        others = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+", text)) - {"http://www.w3.org"}
        assert not others, f"{name} names another origin: {others}"
    loaded -= {"/", "/docs", "/openapi.json"}
    assert loaded, "the pattern found nothing: the check would prove nothing"
    for path in loaded:
        assert path.startswith("/dashboard/"), path
        assert live.request("GET", path).status == 200, path
    assert {f"/dashboard/{name}" for name in ASSETS} == loaded


def test_the_dashboard_is_at_the_address_logstore_serve_prints(data_dir):
    served = ServeProcess(data_dir)
    try:
        reply = http_request(served.port, "GET", "/")
        assert served.url.startswith("http://127.0.0.1:")
        assert reply.status == 200 and b"<title>logstore</title>" in reply.body
    finally:
        served.stop()


def test_an_unknown_file_is_404(live):
    reply = live.request("GET", "/dashboard/secrets.txt")
    assert reply.status == 404 and reply.json["error"] == "not_found"
    assert live.request("GET", "/dashboard/..%2fapp.py").status == 404


def test_every_dashboard_file_is_package_data_of_the_wheel():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["logstore_server"]
    for name in _files():
        assert any(fnmatch.fnmatch(f"dashboard/{name}", p) for p in patterns), name


def _files() -> list[str]:
    return sorted(os.listdir(FOLDER))
