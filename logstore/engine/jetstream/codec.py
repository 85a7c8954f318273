"""Messages as NATS messages, and back.

The payload is the value. A key travels in the `LS-Key` header (base64: keys are bytes),
the message headers in one `LS-H` header as JSON (NATS header names are ASCII tokens and
`Nats-*` names are server directives, so user headers cannot be NATS headers as they are).
The offset is the stream sequence minus one; the timestamp is the one the stream leader
stamped (`Nats-Time-Stamp`, RFC 3339 in nanoseconds; in ack subjects, nanoseconds).
"""

from __future__ import annotations

import base64
import calendar
import json
import time
from collections.abc import Mapping
from typing import Any

from ...types import NO_HEADERS, Message, Record

KEY = "LS-Key"
HEADERS = "LS-H"
SEQUENCE = "Nats-Sequence"
TIME_STAMP = "Nats-Time-Stamp"

_SECONDS: dict[str, int] = {}
_LAST_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def record_headers(record: Record) -> dict[str, str]:
    """The NATS headers that carry a record's key and headers."""
    out = {}
    if record.key is not None:
        out[KEY] = base64.b64encode(record.key).decode()
    if record.headers:
        out[HEADERS] = json.dumps(dict(record.headers), ensure_ascii=False, separators=(",", ":"))
    return out


def message(headers: Mapping[str, str], value: bytes, sequence: int, timestamp: int) -> Message:
    key = headers.get(KEY)
    user = headers.get(HEADERS)
    return Message(
        sequence - 1,
        timestamp,
        None if key is None else base64.b64decode(key),
        NO_HEADERS if user is None else json.loads(user),
        value,
    )


def stored_message(msg: Any) -> Message:
    """The message of a Direct Get answer (its headers name sequence and time)."""
    headers = msg.headers
    return message(headers, msg.data, int(headers[SEQUENCE]), timestamp_ms(headers[TIME_STAMP]))


def timestamp_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 UTC time such as the server writes
    (`2026-11-27T10:00:00.123456789Z`)."""
    prefix = text[:19]
    seconds = _SECONDS.get(prefix)
    if seconds is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        seconds = _SECONDS[prefix] = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
    millis = 0
    if len(text) > 20 and text[19] == ".":
        digits = text[20:23]
        while digits and not digits[-1].isdigit():
            digits = digits[:-1]
        millis = int(digits.ljust(3, "0"))
    return seconds * 1000 + millis


def rfc3339(ms: int) -> str:
    """An RFC 3339 UTC time of milliseconds since the epoch (for Direct Get by time)."""
    seconds, millis = divmod(min(max(ms, 0), _LAST_MS), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
