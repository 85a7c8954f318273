"""Running the server: the production runner settings, the bind check, graceful shutdown.

`start()` is what `logstore serve` and the tests both use, so tests run the real settings:
handler cancellation on (a client that disconnects during a long poll cancels it at once),
idle connections closed after `idle_timeout_seconds`, no access log on the hot path.

On SIGINT / SIGTERM `serve()` stops accepting, answers waiting long polls (empty), ends
event streams, lets requests in progress finish (up to `shutdown_timeout_seconds`), and
returns; `run()` then flushes and closes the store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Callable

import uvloop
from aiohttp import web

from logstore import Store

from .app import make_app
from .auth import Authenticator
from .limits import Limits
from .state import ServerConfig

log = logging.getLogger("logstore_server")


class BindRefused(Exception):
    """Listening on a non-loopback address without authentication was not allowed."""


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, authenticated: bool, allow_unauthenticated: bool) -> None:
    if not (authenticated or allow_unauthenticated or is_loopback(host)):
        raise BindRefused(
            f"refusing to listen on {host!r} without authentication: anyone who can reach "
            "it could read and write every topic. Give --auth-file FILE, or "
            "--allow-unauthenticated if the network itself is trusted."
        )


async def start(app: web.Application, host: str, port: int, limits: Limits) -> web.AppRunner:
    """Start serving `app` on host:port (0: any free port); the runner's `addresses` tell."""
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        keepalive_timeout=limits.idle_timeout_seconds,
        shutdown_timeout=limits.shutdown_timeout_seconds,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(
    store: Store,
    config: ServerConfig,
    host: str,
    port: int,
    ready: Callable[[str], None],
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully. `ready(url)` when listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = await start(make_app(store, config), host, port, config.limits)
    try:
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        ready(f"http://{shown}:{bound_port}")
        await stop.wait()
        log.info("shutting down: answering waiting requests, then closing the store")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def run(
    data: str,
    host: str,
    port: int,
    fsync: str,
    auth_file: str | None,
    allow_unauthenticated: bool,
    limits: Limits | None = None,
) -> None:
    """`logstore serve`: open the store, serve until a signal, flush and close it."""
    auth = Authenticator.from_file(auth_file) if auth_file else None
    check_bind(host, auth is not None, allow_unauthenticated)
    config = ServerConfig(limits=limits or Limits(), auth=auth)
    with Store(data, fsync=fsync) as store:

        def ready(url: str) -> None:
            print(
                f"logstore: serving {url} (data {store.path}, fsync={fsync}, "
                f"auth {'on' if auth else 'off'}); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )

        # uvloop's event loop (libuv) halves the loop's own cost per request under aiohttp.
        uvloop.run(serve(store, config, host, port, ready))
    print("logstore: stopped; data flushed", file=sys.stderr, flush=True)
