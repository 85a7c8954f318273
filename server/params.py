"""Checking what clients send: query parameters, JSON bodies, names.

Every check answers 400 with a sentence naming the parameter, never a 500, whatever the
input (negative, huge, non-numeric, NaN, wrong JSON types).
"""

from __future__ import annotations

import asyncio
import math
import re
from urllib.parse import parse_qsl

from aiohttp import web

from logstore import InvalidName, binary, check_name
from logstore.wire import is_text

from . import codec
from .errors import ApiError, invalid
from .state import STATE

_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
"""A JSON number: what the OpenAPI document's `number` means (no `_`, `inf`, `nan`)."""
MAX_QUERY_INT = 2**63 - 1
"""The largest offset, timestamp or byte count a query may name (the document says so)."""
LEASE_PATTERN = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
"""What every lease token looks like (the API document gives this pattern); anything else
is refused before the library sees it."""
_JSON_TYPES = ("application/json",)
SMALL_BODY_BYTES = 64 * 2**10
"""A declared body up to this size is not counted against the bodies-in-transit budget."""


def name(request: web.Request, part: str, what: str) -> str:
    """A topic id or subscription name from the path, checked before any other use."""
    try:
        return check_name(request.match_info[part], what)
    except InvalidName as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None


def query_int(
    request: web.Request, param: str, *, minimum: int = 0, maximum: int | None = MAX_QUERY_INT
) -> int | None:
    """An integer query parameter of decimal digits only, or None when absent (no sign,
    no `_`: Python's int() would take `1_0`)."""
    text = request.query.get(param)
    if text is None:
        return None
    must = f"query parameter {param} must be an integer >= {minimum}, not {text!r:.40}"
    if not _DIGITS.fullmatch(text):
        raise invalid(must)
    digits = text.lstrip("0") or "0"
    # 20 digits or more: over any maximum, and int() of thousands of them costs (or fails).
    value = int(digits) if len(digits) < 20 else 10**19
    if value < minimum:
        raise invalid(must)
    if maximum is not None and value > maximum:
        raise invalid(f"query parameter {param} must be at most {maximum}, not {text!r:.40}")
    return value


def query_seconds(request: web.Request, param: str, ceiling: float) -> float:
    """A number of seconds >= 0 written as a JSON number, lowered to `ceiling`; 0 when
    absent. One a float cannot hold (`1e999`) is refused."""
    text = request.query.get(param)
    if text is None:
        return 0.0
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise invalid(f"query parameter {param} must be a number of seconds >= 0, not {text!r:.40}")
    return min(value, ceiling)


def query_max(request: web.Request, ceiling: int, default: int) -> int:
    """`max`: at least 1; any larger value, however many digits, is lowered to `ceiling`."""
    value = query_int(request, "max", minimum=1, maximum=None)
    return default if value is None else min(value, ceiling)


def query_text(request: web.Request, param: str) -> str | None:
    """A text query parameter, or None when absent; 400 when its percent-escapes are not
    UTF-8 (decoding them with U+FFFD in their place would store text the client never sent)."""
    if param not in request.query:
        return None
    try:
        pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise invalid(f"query parameter {param} is not valid UTF-8 once percent-decoded") from None
    return next((value for name, value in pairs if name == param), None)


def header_text(request: web.Request, header: str) -> str | None:
    """A request header's value, or None when absent; 400 when its bytes are not UTF-8."""
    value = request.headers.get(header)
    if value is not None and not is_text(value):
        raise invalid(f"header {header} is not valid UTF-8 text")
    return value


def text_field(doc: dict, field: str) -> str | None:
    """An optional string field of a JSON body that UTF-8 can encode (JSON allows lone
    surrogates such as "\\ud800"; nothing stored or sent may hold one)."""
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string, not {value!r:.80}")
    if not is_text(value):
        raise invalid(f"{field} is not valid Unicode text (it holds a lone surrogate)")
    return value


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole request body: 413 over `limit` (before reading it), 408 when too slow,
    503 when the bodies being received at once would go over the server's budget for them
    (it counts the declared length, or `limit` when none is declared). A small body
    (`SMALL_BODY_BYTES` declared) is not counted: a well-behaved publish is never refused
    because large bodies stall; what small bodies hold is bounded by the connection cap."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, "payload_too_large", f"the request body is over the limit of {limit} bytes"
        )
    if request.content.is_eof():  # it all arrived with the headers: no timer, no budget
        return await request.read()
    in_transit = request.app[STATE].bodies_in_transit
    length = request.content_length
    counted = 0 if length is not None and length <= SMALL_BODY_BYTES else (length or limit)
    try:
        with in_transit.hold(counted):
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


def refuse_nulls(doc: dict) -> None:
    """For bodies whose fields are never null (ack, nack, seek): null is not "absent"."""
    nulls = sorted(field for field, value in doc.items() if value is None)
    if nulls:
        raise invalid(f"{', '.join(nulls)} may not be null: leave the field out instead")


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
        and all(type(t) is str and LEASE_PATTERN.fullmatch(t) for t in leases)
    ):
        raise invalid("leases must be a list of lease tokens (the strings poll answers carry)")
    items = [*(offsets or ()), *(leases or ())]
    if len(items) > limit:
        raise ApiError(
            413, "payload_too_large", f"offsets and leases may list at most {limit} items"
        )
    return items


def accepts_frames(request: web.Request) -> bool:
    """The client asks for the binary form (`Accept: application/vnd.logstore.frames`)."""
    return binary.CONTENT_TYPE in request.headers.get("Accept", "")
