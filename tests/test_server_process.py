"""`logstore serve` as a real process: start-up, signals, graceful shutdown, curl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_server_support import ServeProcess, http_request

from logstore import Store
from logstore_server.serve import BindRefused, check_bind, is_loopback


@pytest.fixture
def served(data_dir):
    process = ServeProcess(data_dir, "--fsync", "always")
    yield process
    process.stop(signal.SIGKILL)


def test_serve_prints_its_address_and_stops_cleanly_on_sigterm(served):
    assert served.url.startswith("http://127.0.0.1:")
    assert served.request("GET", "/health").json == {"status": "ok"}
    code, log = served.stop(signal.SIGTERM)
    assert code == 0, log
    assert "stopped; data flushed" in log
    assert "Traceback" not in log


def test_ctrl_c_answers_waiting_long_polls_and_keeps_acknowledged_data(data_dir):
    served = ServeProcess(data_dir, "--fsync", "always")
    served.request("PUT", "/topics/t")
    for i in range(10):
        assert served.request("POST", "/topics/t/messages", f"m{i}").status == 201
    results = []

    def long_poll():
        started = time.monotonic()
        reply = http_request(served.port, "GET", "/topics/t/messages?offset=10&wait=60", timeout=30)
        results.append((reply.status, reply.json, time.monotonic() - started))

    threads = [threading.Thread(target=long_poll) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = served.request("GET", "/metrics").body.decode()
        if "logstore_long_polls_waiting 5" in metrics:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the long polls never started waiting")
    stopped = time.monotonic()
    code, log = served.stop(signal.SIGINT)
    for t in threads:
        t.join(10)
    assert code == 0, log
    assert time.monotonic() - stopped < 10
    assert [(s, j["messages"]) for s, j, _ in results] == [(200, [])] * 5
    with Store(data_dir) as store:
        assert [m.value for m in store.read("t", 0)] == [f"m{i}".encode() for i in range(10)]


def test_environment_variables_configure_serve(tmp_path):
    data = tmp_path / "from-env"
    served = ServeProcess(data, env={"LOGSTORE_FSYNC": "never"})
    try:
        assert "fsync=never" in "".join(served.lines)
    finally:
        served.stop()
    command = [sys.executable, "-m", "logstore_server.cli", "serve"]
    env_data = tmp_path / "env-data"
    env = {"LOGSTORE_DATA": str(env_data), "LOGSTORE_PORT": "0", "LOGSTORE_HOST": "127.0.0.1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        line = proc.stderr.readline()
        while "serving" not in line and line:
            line = proc.stderr.readline()
        assert str(env_data) in line and "127.0.0.1:" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def _serve_fails(*args, env=None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "logstore_server.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_refuses_a_non_loopback_address_without_auth(data_dir):
    message = _serve_fails("--data", str(data_dir), "--host", "0.0.0.0")
    assert "--auth-file" in message and "--allow-unauthenticated" in message


def test_refuses_a_bad_auth_file(data_dir, tmp_path):
    bad = tmp_path / "auth.json"
    bad.write_text(json.dumps({"tokens": [{"token": ""}]}))
    assert "non-empty" in _serve_fails("--data", str(data_dir), "--auth-file", str(bad))
    missing = _serve_fails("--data", str(data_dir), "--auth-file", str(tmp_path / "nope"))
    assert "cannot read auth file" in missing


def test_second_server_on_the_same_directory_is_refused(served, data_dir):
    assert "in use" in _serve_fails("--data", str(data_dir))


def test_bind_check_allows_loopback_and_refuses_others_without_auth():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("::")
    check_bind("127.0.0.1", authenticated=False, allow_unauthenticated=False)
    check_bind("0.0.0.0", authenticated=True, allow_unauthenticated=False)
    check_bind("0.0.0.0", authenticated=False, allow_unauthenticated=True)
    with pytest.raises(BindRefused):
        check_bind("0.0.0.0", authenticated=False, allow_unauthenticated=False)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_publishes_long_polls_and_reads(served):
    def curl(*args: str) -> tuple[int, str]:
        proc = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        body, _, code = proc.stdout.rpartition("\n")
        return int(code), body

    base = served.url
    assert curl("-X", "PUT", f"{base}/topics/events")[0] == 201
    code, body = curl(
        "-X", "POST", "--data-binary", "hello from curl", f"{base}/topics/events/messages"
    )
    assert code == 201 and json.loads(body) == {"first_offset": 0, "count": 1}
    batch = json.dumps({"messages": [{"value": "a", "key": "k"}, {"value": "b"}]})
    code, body = curl(
        "-X", "POST", "-H", "Content-Type: application/json", "--data", batch,
        f"{base}/topics/events/messages",
    )  # fmt: skip
    assert code == 201 and json.loads(body)["first_offset"] == 1
    result = {}

    def wait_with_curl():
        result["reply"] = curl(f"{base}/topics/events/messages?offset=3&wait=20")

    waiter = threading.Thread(target=wait_with_curl)
    waiter.start()
    time.sleep(0.3)
    curl("-X", "POST", "--data-binary", "late", f"{base}/topics/events/messages")
    waiter.join(20)
    code, body = result["reply"]
    assert code == 200 and [m["value"] for m in json.loads(body)["messages"]] == ["late"]
    code, body = curl(f"{base}/topics/events/messages?offset=0")
    page = json.loads(body)
    assert [m["value"] for m in page["messages"]] == ["hello from curl", "a", "b", "late"]
    assert page["messages"][1]["key"] == "k"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_folder_is_installed_and_the_front_end_not_as_server():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"logstore_server": "server"}
    installed = {"logstore": "logstore", "server": "logstore_server"}
    folders = set()
    for top, name in installed.items():
        for root, _, files in os.walk(os.path.join(REPO, top)):
            if any(f.endswith(".py") for f in files):
                below = os.path.relpath(root, os.path.join(REPO, top)).replace(os.sep, ".")
                folders.add(name if below == "." else f"{name}.{below}")
    assert sorted(setuptools["packages"]) == sorted(folders)


def test_the_library_never_imports_the_front_end_nor_the_cli_aiohttp():
    probe = (
        "import sys, logstore, logstore.remote, logstore.wire\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'logstore_server')]\n"
        "import logstore_server.cli\n"
        "assert 'aiohttp' not in sys.modules, 'the CLI loads aiohttp only to serve'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO, timeout=60)
