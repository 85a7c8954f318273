"""The `logstore` command line, on a data directory and through a server (--url)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_server_support import LiveServer, ServeProcess

from logstore import Store
from logstore_server.cli import main


def run(*args: str, stdin: bytes = b"", env: dict | None = None, timeout: float = 30):
    """`logstore ARGS` as a real process: (exit code, stdout bytes, stderr text)."""
    proc = subprocess.run(
        [sys.executable, "-m", "logstore_server.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return proc.returncode, proc.stdout, proc.stderr.decode()


@pytest.fixture
def data(tmp_path):
    """An empty store's directory (commands other than serve refuse one that is not a store)."""
    path = str(tmp_path / "data")
    Store(path).close()
    return path


def test_topics_create_list_info_delete_on_a_directory(data, capsys):
    assert main(["topics", "create", "orders", "--data", data, "--name", "Orders"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Orders"
    assert main(["topics", "create", "audit", "--data", data, "--retention-ms", "60000"]) == 0
    capsys.readouterr()
    assert main(["topics", "list", "--data", data]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "name", "start_offset", "end_offset", "size_bytes"]
    assert [row.split()[0] for row in table[1:]] == ["audit", "orders"]
    assert main(["topics", "list", "--data", data, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["topics", "info", "audit", "--data", data]) == 0
    assert json.loads(capsys.readouterr().out)["retention_ms"] == 60000
    assert main(["topics", "delete", "audit", "--data", data]) == 0
    assert main(["topics", "info", "audit", "--data", data]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_publish_from_arguments_and_read_back(data):
    run("topics", "create", "t", "--data", data)
    code, out, _ = run(
        "publish", "t", "one", "two", "--key", "k", "--header", "a=b", "--data", data
    )
    assert code == 0 and json.loads(out) == {"first_offset": 0, "count": 2}
    code, out, _ = run("read", "t", "--data", data)
    assert out == b"one\ntwo\n"
    code, out, _ = run("read", "t", "--data", data, "--json", "--offset", "1")
    [message] = [json.loads(line) for line in out.splitlines()]
    assert (message["offset"], message["key"], message["headers"]) == (1, "k", {"a": "b"})


def test_publish_stdin_one_message_per_line_or_whole(data):
    run("topics", "create", "t", "--data", data)
    code, out, _ = run("publish", "t", "--data", data, "--batch", "2", stdin=b"a\nb\nc\n")
    assert code == 0
    assert [json.loads(line)["count"] for line in out.splitlines()] == [2, 1]
    code, _, _ = run("publish", "t", "--data", data, "--whole", stdin=b"x\ny\n\xff")
    with Store(data) as store:
        values = [m.value for m in store.read("t", 0)]
    assert values == [b"a", b"b", b"c", b"x\ny\n\xff"]
    code, out, _ = run("read", "t", "--data", data, "--offset", "3")
    assert out == b"x\ny\n\xff\n"


def test_read_with_max_offset_end_and_timestamp(data):
    run("topics", "create", "t", "--data", data)
    run("publish", "t", *[f"m{i}" for i in range(5)], "--data", data)
    assert run("read", "t", "--data", data, "--max", "2")[1] == b"m0\nm1\n"
    assert run("read", "t", "--data", data, "--offset", "end")[1] == b""
    assert run("read", "t", "--data", data, "--timestamp", "0", "--max", "1")[1] == b"m0\n"


def test_errors_are_one_line_with_exit_code_1(data):
    code, _, err = run("read", "missing", "--data", data)
    assert code == 1 and "Traceback" not in err
    run("topics", "create", "t", "--data", data)
    code, _, err = run("publish", "t", "x", "--header", "novalue", "--data", data)
    assert code == 1 and "NAME=VALUE" in err
    code, _, err = run("topics", "create", "../x", "--data", data)
    assert code == 1 and "invalid topic id" in err
    code, _, err = run("topics", "list", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the server" in err
    assert run("no-such-command")[0] == 2


def test_commands_through_a_server_url(store, capsys):
    server = LiveServer(store)
    try:
        url = ["--url", server.url]
        assert main(["topics", "create", "t", *url]) == 0
        assert main(["publish", "t", "hello", "wörld", *url]) == 0
        assert main(["subscriptions", "create", "t", "s", "--ack-wait", "5", *url]) == 0
        capsys.readouterr()
        assert main(["subscriptions", "list", "t", *url]) == 0
        assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["s", "0", "0", "2"]
        assert main(["subscriptions", "info", "t", "s", *url]) == 0
        assert json.loads(capsys.readouterr().out)["ack_wait"] == 5
        assert main(["subscriptions", "delete", "t", "s", *url]) == 0
        assert main(["topics", "info", "t", *url]) == 0
        assert json.loads(capsys.readouterr().out)["end_offset"] == 2
        assert main(["topics", "info", "nope", *url]) == 1
        assert "topic_not_found" in capsys.readouterr().err
    finally:
        server.stop()
    assert [m.value for m in store.read("t", 0)] == [b"hello", "wörld".encode()]


def test_read_starts_and_json_through_a_server_url(store, capsysbinary):
    server = LiveServer(store)
    try:
        url = ["--url", server.url]
        assert main(["topics", "create", "t", *url]) == 0
        assert main(["publish", "t", *[f"m{i}" for i in range(5)], *url]) == 0
        capsysbinary.readouterr()
        for args, expected in [
            (["--max", "2"], b"m0\nm1\n"),
            (["--offset", "3"], b"m3\nm4\n"),
            (["--offset", "end"], b""),
            (["--timestamp", "0", "--max", "1"], b"m0\n"),
        ]:
            assert main(["read", "t", *args, *url]) == 0
            assert capsysbinary.readouterr().out == expected, args
        assert main(["read", "t", "--offset", "9", *url]) == 1
        assert b"offset_out_of_range" in capsysbinary.readouterr().err
        store.write("t", b"\xff", key=b"k")
        assert main(["read", "t", "--offset", "5", "--json", *url]) == 0
        [line] = capsysbinary.readouterr().out.splitlines()
        assert json.loads(line) == {
            "offset": 5,
            "timestamp": store.read("t", 5)[0].timestamp,
            "key": "k",
            "headers": {},
            "value_b64": "/w==",
        }
    finally:
        server.stop()


def test_subscriptions_on_a_directory(data, capsys):
    main(["topics", "create", "t", "--data", data])
    assert main(["subscriptions", "create", "t", "s", "--start", "latest", "--data", data]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "list", "t", "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "s"


def test_reading_a_directory_a_server_holds_works_and_writing_says_use_url(data):
    run("topics", "create", "t", "--data", data)
    served = ServeProcess(data)
    try:
        served.request("POST", "/topics/t/messages", b"via server")
        assert run("read", "t", "--data", data)[1] == b"via server\n"
        code, _, err = run("publish", "t", "x", "--data", data)
        assert code == 1 and "--url" in err and "in use" in err
        assert run("publish", "t", "through url", "--url", served.url)[0] == 0
    finally:
        served.stop()


# A follower's stdout is a pipe, buffered as in `logstore read -f t | grep x`: it must flush.
_BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default action. A shell without job
    control starts background jobs with SIGINT ignored (`pytest ... &` in CI), children
    inherit that, and Python then installs no KeyboardInterrupt handler: a Ctrl-C sent to
    such a child would do nothing. The CLI keeps what it inherits (the shell's convention
    for background jobs); a test that sends SIGINT makes sure the child will get it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli_child():
    """Start `logstore ARGS` as a child that SIGINT stops; every child is killed (by its
    PID) and reaped when the test ends, whether it passed or failed."""
    children: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "logstore_server.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_BUFFERED,
            preexec_fn=_interruptible,
        )
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.communicate()


def _line_within(pipe, seconds: float = 10.0) -> bytes:
    """The next line a child writes to `pipe`, or a failure after `seconds` (never a hang:
    the read runs in a thread that the child's end, in the fixture's teardown, lets go)."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    assert got, f"no line within {seconds} s"
    return got[0]


def test_follow_prints_new_messages_as_they_arrive(store, cli_child):
    server = LiveServer(store)
    try:
        server.request("PUT", "/topics/t")
        server.request("POST", "/topics/t/messages", b"old")
        follower = cli_child("read", "t", "--follow", "--url", server.url)
        assert _line_within(follower.stdout) == b"old\n"
        time.sleep(0.2)
        server.request("POST", "/topics/t/messages", b"new")
        assert _line_within(follower.stdout) == b"new\n"
        # Ctrl-C while it waits, as a person's would: CPython acts on a signal that lands in
        # the microseconds before a blocking recv only once the recv returns (the long poll).
        time.sleep(0.2)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=10)
        assert follower.returncode == 130 and b"Traceback" not in err
    finally:
        server.stop()


def test_follow_on_a_directory_stops_on_ctrl_c(data, cli_child):
    run("topics", "create", "t", "--data", data)
    follower = cli_child("read", "t", "-f", "--data", data)
    time.sleep(0.5)
    with Store(data) as store:
        store.write("t", b"appended")
    assert _line_within(follower.stdout) == b"appended\n"
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=10)
    assert follower.returncode == 130 and b"Traceback" not in err


def test_check_reports_a_sound_directory_and_damage(data):
    run("topics", "create", "t", "--data", data)
    run("publish", "t", "A" * 100, "B" * 100, "--data", data)
    code, out, _ = run("check", data)
    assert code == 0 and b"no damage" in out
    [segment] = glob.glob(os.path.join(data, "topics", "*", "*.log"))
    with open(segment, "r+b") as f:
        raw = bytearray(f.read())
        raw[raw.index(b"B" * 100) + 10] ^= 1
        f.seek(0)
        f.write(raw)
    code, out, _ = run("check", data)
    assert code != 0 and b"DAMAGED" in out
    assert run("check", os.path.join(data, "nowhere"))[0] != 0


def test_data_directory_from_the_environment(data):
    assert run("topics", "create", "t", env={"LOGSTORE_DATA": data})[0] == 0
    assert [t.id for t in Store(data, readonly=True).topics()] == ["t"]


@pytest.mark.parametrize(
    "command",
    [
        ["publish", "t", "x"],
        ["topics", "create", "t"],
        ["topics", "list"],
        ["read", "t"],
        ["subscriptions", "create", "t", "s"],
    ],
)
def test_a_mistyped_data_directory_is_refused_and_not_created(tmp_path, command):
    typo = tmp_path / "typo"
    code, _, err = run(*command, "--data", str(typo))
    assert code == 1 and "Traceback" not in err
    assert f"{typo} is not a logstore data directory" in err and "--url" in err
    assert not typo.exists()
    typo.mkdir()  # an existing directory that holds no store is refused alike
    assert run(*command, "--data", str(typo))[0] == 1
    assert list(typo.iterdir()) == []


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    code, out, _ = run("--version")
    assert code == 0 and out.decode().strip() == f"logstore {version('logstore')}"


def test_hash_token_prints_an_auth_file_hash():
    from logstore_server import hash_token

    code, out, _ = run("hash-token", "s3cret")
    assert code == 0 and out.decode().strip() == hash_token("s3cret")
    assert run("hash-token", stdin=b"s3cret\n")[1].decode().strip() == hash_token("s3cret")
