"""Helpers for the server tests: a real server on a loopback port, and a plain HTTP client.

`LiveServer` runs the production runner (`logstore_server.start`: handler cancellation, idle
timeouts) in a thread with its own event loop, so tests are ordinary functions that talk HTTP
to it over a real socket, and can still look at the store and the server's state directly.
`ServeProcess` runs `logstore serve` as a subprocess, for signals and shutdown.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from logstore import Store
from logstore_server import Limits, ServerConfig, make_app, start
from logstore_server.state import STATE, ServerState


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class LiveServer:
    def __init__(self, store: Store, config: ServerConfig | None = None, app=None):
        """`app`: an app made by `make_app(store, config)` (to add test routes first)."""
        self.store = store
        self.config = config or ServerConfig()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = app or make_app(store, self.config)
        self.runner = self.call(start(self.app, "127.0.0.1", 0, self.config.limits))
        self.port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> ServerState:
        return self.app[STATE]

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        json_body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        return http_request(self.port, method, path, body, json_body, headers, timeout)

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
            self.runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    json_body: object = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class ServeProcess:
    """`logstore serve` in a subprocess on a free loopback port."""

    def __init__(self, data_dir, *args: str, env: dict[str, str] | None = None, preexec_fn=None):
        """`preexec_fn`: run in the child before it starts (e.g. to set its rlimits)."""
        command = [sys.executable, "-m", "logstore_server.cli", "serve", "--data", str(data_dir)]
        command += ["--port", "0", *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )
        self.url = None
        self.lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            match = re.search(r"serving (https?://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError("logstore serve did not start:\n" + "".join(self.lines))
        self.port = int(self.url.rsplit(":", 1)[1])

    def request(self, method: str, path: str, body=None, **kw) -> Reply:
        return http_request(self.port, method, path, body, **kw)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, str]:
        """Send `signum`, wait for the exit; (exit code, the rest of stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, "".join(self.lines) + err


@pytest.fixture
def live(store):
    server = LiveServer(store)
    yield server
    server.stop()


@pytest.fixture
def make_live(store):
    """Start servers with a given config (limits, auth) on the test's store."""
    servers = []

    def make(config: ServerConfig | None = None, **limits) -> LiveServer:
        if config is None:
            config = ServerConfig(limits=Limits(**limits))
        server = LiveServer(store, config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
