"""The binary form of the HTTP API (SPEC §6): messages on the wire in the stored frame format.

Media type `application/vnd.logstore.frames`. Error answers stay JSON in every case.

Replay (`GET /topics/{t}/messages` with `Accept: application/vnd.logstore.frames`): the body
is whole frames as the store holds them (`Store.read_stored`), sent without decoding or
re-encoding; the first may begin before the offset asked for. Headers carry what the JSON
answer's fields carry: `Logstore-Next-Offset`, `Logstore-Start-Offset`,
`Logstore-End-Offset`. The receiver checks every frame's CRC (end to end: a byte damaged on
disk or on the way raises `Corruption`) and keeps the messages from the offset it asked for
up to the next offset.

Publish (`POST /topics/{t}/messages` with `Content-Type: application/vnd.logstore.frames`):
the body is one frame, built with any base offset and timestamp (`encode_publish`); the
server checks its layout, CRC and sizes (400 otherwise) and appends it as one atomic batch,
assigning offsets and the timestamp. The answer is the JSON publish answer.

Poll (`POST .../poll` with that `Accept`): the body is a delivery table, then frames holding
the delivered messages (framed afresh: deliveries need not be consecutive)::

    u64 grant      the poll's lease number: each delivery's lease is "<offset>-<grant>"
    u32 n          deliveries that are redeliveries
    n x (u64 offset, u32 delivery_count)     the others were delivered for the first time

Integers are little-endian, like the frames'.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from . import frames
from .errors import Corruption
from .frames import FrameError
from .types import Delivery, Grant, Message, Record

CONTENT_TYPE = "application/vnd.logstore.frames"
NEXT_OFFSET = "Logstore-Next-Offset"
START_OFFSET = "Logstore-Start-Offset"
END_OFFSET = "Logstore-End-Offset"

_TABLE = struct.Struct("<QI")  # the poll table's head, and each of its entries


def encode_publish(items: Sequence[bytes | Record]) -> bytes:
    """One publish body: the items as one frame (offsets and timestamp left 0)."""
    if all(type(m) is bytes for m in items):
        return frames.encode_many(0, 0, list(items))
    records = [m if isinstance(m, Record) else Record(bytes(m)) for m in items]
    return frames.encode(0, 0, records)


def decode_replay(
    body: bytes, first: int, end: int, source: str = "the server's answer"
) -> list[Message]:
    """The messages `first` .. `end` (exclusive) of a replay body, every frame's CRC
    checked; `Corruption` (naming `source`) for a frame that fails."""
    if not body or end <= first:
        return []
    out: list[Message] = []
    try:
        base = frames.parse_header(body, 0).base_offset
        pos, _ = frames.read_frames(body, 0, base, first, end, end - first, out)
    except FrameError as exc:
        raise Corruption(source, exc.position or 0, str(exc)) from None
    if len(out) != end - first or out[0].offset != first:
        got = f"{out[0].offset}.." if out else "none"
        raise Corruption(source, pos, f"the answer holds messages {got}, not {first}..{end - 1}")
    return out


def encode_poll(deliveries: Sequence[Delivery]) -> bytes:
    """A poll answer's body: the delivery table, then the messages framed afresh."""
    grant = deliveries[0]._grant.number if deliveries else 0
    again = [(d.offset, d.delivery_count) for d in deliveries if d.delivery_count != 1]
    table = [_TABLE.pack(grant, len(again))]
    table.extend(_TABLE.pack(offset, count) for offset, count in again)
    return b"".join(table) + frames.encode_messages(list(deliveries))


def decode_poll(body: bytes, source: str = "the server's answer") -> list[Delivery]:
    """The deliveries of a poll body, in the order the server gave them; `Corruption` for
    a frame that fails its CRC or a table that does not add up."""
    try:
        grant_number, n = _TABLE.unpack_from(body, 0)
        pos = _TABLE.size
        counts = {}
        for _ in range(n):
            offset, count = _TABLE.unpack_from(body, pos)
            counts[offset] = count
            pos += _TABLE.size
        messages: list[Message] = []
        while pos < len(body):  # frames of runs of offsets: each decoded alone (C if plain)
            header = frames.parse_header(body, pos)
            limit = len(messages) + header.count
            base = header.base_offset
            end, _ = frames.read_frames(body, pos, base, base, base + 1, limit, messages)
            if end == pos:
                raise FrameError(f"truncated frame ({len(body) - pos} of {header.length} bytes)")
            pos = end
    except (FrameError, struct.error, ValueError) as exc:
        raise Corruption(source, pos, f"poll answer: {exc}") from None
    grant = Grant(grant_number, counts)
    for m in messages:
        m.__class__ = Delivery
        m._grant = grant
    return messages  # type: ignore[return-value]
