"""JSON bodies: answers, request bodies, publish batches.

Messages themselves go to and from JSON through `logstore.wire`, the codec the client and
the CLI share; this module adds what only HTTP needs (the batch envelope and its limits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from aiohttp import web

from logstore import Record
from logstore.wire import record_from_json

from .errors import ApiError, invalid


def dumps(doc: object) -> bytes:
    """Compact UTF-8 JSON. Text UTF-8 cannot encode (a lone surrogate in a topic name stored
    before names were checked) is sent as its JSON escape (`\\ud800`) instead of failing."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(doc, separators=(",", ":")).encode()


def json_response(
    doc: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(doc), status=status, content_type="application/json", headers=headers
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _number(text: str) -> int | float:
    """A JSON number with a fraction or exponent. JSON has one number type, and JSON Schema
    (so the API document) counts `1.0` and `1e3` as integers: those become exact ints."""
    exact = Decimal(text)
    if exact.adjusted() < 19 and exact == exact.to_integral_value():
        return int(exact)
    return float(text)


def loads(body: bytes) -> object:
    """Parse a JSON request body; 400 with the reason when it is not valid JSON."""
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_number)
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise invalid(f"the request body is not valid JSON: {reason}") from None


def parse_batch(doc: object, max_batch: int) -> tuple[list[bytes | Record], int]:
    """The messages of a JSON publish body, and their total value bytes.

    Plain `{"value": "text"}` messages become bytes, the library's fast path; the rest
    become `Record`s (an InvalidArgument, hence 400, names a wrong one).
    """
    if not isinstance(doc, dict) or set(doc) != {"messages"}:
        raise invalid('a JSON publish body must be {"messages": [...]} and nothing else')
    messages = doc["messages"]
    if not isinstance(messages, list) or not messages:
        raise invalid('"messages" must be a non-empty list')
    if len(messages) > max_batch:
        raise ApiError(
            413,
            "payload_too_large",
            f"a batch may hold at most {max_batch} messages, not {len(messages)}",
        )
    items: list[bytes | Record] = []
    total = 0
    for i, m in enumerate(messages):
        value = m.get("value") if type(m) is dict and len(m) == 1 else None
        if type(value) is str:
            try:
                item = value.encode()
            except UnicodeEncodeError:
                raise invalid(f"message {i}: value is not valid Unicode text") from None
            total += len(item)
        else:
            item = record_from_json(m, f"message {i}")
            total += len(item.value)
        items.append(item)
    return items, total
