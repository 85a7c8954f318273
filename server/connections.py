"""Connections: a cap on how many are open, and quiet logging of malformed requests.

aiohttp accepts every connection and logs every malformed request (bad request line, header
too long, invalid chunk) as an ERROR with a traceback: a client could fill the disk with
log, and run the process out of descriptors with idle sockets. `CappedSite` listens like
aiohttp's TCPSite but answers a connection over `max_connections` with a 503 and closes it;
`QuietServerLog` takes the place of aiohttp's server logger and turns a malformed request
into one WARNING line at most every `_WARN_EVERY_SECONDS` (with the count since the last),
keeping tracebacks for real faults.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("logstore_server.connections")

_WARN_EVERY_SECONDS = 10.0
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: %d\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


class QuietServerLog:
    """What aiohttp's request handler calls as its logger (`debug`, `exception`, ...)."""

    def __init__(self, target: logging.Logger = log):
        self._target = target
        self._next_warning = 0.0
        self._unreported = 0

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._malformed(exc_info, args[0] if args else None)
        else:
            self._target.error(msg, *args, exc_info=exc_info, **kw)

    def _malformed(self, exc: HttpProcessingError, remote: object) -> None:
        self._unreported += 1
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + _WARN_EVERY_SECONDS
        count, self._unreported = self._unreported, 0
        reason = str(exc.message or type(exc).__name__).splitlines()[0][:200]
        log.warning(
            "malformed HTTP request from %s answered %s (%s); %d in the last %g s at most",
            remote,
            exc.code,
            reason,
            count,
            _WARN_EVERY_SECONDS,
        )

    def __getattr__(self, name: str) -> Any:  # debug, info, warning, error: as they are
        return getattr(self._target, name)


class _Refuse(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed, nothing read."""

    def __init__(self, limit: int, retry_after: int):
        self._limit = limit
        self._retry_after = retry_after

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = (
            b'{"error":"overloaded","message":"too many connections at once (limit %d); '
            b'retry shortly"}' % self._limit
        )
        transport.write(_REFUSAL % (self._retry_after, len(body), body))  # type: ignore[attr-defined]
        transport.close()


class CappedSite(web.BaseSite):
    """A TCP site (optionally TLS) that refuses connections over `max_connections`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        max_connections: int,
        retry_after: int,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ):
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._retry_after = retry_after

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        limit, retry_after = self._max_connections, self._retry_after

        def accept() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                return _Refuse(limit, retry_after)
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )
