"""Where a client connects and the headers every request of it carries."""

from __future__ import annotations

import ssl
import urllib.parse
from dataclasses import dataclass

from ..errors import InvalidArgument

DEFAULT_URL = "http://127.0.0.1:8080"
"""Where `logstore serve` listens by default."""

USER_AGENT = "logstore-python-client"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server URL taken apart: host, port, TLS, path prefix, and the fixed header lines
    (Host, Authorization, User-Agent) of every request."""

    url: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    prefix: str
    fixed_headers: str

    @classmethod
    def parse(cls, url: str, token: str | None) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"the server URL must be http(s)://HOST[:PORT], not {url!r}")
        if token is not None and (not token or not token.isprintable() or not token.isascii()):
            raise InvalidArgument("the token must be printable ASCII text")
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        authority = f"[{host}]" if ":" in host else host
        if parts.port:
            authority += f":{port}"
        fixed = f"Host: {authority}\r\nUser-Agent: {USER_AGENT}\r\n"
        if token:
            fixed += f"Authorization: Bearer {token}\r\n"
        return cls(url.rstrip("/"), host, port, tls, parts.path.rstrip("/"), fixed)
