"""Messages to and from JSON.

A stored message is bytes; JSON carries text. `value` (and `key`) is sent as a string when
its bytes are valid UTF-8, else as `value_b64` (`key_b64`) in standard base64, so any bytes
round-trip and text stays readable. Publish batches accept the same fields.
"""

from __future__ import annotations

import base64
import binascii
import json
import json.encoder
from collections.abc import Mapping

from aiohttp import web

from logstore import Message, Record
from logstore import Delivery

from .errors import ApiError, invalid

_MESSAGE_FIELDS = frozenset({"value", "value_b64", "key", "key_b64", "headers"})


_quote = json.encoder.encode_basestring
"""The string escaper json.dumps(ensure_ascii=False) uses (in C)."""


def message_json(m: Message, extra: str = "") -> str:
    """The Msg JSON of a message; `extra` adds fields (`,"name":value`).

    Built as text rather than dict + json.dumps: this runs for every message replayed,
    streamed or delivered, and is several times faster. The output is the same JSON.
    """
    key = '"key":null' if m.key is None else _text_or_b64("key", m.key)
    headers = m.headers
    head = json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":")) if headers else "{}"
    value = _text_or_b64("value", m.value)
    return (
        f'{{"offset":{m.offset},"timestamp":{m.timestamp},{key},"headers":{head},{value}{extra}}}'
    )


def _text_or_b64(name: str, raw: bytes) -> str:
    try:
        return f'"{name}":{_quote(raw.decode())}'
    except UnicodeDecodeError:
        return f'"{name}_b64":"{base64.b64encode(raw).decode()}"'


def delivery_json(d: Delivery) -> str:
    return message_json(d, f',"delivery_count":{d.delivery_count}')


def dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(
    doc: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(doc), status=status, content_type="application/json", headers=headers
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> object:
    """Parse a JSON request body; 400 with the reason when it is not valid JSON."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise invalid(f"the request body is not valid JSON: {reason}") from None


def parse_batch(doc: object, max_batch: int) -> tuple[list[bytes | Record], int]:
    """The messages of a JSON publish body, and their total value bytes.

    Plain `{"value": "text"}` messages become bytes, the library's fast path; the rest
    become `Record`s.
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
            item = _parse_message(i, m)
            total += len(item.value)
        items.append(item)
    return items, total


def _parse_message(i: int, m: object) -> Record:
    if not isinstance(m, dict):
        raise invalid(f"message {i} must be a JSON object")
    unknown = set(m) - _MESSAGE_FIELDS
    if unknown:
        raise invalid(f"message {i} has unknown fields {sorted(unknown)}")
    value = _bytes_field(i, m, "value", required=True)
    key = _bytes_field(i, m, "key", required=False)
    headers = m.get("headers")
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(v, str) for v in headers.values())
        and all(_is_text(k) and _is_text(v) for k, v in headers.items())
    ):
        raise invalid(f"message {i}: headers must be an object of text to text")
    return Record(value, key, headers or None)


def _bytes_field(i: int, m: dict, name: str, *, required: bool) -> bytes | None:
    text, b64 = m.get(name), m.get(f"{name}_b64")
    if text is not None and b64 is not None:
        raise invalid(f"message {i} has both {name} and {name}_b64; send one")
    if b64 is not None:
        if not isinstance(b64, str):
            raise invalid(f"message {i}: {name}_b64 must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"message {i}: {name}_b64 is not valid base64") from None
    if text is None:
        if required:
            raise invalid(f"message {i} needs value (text) or value_b64 (base64)")
        return None
    if not isinstance(text, str) or not _is_text(text):
        raise invalid(f"message {i}: {name} must be a string of valid Unicode text")
    return text.encode()


def _is_text(s: str) -> bool:
    """False for strings holding lone surrogates (JSON allows them; UTF-8 does not)."""
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True
