"""The two forms of messages on the wire: JSON (`logstore.wire`) and the binary frames of
SPEC §6 (`logstore.binary`). Answers are decoded by the Content-Type they carry, so a
client asking for frames reads JSON from a server that answers JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .. import binary, wire
from ..types import Delivery, Message, Record
from .http import Response

BINARY_ACCEPT = f"Accept: {binary.CONTENT_TYPE}\r\n"
BINARY_BODY = f"Content-Type: {binary.CONTENT_TYPE}\r\n"


@dataclass(slots=True)
class Page:
    """One replay answer: its messages and where the next read starts."""

    messages: list[Message]
    next_offset: int


def replay_page(response: Response, offset: int, max_messages: int, max_bytes: int | None) -> Page:
    """The messages of a GET .../messages answer, JSON or frames. Frames are CRC-checked
    (`Corruption` on a bad one) and cut to [offset, next_offset), then to `max_messages` and
    `max_bytes` as `Store.read` counts them: replay sends whole stored frames, which may
    begin before the offset asked for and end after the limits."""
    if _is_binary(response):
        headers = response.headers
        next_offset = int(headers[binary.NEXT_OFFSET.lower()])
        source = f"the server's answer for offsets {offset}..{next_offset - 1}"
        messages = binary.decode_replay(response.body, offset, next_offset, source)
        return Page(_within(messages, max_messages, max_bytes), next_offset)
    doc = json.loads(response.body)
    return Page([wire.message_from_json(m) for m in doc["messages"]], doc["next_offset"])


def _within(messages: list[Message], max_messages: int, max_bytes: int | None) -> list[Message]:
    """The first `max_messages`, and at most `max_bytes` of values and keys (always one)."""
    del messages[max_messages:]
    if max_bytes is not None:
        total = 0
        for i, m in enumerate(messages):
            total += len(m.value) + len(m.key or b"")
            if total > max_bytes and i > 0:
                del messages[i:]
                break
    return messages


def poll_answer(response: Response) -> list[Delivery]:
    if _is_binary(response):
        return binary.decode_poll(response.body)
    return [wire.delivery_from_json(d) for d in json.loads(response.body)["messages"]]


def publish_body(items: Sequence[bytes | Record]) -> bytes:
    return binary.encode_publish(items)


def _is_binary(response: Response) -> bool:
    return response.headers.get("content-type", "").startswith(binary.CONTENT_TYPE)
