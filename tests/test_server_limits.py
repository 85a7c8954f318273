"""Limits that hold under abuse (SPEC §6, issue #14 items 4-8): page budgets, the tail cache,
request bodies in transit, event streams and the storage pool, connections, descriptors,
malformed requests, TLS. Each test drives a real server on a loopback port; the abuse suite
(test_abuse.py) measures memory and latency under load."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from test_server_support import ServeProcess, http_request, wait_until

from logstore_server import Limits
from logstore_server.cli import _LIMIT_FLAGS, build_parser
from logstore_server.limits import fit_to_descriptors
from logstore_server.serve import warn_if_cleartext

pytest_plugins = ["test_server_support"]

CONTROL = bytes(range(32)) * 2048  # 64 KiB that JSON escapes to about 6 times its size


def _publish_raw(server, topic: str, values: list[bytes]) -> None:
    for value in values:
        reply = server.request("POST", f"/topics/{topic}/messages", value)
        assert reply.status == 201, reply.body


def _open(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock


# ------------------------------------------------------------------ item 4: page budgets


def test_replay_without_max_bytes_answers_at_most_a_page_of_escaped_json(make_live):
    live = make_live(page_bytes=1_000_000)
    live.request("PUT", "/topics/t")
    _publish_raw(live, "t", [CONTROL] * 40)  # 2.5 MiB stored, about 15 MiB as JSON
    reply = live.request("GET", "/topics/t/messages?offset=0&max=10000")
    page = reply.json
    one = len(json.dumps(page["messages"][0], separators=(",", ":")))
    assert len(reply.body) <= 1_000_000 + one
    assert 0 < len(page["messages"]) < 40
    assert page["next_offset"] == len(page["messages"])  # the client asks on from there


def test_replay_sends_one_message_larger_than_the_page_alone(make_live):
    live = make_live(page_bytes=1000)
    live.request("PUT", "/topics/t")
    _publish_raw(live, "t", [b"x" * 5000, b"y"])
    page = live.request("GET", "/topics/t/messages?offset=0").json
    assert [len(m["value"]) for m in page["messages"]] == [5000]
    page = live.request("GET", "/topics/t/messages?offset=0&max_bytes=100000").json
    assert len(page["messages"]) == 1  # max_bytes may lower the page, never raise it


def test_poll_without_max_bytes_leases_at_most_a_sixth_of_a_page(make_live):
    live = make_live(page_bytes=600_000)
    live.request("PUT", "/topics/t")
    _publish_raw(live, "t", [CONTROL] * 10)
    live.request("PUT", "/topics/t/subscriptions/s")
    reply = live.request("POST", "/topics/t/subscriptions/s/poll?max=100")
    assert len(reply.json["messages"]) == 1  # 100,000 stored bytes: one 64 KiB value fits
    assert len(reply.body) < 600_000
    info = live.request("GET", "/topics/t/subscriptions/s").json
    assert info["pending"] == 1  # the rest stays deliverable, not leased


def test_event_stream_sends_count_encoded_bytes(make_live):
    live = make_live(sse_chunk_bytes=200_000)
    live.request("PUT", "/topics/t")
    _publish_raw(live, "t", [CONTROL] * 6)  # three fit 200,000 stored bytes; one as JSON
    request = b"GET /topics/t/events?offset=0 HTTP/1.1\r\nHost: x\r\n\r\n"
    with _open(live.port, request) as stream:
        received = b""
        while received.count(b"\nid: ") < 6:
            received += stream.recv(1 << 20)
    event = len(b"id: 0\ndata: \n\n") + len(
        json.dumps({"value": CONTROL.decode()}, separators=(",", ":"))
    )
    sizes = [int(line, 16) for line in _chunk_sizes(received)]
    assert max(sizes) < event + 200  # one event per send: it alone is over the budget


def _chunk_sizes(data: bytes) -> list[bytes]:
    """The chunk-size lines of a chunked HTTP body (after the head)."""
    body = data.split(b"\r\n\r\n", 1)[1]
    sizes = []
    while body:
        line, _, rest = body.partition(b"\r\n")
        if not line:
            break
        sizes.append(line)
        size = int(line, 16)
        body = rest[size + 2 :]
        if len(rest) < size + 2:
            break
    return sizes


# ------------------------------------------------------------------ item 5: the tail cache


def test_tail_cache_of_woken_long_polls_is_bounded_in_bytes_and_emptied(make_live):
    live = make_live(tail_cache_bytes=600_000)
    live.request("PUT", "/topics/t")
    value = b"v" * 200_000
    for round_ in range(8):
        polls = [
            threading.Thread(
                target=http_request,
                args=(live.port, "GET", f"/topics/t/messages?offset={round_}&wait=10"),
            )
            for _ in range(3)
        ]
        for t in polls:
            t.start()
        assert wait_until(lambda: live.state.long_polls.active == 3)
        _publish_raw(live, "t", [value])
        for t in polls:
            t.join(10)
        assert live.state.tail_cache_bytes <= 600_000
    # Every poll is answered: a second later nothing is kept for them.
    assert wait_until(lambda: live.state.tail_cache_bytes == 0, timeout=5)


# ---------------------------------------------------------- item 6: request bodies in transit


def test_request_bodies_in_transit_over_the_budget_answer_503(make_live):
    live = make_live(max_body_bytes_in_transit=1_000_000, body_timeout_seconds=30)
    live.request("PUT", "/topics/t")
    head = b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n"
    stalled = _open(live.port, head + b"x" * 1000)
    try:
        assert wait_until(lambda: live.state.bodies_in_transit.active == 600_000)
        with _open(live.port, head + b"x" * 1000) as second:
            answer = second.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer and b'"overloaded"' in answer
        # A small body that arrives with its headers costs nothing of the budget.
        assert live.request("POST", "/topics/t/messages", b"small").status == 201
        # Nor one that arrives after them, if small: a publish is never refused for others'
        # stalled bodies (the budget was full: a 500,000-byte body is refused meanwhile).
        late = b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
        with _open(live.port, late) as small:
            time.sleep(0.2)  # the handler is waiting for the body by now
            small.sendall(b"later")
            assert small.recv(65536).startswith(b"HTTP/1.1 201")
    finally:
        stalled.close()
    assert wait_until(lambda: live.state.bodies_in_transit.active == 0)
    assert live.request("POST", "/topics/t/messages", b"z" * 600_000).status == 201


# ------------------------------------------------- item 7: event streams and the storage pool


def test_event_streams_from_offset_zero_take_at_most_their_share_of_the_storage_pool(make_live):
    live = make_live(io_threads=8, sse_read_threads=2, sse_chunk_bytes=4096)
    live.request("PUT", "/topics/t")
    live.store.write_many("t", [b"m" * 1000] * 3000)
    store = live.state.store
    original, running, most = store.read, [0], [0]
    lock = threading.Lock()

    def counting_read(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.002)  # a disk read that takes a while
            return original(*args)
        finally:
            with lock:
                running[0] -= 1

    store.read = counting_read
    streams = []
    try:
        request = b"GET /topics/t/events?offset=0 HTTP/1.1\r\nHost: x\r\n\r\n"
        streams = [_open(live.port, request) for _ in range(20)]
        for s in streams:
            s.setblocking(False)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for s in streams:
                with contextlib.suppress(BlockingIOError):
                    s.recv(1 << 20)
        health = live.request("GET", "/topics/t")  # the pool still answers others
        assert health.status == 200
    finally:
        store.read = original
        for s in streams:
            s.close()
    assert most[0] <= 2


# ------------------------------------------- item 8: connections, descriptors, malformed input


def test_connections_over_the_cap_are_answered_503_and_closed(make_live):
    live = make_live(max_connections=5)
    idle = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(5)]
    try:
        assert wait_until(lambda: len(live.runner.server.connections) == 5)
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"overloaded"' in answer and b"Retry-After: 1" in answer
    finally:
        idle.pop().close()
    assert wait_until(lambda: len(live.runner.server.connections) == 4)
    assert live.request("GET", "/health").status == 200
    for s in idle:
        s.close()


def test_malformed_requests_log_one_warning_line_and_no_traceback(data_dir):
    served = ServeProcess(data_dir)
    try:
        for bad in (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
            b"POST /topics/t/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ) * 10:
            with _open(served.port, bad) as s:
                s.settimeout(5)
                assert s.recv(65536).split(b" ")[1].startswith(b"4")
    finally:
        code, log = served.stop(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in log and " ERROR " not in log
    assert log.count("malformed HTTP request") == 1  # rate-limited: once per 10 s


def _limit_descriptors(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def test_caps_follow_the_descriptor_limit_raised_to_the_hard_limit(data_dir):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip("needs a hard descriptor limit of at least 2048")
    served = ServeProcess(data_dir, preexec_fn=_limit_descriptors(1024, 2048))
    try:
        text = "".join(served.lines)
    finally:
        served.stop()
    assert "1536 connections, 1152 long polls, 384 event streams (descriptor limit 2048)" in text


def test_caps_set_by_flag_or_environment_are_kept_whatever_the_descriptor_limit(data_dir):
    served = ServeProcess(
        data_dir,
        "--max-long-polls",
        "5000",
        env={"LOGSTORE_MAX_CONNECTIONS": "7000"},
        preexec_fn=_limit_descriptors(1024, 1024),
    )
    try:
        text = "".join(served.lines)
    finally:
        served.stop()
    assert "7000 connections, 5000 long polls, 128 event streams" in text


def test_fit_to_descriptors_leaves_headroom_and_never_raises_a_cap():
    fitted = fit_to_descriptors(Limits(), 1024, set())
    assert (fitted.max_connections, fitted.max_long_polls, fitted.max_sse_streams) == (
        512,
        384,
        128,
    )
    roomy = fit_to_descriptors(Limits(), 1_048_576, set())
    assert (roomy.max_connections, roomy.max_long_polls, roomy.max_sse_streams) == (
        10_000,
        10_000,
        1_000,
    )


def test_serve_help_lists_every_limit_with_its_flag_and_environment_variable():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    text = serve.format_help()
    for field in Limits.__dataclass_fields__:
        if field == "max_batch_messages" or field in dict(_LIMIT_FLAGS):
            assert "--" + field.replace("_", "-") in text
            assert "LOGSTORE_" + field.upper() in text.replace("\n", "").replace(" ", "")
    assert set(dict(_LIMIT_FLAGS)) == set(Limits.__dataclass_fields__)


def test_a_limit_given_as_a_bad_number_is_a_usage_error(data_dir):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--page-bytes", "-1"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------- TLS


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_serve_with_tls_answers_https_and_refuses_plain_http(data_dir, certificate):
    cert, key = certificate
    served = ServeProcess(data_dir, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert served.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'{"status":"ok"}' in answer
        with pytest.raises((ConnectionError, OSError)):
            reply = http_request(served.port, "GET", "/health", timeout=5)
            assert reply.status != 200  # whatever plain HTTP gets, it is not an answer
            raise ConnectionError
    finally:
        code, log = served.stop()
    assert code == 0 and "Traceback" not in log


def test_serve_refuses_a_certificate_without_its_key(data_dir, certificate):
    cert, _ = certificate
    command = ["serve", "--data", str(data_dir), "--port", "0", "--tls-cert", str(cert)]
    result = subprocess.run(
        [__import__("sys").executable, "-m", "logstore_server.cli", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "give both --tls-cert and --tls-key" in result.stderr


def test_tokens_in_clear_to_a_non_loopback_address_are_warned_about(caplog):
    with caplog.at_level("WARNING", logger="logstore_server"):
        warn_if_cleartext("127.0.0.1", authenticated=True, tls=False)
        warn_if_cleartext("192.0.2.7", authenticated=True, tls=True)
        warn_if_cleartext("192.0.2.7", authenticated=False, tls=False)
        assert caplog.records == []
        warn_if_cleartext("192.0.2.7", authenticated=True, tls=False)
    assert len(caplog.records) == 1
    assert "without TLS" in caplog.records[0].getMessage()
