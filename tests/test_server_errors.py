"""Failures answer JSON with the SPEC's codes, and never leak a path or a traceback."""

from __future__ import annotations

import re

from test_server_support import LiveServer, raw_exchange

from logstore_server import make_app

pytest_plugins = ["test_server_support"]


def test_corrupt_data_answers_500_corrupt_data_without_a_file_path(live, data_dir):
    live.request("PUT", "/topics/t")
    live.request("POST", "/topics/t/messages", b"A" * 100)
    live.request("POST", "/topics/t/messages", b"B" * 100)
    [path] = data_dir.glob("topics/*/*.log")
    data = bytearray(path.read_bytes())
    data[data.index(b"B" * 100) + 50] ^= 0xFF  # flip bits inside the second message
    path.write_bytes(bytes(data))
    reply = live.request("GET", "/topics/t/messages?offset=1")
    assert reply.status == 500
    assert reply.json["error"] == "corrupt_data"
    assert "offset 1" in reply.json["message"] and "'t'" in reply.json["message"]
    assert str(data_dir) not in reply.body.decode() and ".log" not in reply.body.decode()
    assert live.request("GET", "/topics/t/messages?offset=0&max=1").status == 200


def test_unexpected_exceptions_answer_a_bare_500(store, caplog):
    app = make_app(store)

    async def broken(request):
        raise RuntimeError(f"secret detail at {store.path}")

    app.router.add_get("/broken", broken)
    server = LiveServer(store, app=app)
    try:
        reply = server.request("GET", "/broken")
    finally:
        server.stop()
    assert reply.status == 500
    assert reply.json == {
        "error": "internal_error",
        "message": "internal error; the server log has the details",
    }
    assert "secret detail" in caplog.text  # logged for the operator, not sent
    assert {r.name for r in caplog.records if r.exc_info} == {"logstore_server"}


def test_requests_during_shutdown_answer_503_and_health_says_so(live):
    live.request("PUT", "/topics/t")
    live.state.begin_shutdown()
    health = live.request("GET", "/health")
    assert health.status == 503 and health.json["error"] == "shutting_down"
    reply = live.request("GET", "/topics/t")
    assert reply.status == 503 and reply.json["error"] == "shutting_down"
    assert "Retry-After" in reply.headers


def test_error_bodies_have_exactly_error_and_message(live):
    for method, path, body in [
        ("GET", "/topics/nope", None),
        ("PUT", "/topics/..", None),
        ("GET", "/nope", None),
        ("POST", "/topics/nope/messages", b"x"),
    ]:
        reply = live.request(method, path, body)
        assert set(reply.json) == {"error", "message"}
        assert reply.headers["Content-Type"].startswith("application/json")
        assert "Traceback" not in reply.body.decode()


def test_malformed_http_is_refused_and_the_server_keeps_serving(live):
    for raw in [
        b"GARBAGE\r\n\r\n",
        b"GET /topics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /topics HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ]:
        answer = raw_exchange(live.port, raw)
        # Refused by aiohttp's HTTP parser (plain text, before any handler), not a 500.
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
        assert b"Traceback" not in answer
    assert live.request("GET", "/health").status == 200
