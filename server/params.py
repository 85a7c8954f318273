"""Checking what clients send: query parameters, JSON bodies, names.

Every check answers 400 with a sentence naming the parameter, never a 500, whatever the
input (negative, huge, non-numeric, NaN, wrong JSON types).
"""

from __future__ import annotations

import asyncio
import math
import re

from aiohttp import web

from logstore import InvalidName, check_name

from . import codec
from .errors import ApiError, invalid

_INT = re.compile(r"[0-9]{1,19}")
MAX_LEASE_LENGTH = 256
"""A lease token is opaque but short; a longer string is refused before the library sees it."""
_JSON_TYPES = ("application/json",)


def name(request: web.Request, part: str, what: str) -> str:
    """A topic id or subscription name from the path, checked before any other use."""
    try:
        return check_name(request.match_info[part], what)
    except InvalidName as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None


def query_int(request: web.Request, param: str, *, minimum: int = 0) -> int | None:
    """A non-negative integer query parameter, or None when absent."""
    text = request.query.get(param)
    if text is None:
        return None
    if not _INT.fullmatch(text) or int(text) < minimum:
        raise invalid(f"query parameter {param} must be an integer >= {minimum}, not {text!r}")
    return int(text)


def query_seconds(request: web.Request, param: str, ceiling: float) -> float:
    """A non-negative number of seconds, lowered to `ceiling`; 0 when absent."""
    text = request.query.get(param)
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or len(text) > 32:
        raise invalid(f"query parameter {param} must be a number of seconds >= 0, not {text!r}")
    return min(value, ceiling)


def query_max(request: web.Request, ceiling: int, default: int) -> int:
    value = query_int(request, "max", minimum=1)
    return default if value is None else min(value, ceiling)


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole request body: 413 over `limit` (before reading it), 408 when too slow."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, "payload_too_large", f"the request body is over the limit of {limit} bytes"
        )
    if request.content.is_eof():  # it all arrived with the headers: no timer needed
        return await request.read()
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {timeout:g} s"
        ) from None


async def json_object(request: web.Request, limit: int, timeout: float) -> dict:
    """An optional JSON object body ({} when empty); 415 for a body of another type."""
    body = await read_body(request, limit, timeout)
    if not body.strip():
        return {}
    if "Content-Type" in request.headers and request.content_type not in _JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {request.content_type}",
        )
    doc = codec.loads(body)
    if not isinstance(doc, dict):
        raise invalid("the request body must be a JSON object")
    return doc


def only_fields(doc: dict, allowed: set[str]) -> None:
    unknown = set(doc) - allowed
    if unknown:
        raise invalid(f"unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")


def optional_int(doc: dict, field: str, *, minimum: int) -> int | None:
    value = doc.get(field)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise invalid(f"{field} must be an integer >= {minimum} or null, not {value!r}")
    return value


def optional_name(doc: dict, field: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    try:
        return check_name(value, field)
    except InvalidName as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None


def settle_items(doc: dict, limit: int) -> list[int | str] | None:
    """The `offsets` and `leases` of an ack / nack body in one list (the library takes
    both mixed); None when the body has neither."""
    offsets, leases = doc.get("offsets"), doc.get("leases")
    if offsets is None and leases is None:
        return None
    if offsets is not None and not (
        isinstance(offsets, list) and all(type(o) is int and o >= 0 for o in offsets)
    ):
        raise invalid("offsets must be a list of offsets (integers >= 0)")
    if leases is not None and not (
        isinstance(leases, list)
        and all(type(t) is str and 0 < len(t) <= MAX_LEASE_LENGTH for t in leases)
    ):
        raise invalid("leases must be a list of lease tokens (the strings poll answers carry)")
    items = [*(offsets or ()), *(leases or ())]
    if len(items) > limit:
        raise ApiError(
            413, "payload_too_large", f"offsets and leases may list at most {limit} items"
        )
    return items
