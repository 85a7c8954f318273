"""Running the server: the production runner settings, the bind check, descriptors, TLS,
graceful shutdown.

`start()` is what `logstore serve` and the tests both use, so tests run the real settings:
handler cancellation on (a client that disconnects during a long poll cancels it at once),
idle connections closed after `idle_timeout_seconds`, connections capped, malformed requests
logged in one rate-limited line (`connections`), no access log on the hot path.

At start-up `run()` raises the soft descriptor limit to the hard one (where allowed) and
derives the caps on connections, long polls and streams from it (`fit_to_descriptors`), so
descriptors never run out before a cap answers 503.

On SIGINT / SIGTERM `serve()` stops accepting, answers waiting long polls (empty), ends
event streams, lets requests in progress finish (up to `shutdown_timeout_seconds`), and
returns; `run()` then flushes and closes the store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable

import uvloop
from aiohttp import web

from logstore import Store

from .app import make_app
from .auth import Authenticator
from .connections import CappedSite, QuietServerLog
from .limits import Limits, fit_to_descriptors
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


def warn_if_cleartext(host: str, authenticated: bool, tls: bool) -> None:
    """Tokens sent in clear over a network anyone on the path can read: say so at start-up."""
    if authenticated and not tls and not is_loopback(host):
        log.warning(
            "serving %s without TLS: bearer tokens and messages cross the network in clear. "
            "Give --tls-cert FILE --tls-key FILE, or put a TLS proxy in front.",
            host,
        )


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context of the certificate chain and key in these PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit if allowed; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.info("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft


async def start(
    app: web.Application,
    host: str,
    port: int,
    limits: Limits,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start serving `app` on host:port (0: any free port); the runner's `addresses` tell."""
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        keepalive_timeout=limits.idle_timeout_seconds,
        shutdown_timeout=limits.shutdown_timeout_seconds,
        access_log=None,
        logger=QuietServerLog(),
    )
    await runner.setup()
    site = CappedSite(
        runner,
        host,
        port,
        limits.max_connections,
        limits.retry_after_seconds,
        ssl_context=ssl_context,
    )
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
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully. `ready(url)` when listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = await start(make_app(store, config), host, port, config.limits, ssl_context)
    try:
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        ready(f"{'https' if ssl_context else 'http'}://{shown}:{bound_port}")
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
    explicit_limits: frozenset[str] = frozenset(),
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """`logstore serve`: open the store, serve until a signal, flush and close it.

    The caps on connections, long polls and streams not in `explicit_limits` are lowered
    to fit the descriptor limit."""
    auth = Authenticator.from_file(auth_file) if auth_file else None
    check_bind(host, auth is not None, allow_unauthenticated)
    context = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    warn_if_cleartext(host, auth is not None, context is not None)
    descriptors = raise_descriptor_limit()
    limits = fit_to_descriptors(limits or Limits(), descriptors, explicit_limits)
    log.info(
        "limits: %d connections, %d long polls, %d event streams (descriptor limit %d); "
        "pages of %d bytes; %d bytes of request bodies in transit",
        limits.max_connections,
        limits.max_long_polls,
        limits.max_sse_streams,
        descriptors,
        limits.page_bytes,
        limits.max_body_bytes_in_transit,
    )
    config = ServerConfig(limits=limits, auth=auth)
    with Store(data, fsync=fsync) as store:

        def ready(url: str) -> None:
            storage = store.describe()
            where = f"data {store.path}, fsync={fsync}"
            if storage["engine"] != "local":
                where = f"cluster {storage['servers']}, durability {storage['durability']}"
            auth_state = "on" if auth else "off"
            print(
                f"logstore: serving {url} ({where}, auth {auth_state}); Ctrl-C stops\n"
                f"logstore: dashboard {url}/, HTTP reference {url}/docs",
                file=sys.stderr,
                flush=True,
            )

        # uvloop's event loop (libuv) halves the loop's own cost per request under aiohttp.
        uvloop.run(serve(store, config, host, port, ready, context))
    print("logstore: stopped; data flushed", file=sys.stderr, flush=True)
