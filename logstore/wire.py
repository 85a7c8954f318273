"""Messages as JSON: the one codec of the HTTP server, the Python client and the CLI.

A stored message is bytes; JSON carries text. `value` (and `key`) travel as a string when
their bytes are valid UTF-8, else as `value_b64` (`key_b64`) in standard base64, so any bytes
round-trip and text stays readable; `headers` is an object of text to text. That is the `Msg`
of the HTTP API (SPEC §6); a delivery adds `delivery_count` and `lease`, and a publish body
takes the same fields. Standard library only: the client needs no server packages.
"""

from __future__ import annotations

import base64
import binascii
import json
import json.encoder
from collections.abc import Mapping
from typing import Any

from . import Delivery, InvalidArgument, Message, Record

RECORD_FIELDS = frozenset({"value", "value_b64", "key", "key_b64", "headers"})
"""The fields of one message of a publish body."""

_quote = json.encoder.encode_basestring
"""The string escaper of json.dumps(ensure_ascii=False), in C."""


def message_json(m: Message, extra: str = "") -> str:
    """The Msg JSON of a message; `extra` adds fields (`,"name":value`).

    Built as text rather than dict + json.dumps: this runs for every message replayed,
    streamed or delivered, and is several times faster. The output is the same JSON.
    """
    key = '"key":null' if m.key is None else _bytes_json("key", m.key)
    headers = m.headers
    head = json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":")) if headers else "{}"
    value = _bytes_json("value", m.value)
    return (
        f'{{"offset":{m.offset},"timestamp":{m.timestamp},{key},"headers":{head},{value}{extra}}}'
    )


def delivery_json(d: Delivery) -> str:
    """The JSON of a delivery: its Msg plus `delivery_count` and the opaque `lease` token."""
    return message_json(d, f',"delivery_count":{d.delivery_count},"lease":{_quote(d.lease)}')


def message_from_json(doc: Mapping[str, Any]) -> Message:
    """The message of a Msg JSON object (as `message_json` writes it)."""
    return Message(*_message_fields(doc))


class _WireDelivery(Delivery):
    """A delivery decoded from JSON: its count and lease are the server's, stored as given."""

    __slots__ = ("delivery_count", "lease")


def delivery_from_json(doc: Mapping[str, Any]) -> Delivery:
    """The delivery of a poll answer's JSON object (as `delivery_json` writes it)."""
    d = _WireDelivery(*_message_fields(doc))
    d.delivery_count = doc["delivery_count"]
    d.lease = doc["lease"]
    return d


def record_json(item: bytes | Record) -> dict[str, Any]:
    """One message of a publish body: `{"value": ...}` plus key and headers when it has them."""
    record = item if isinstance(item, Record) else Record(item)
    name, text = _text_or_b64("value", bytes(record.value))
    out: dict[str, Any] = {name: text}
    if record.key is not None:
        name, text = _text_or_b64("key", bytes(record.key))
        out[name] = text
    if record.headers:
        out["headers"] = dict(record.headers)
    return out


def record_from_json(doc: object, where: str) -> Record:
    """The message of one publish body entry; InvalidArgument naming `where` if it is wrong."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    unknown = set(doc) - RECORD_FIELDS
    if unknown:
        raise InvalidArgument(f"{where} has unknown fields {sorted(unknown)}")
    value = _checked_bytes(doc, "value", where, required=True)
    key = _checked_bytes(doc, "key", where, required=False)
    headers = doc.get("headers")
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(v, str) for v in headers.values())
        and all(is_text(k) and is_text(v) for k, v in headers.items())
    ):
        raise InvalidArgument(f"{where}: headers must be an object of text to text")
    return Record(value, key, headers or None)


def is_text(s: str) -> bool:
    """False for strings holding lone surrogates (JSON allows them; UTF-8 does not)."""
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text_or_b64(name: str, raw: bytes) -> tuple[str, str]:
    """(`name`, the text) when `raw` is UTF-8, else (`name_b64`, its base64)."""
    try:
        return name, raw.decode()
    except UnicodeDecodeError:
        return f"{name}_b64", base64.b64encode(raw).decode()


def _bytes_json(name: str, raw: bytes) -> str:
    """`_text_or_b64` as JSON text, written out: it runs twice for every message sent."""
    try:
        return f'"{name}":{_quote(raw.decode())}'
    except UnicodeDecodeError:
        return f'"{name}_b64":"{base64.b64encode(raw).decode()}"'


def _message_fields(doc: Mapping[str, Any]) -> tuple:
    """Message's fields, in order, from a Msg JSON object."""
    key, value = _bytes_of(doc, "key"), _bytes_of(doc, "value") or b""
    return doc["offset"], doc["timestamp"], key, doc.get("headers") or {}, value


def _bytes_of(doc: Mapping[str, Any], name: str) -> bytes | None:
    """The bytes of `name` / `name_b64` in a document this codec wrote (None if neither)."""
    b64 = doc.get(f"{name}_b64")
    if b64 is not None:
        return base64.b64decode(b64)
    text = doc.get(name)
    return None if text is None else text.encode()


def _checked_bytes(doc: dict, name: str, where: str, *, required: bool) -> bytes | None:
    """`_bytes_of` for a document from outside: every way it can be wrong is an error."""
    text, b64 = doc.get(name), doc.get(f"{name}_b64")
    if name in doc and f"{name}_b64" in doc:
        raise InvalidArgument(f"{where} has both {name} and {name}_b64; send one")
    if f"{name}_b64" in doc:
        if not isinstance(b64, str):
            raise InvalidArgument(f"{where}: {name}_b64 must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{where}: {name}_b64 is not valid base64") from None
    if text is None:
        if required:
            raise InvalidArgument(f"{where} needs value (text) or value_b64 (base64)")
        return None
    if not isinstance(text, str) or not is_text(text):
        raise InvalidArgument(f"{where}: {name} must be a string of valid Unicode text")
    return text.encode()
