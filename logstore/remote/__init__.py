"""The HTTP clients: `Client` (blocking) and `AsyncClient` (asyncio), `Store`'s API against
a `logstore serve` server. Modules: `http` (HTTP/1.1 without I/O), `calls` (every API call's
requests and answers), `formats` (JSON and binary frames), `retry` (what is sent again),
`endpoint` (URL and fixed headers), `sync` and `aio` (the two transports)."""

from .aio import AsyncClient
from .endpoint import DEFAULT_URL
from .retry import Retry
from .sync import Client

__all__ = ["DEFAULT_URL", "AsyncClient", "Client", "Retry"]
