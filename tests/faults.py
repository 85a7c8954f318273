"""Shared machinery of the fault tests (tests/test_faults_*.py, tests/test_crash_soak.py).

Everything here is real: a child process that runs the library and is commanded over its
stdin (`Driver`), strace attached to a running process to make chosen system calls fail or
wait (`Strace`), a `logstore serve` process (`Server`) and an HTTP client (`request`). The
tests use only the public API (`from logstore import ...`), files on disk and processes, so
they outlive any reorganisation of the modules behind that API.

A fault test goes: start a `Driver` (or a `Server`), prepare the state it needs with no
fault, attach strace with an injection aimed at one call (by system call, by path with
`-P`, and by count with `when=`), do the one operation under test, detach, and then ask:
what was the caller told, and what does the store hold once reopened without strace? The
child answers every command with a JSON line, so the parent knows exactly what was
acknowledged. A test also checks, from strace's own output, that the fault was injected:
a test whose fault never happened would prove nothing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.client import HTTPConnection

import pytest

STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(
    STRACE is None, reason="strace is not installed: it injects the I/O errors of this test"
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `logstore` console script of this environment; LOGSTORE_BIN names another one.
LOGSTORE_BIN = os.environ.get("LOGSTORE_BIN") or os.path.join(
    os.path.dirname(sys.executable), "logstore"
)

# prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY): under Yama's ptrace_scope=1 a process may only
# be traced by its ancestors; this lets the test's strace (a sibling) attach. Harmless, and
# ignored, where Yama is absent.
_ALLOW_PTRACE = (
    "import ctypes\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(2**64 - 1), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
)

DRIVER_SCRIPT = (
    _ALLOW_PTRACE
    + r"""
import json, sys
import logstore
from logstore import Store

store = None


def kinds(exc):
    return [c.__name__ for c in type(exc).__mro__]


def message(m):
    return [m.offset, m.value.decode("latin-1")]


def run(op, args, kw):
    global store
    if op == "open":
        store = Store(*args, **kw)
        return None
    if op == "close":
        s, store = store, None
        s.close()
        return None
    if op == "write":
        return store.write(args[0], args[1].encode("latin-1"))
    if op == "write_many":
        return store.write_many(args[0], [v.encode("latin-1") for v in args[1]])
    if op == "read":
        return [message(m) for m in store.read(*args, **kw)]
    if op == "poll":
        return [[d.offset, d.delivery_count] for d in store.poll(*args, **kw)]
    if op in ("topic", "create_topic", "subscription", "ack", "nack", "commit", "subscribe"):
        info = getattr(store, op)(*args, **kw)
        return {k: getattr(info, k) for k in info.__dataclass_fields__}
    if op == "stats":
        return {k: getattr(store.stats, k) for k in ("truncations", "index_rebuilds", "fsyncs")}
    if op == "version":
        return logstore.__name__
    result = getattr(store, op)(*args, **kw)
    return result if isinstance(result, int | str | type(None)) else repr(result)


print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    op, args, kw = json.loads(line)
    try:
        reply = {"ok": run(op, args, kw)}
    except BaseException as exc:
        reply = {"error": type(exc).__name__, "kinds": kinds(exc), "message": str(exc)}
    print(json.dumps(reply), flush=True)
"""
)


class HarnessError(RuntimeError):
    """The test machinery failed, or a precondition of the scenario did not hold (a child
    exited, an operation that must succeed did not, a fault was not injected). Never an
    AssertionError, so an `xfail(raises=AssertionError)` test cannot pass it off as the
    broken promise it documents."""


def require(condition: object, detail: object = "") -> None:
    """A precondition of the scenario, checked without `assert` (see `HarnessError`)."""
    if not condition:
        raise HarnessError(f"precondition failed: {detail}")


@dataclass
class Reply:
    """One answer of the driver: `ok` (the result) or an error with its class names."""

    raw: dict

    @property
    def ok(self):
        if "error" in self.raw:
            raise HarnessError(f"expected success, got {self.raw}")
        return self.raw["ok"]

    @property
    def failed(self) -> bool:
        return "error" in self.raw

    @property
    def kinds(self) -> list[str]:
        return self.raw.get("kinds", [])

    def raised(self, name: str) -> bool:
        return name in self.kinds

    def __repr__(self) -> str:
        return f"Reply({self.raw})"


class Driver:
    """A child Python process that runs the library and does what it is told, one JSON
    line per command and per answer."""

    def __init__(self, cwd: str | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd or os.path.dirname(ROOT),
        )
        self.pid = self.proc.pid
        self._answers: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        first = self._next(30)
        require(first.get("ready"), first)

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def log(self) -> str:
        """What the child logged (the library logs its recoveries and failures)."""
        return "".join(self._stderr)

    def _next(self, timeout: float) -> dict:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"the driver did not answer within {timeout} s") from None
        if answer is None:
            raise HarnessError(f"the driver exited; its log:\n{self.log[-3000:]}")
        return answer

    def send(self, op: str, *args, **kw) -> None:
        """Send a command without waiting for its answer (see `answer`)."""
        self.proc.stdin.write(json.dumps([op, list(args), kw]) + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 30.0) -> Reply:
        return Reply(self._next(timeout))

    def call(self, op: str, *args, timeout: float = 30.0, **kw) -> Reply:
        self.send(op, *args, **kw)
        return self.answer(timeout)

    def do(self, op: str, *args, **kw):
        """`call`, which must succeed: its result."""
        return self.call(op, *args, **kw).ok

    def kill(self) -> None:
        """SIGKILL: a crash, with nothing flushed or closed."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Close the store (if open) and end the child cleanly; kill it if it hangs."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class StraceUnavailable(Exception):
    pass


class Strace:
    """strace attached to a running process (every thread, `-f`) for the `with` block.

    `args` are strace options: a syscall filter, `-P path`, `-e inject=...`. The trace goes to
    a file, so the test can show which calls ran and which were injected. Leaving the block
    detaches (SIGINT to strace, which lets the process go on untraced)."""

    def __init__(self, pid: int, *args: str, trace_file: str):
        self.pid = pid
        self.args = args
        self.trace_file = trace_file
        self.proc: subprocess.Popen | None = None
        self.text = ""

    def __enter__(self) -> Strace:
        self.proc = subprocess.Popen(
            [STRACE, "-f", "-p", str(self.pid), "-o", self.trace_file, *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        attached = threading.Event()
        lines: list[str] = []

        def watch() -> None:
            for line in self.proc.stderr:
                lines.append(line)
                if "attached" in line:
                    attached.set()
            attached.set()

        threading.Thread(target=watch, daemon=True).start()
        attached.wait(20)
        if self.proc.poll() is not None or not any("attached" in line for line in lines):
            self._end()
            raise StraceUnavailable("".join(lines).strip() or "strace did not attach in 20 s")
        return self

    def _end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # detach: the tracee runs on
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(FileNotFoundError), open(self.trace_file) as f:
            self.text = f.read()

    def __exit__(self, *exc) -> None:
        self._end()

    def injected(self, syscall: str | None = None) -> list[str]:
        """The traced lines of calls strace made fail or wait, optionally of one syscall."""
        return [
            line
            for line in self.text.splitlines()
            if ("(INJECTED)" in line or "(DELAYED)" in line)
            and (syscall is None or f" {syscall}(" in f" {line}")
        ]


def attach(pid: int, *args: str, trace_file) -> Strace:
    """`Strace(...)`, skipping the test (saying why) where ptrace is not permitted."""
    tracer = Strace(pid, *args, trace_file=str(trace_file))
    try:
        return tracer.__enter__()
    except StraceUnavailable as exc:
        pytest.skip(f"strace cannot attach to a process here (ptrace refused?): {exc}")


@contextlib.contextmanager
def injected(pid: int, *args: str, trace_file):
    tracer = attach(pid, *args, trace_file=trace_file)
    try:
        yield tracer
    finally:
        tracer.__exit__()


def segment_path(data: str | os.PathLike, topic: str, base: int = 0) -> str:
    """The segment file of `topic` with base offset `base` (the topic's only directory)."""
    dirs = glob.glob(os.path.join(os.fspath(data), "topics", f"*-{topic}"))
    require(len(dirs) == 1, dirs)
    return os.path.join(dirs[0], f"{base:020d}.log")


def topic_dir(data: str | os.PathLike, topic: str) -> str:
    return os.path.dirname(segment_path(data, topic))


def meta_file(data: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data), "meta", "data.mdb")


# ------------------------------------------------------------------- server


class Server:
    """`logstore serve` in a child process, on a free loopback port; stderr to a file."""

    def __init__(
        self,
        data: str | os.PathLike,
        log_path: str | os.PathLike,
        fsync: str = "always",
        *,
        traceable: bool = True,
    ):
        """`traceable`: start it through a tiny wrapper that lets strace attach (see
        `_ALLOW_PTRACE`); tests that never attach strace skip that step."""
        self.data = os.fspath(data)
        self.log_path = os.fspath(log_path)
        self.fsync = fsync
        self.traceable = traceable
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> Server:
        with open(self.log_path, "a") as log:
            start_at = log.tell()
            wrapper = [
                sys.executable,
                "-I",
                "-c",
                _ALLOW_PTRACE + "import os, sys\nos.execv(sys.argv[1], sys.argv[1:])\n",
            ]
            self.proc = subprocess.Popen(
                [
                    *(wrapper if self.traceable else []),
                    LOGSTORE_BIN,
                    "serve",
                    "--data",
                    self.data,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--fsync",
                    self.fsync,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as log:
                log.seek(start_at)
                for line in log:
                    if "logstore: serving http://127.0.0.1:" in line:
                        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
                        return self
            if self.proc.poll() is not None:
                raise HarnessError(f"logstore serve exited:\n{self.log()[-3000:]}")
            time.sleep(0.01)
        self.kill()
        raise HarnessError(f"logstore serve did not start in {timeout} s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def kill(self) -> None:
        """SIGKILL the server (only the process this object started)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: graceful shutdown; SIGKILL if it takes over 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method: str, path: str, body=None, timeout: float = 10.0):
        return request(self.port, method, path, body, timeout)


def request(port: int, method: str, path: str, body=None, timeout: float = 10.0):
    """(status, decoded JSON or raw bytes). `body`: bytes (raw) or an object (sent as JSON)."""
    headers = {}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def read_all(port: int, topic: str) -> list[dict]:
    """Every message of `topic` over HTTP, in pages."""
    out: list[dict] = []
    offset = 0
    for _ in range(10_000):
        status, page = request(port, "GET", f"/topics/{topic}/messages?offset={offset}&max=10000")
        require(status == 200, page)
        out += page["messages"]
        if page["next_offset"] >= page["end_offset"]:
            return out
        offset = page["next_offset"]
    raise HarnessError("read_all did not reach the end")
