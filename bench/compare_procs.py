"""Server processes of the comparison: started on 127.0.0.1, stopped by their PID, always.

Every process the runner starts is registered here and stopped at the latest by `atexit`
(and on SIGTERM, which `install_signal_handlers` turns into an exception so `finally`
blocks run). Nothing is ever stopped by name: a developer's own redis-server or
nats-server on this machine is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

HOST = "127.0.0.1"
_STOP_SECONDS = 10.0

_running: dict[int, subprocess.Popen] = {}


class StartFailed(Exception):
    """A server did not come up: the message says why (its log's tail included)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(argv: Sequence[str], log_path: str, port: int, timeout: float = 30.0) -> int:
    """Start `argv` with its output in `log_path`; its PID once `port` accepts connections."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    _running[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(proc.pid)
            raise StartFailed(f"{argv[0]} exited with {proc.returncode}: {log_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return proc.pid
        time.sleep(0.05)
    stop(proc.pid)
    raise StartFailed(f"{argv[0]} did not listen on {HOST}:{port} in {timeout:.0f} s")


def stop(pid: int) -> None:
    """Stop a process this module started: SIGTERM, then SIGKILL if it lingers."""
    proc = _running.pop(pid, None)
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(_STOP_SECONDS)


def stop_all() -> None:
    """Stop every process still running (the `atexit` and error path)."""
    for pid in list(_running):
        stop(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_tail(path: str, chars: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - chars))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return "(no log)"


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C, so servers and temp dirs are cleaned up."""

    def unwind(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, unwind)


atexit.register(stop_all)
