"""Keys of per-request state: typed `web.RequestKey`s where aiohttp has them (3.13+)."""

from __future__ import annotations

from aiohttp import web


def _key(name: str, kind: type) -> object:
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


GRANT = _key("logstore.grant", object)
"""The `auth.Grant` of the request's token (set by the app's middleware)."""

READ_OFFSET = _key("logstore.read_offset", object)
"""The offset a read started at, for the message of a `corrupt_data` answer."""
