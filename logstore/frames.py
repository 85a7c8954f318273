"""Record framing: how a batch of messages is laid out in a segment file.

A segment is a sequence of frames. One frame holds one atomic batch (one `write`, one
`write_many`): after a crash either the whole frame is there, with a valid CRC, or it is cut.

Frame layout, little-endian::

    offset size  field
    0      4     length       bytes of the whole frame, this header included
    4      4     crc          CRC-32C (Castagnoli) of bytes [8, length)
    8      8     base_offset  offset of the first message in the frame
    16     8     timestamp    ms since the epoch, shared by every message of the frame
    24     4     count        number of messages (>= 1)
    28     2     flags        HAS_KEYS | HAS_HEADERS
    30     2     magic        0x4C53 ("LS"), format version 1
    32     4*n   value lengths (u32 each)
    ..     4*n   key lengths (i32, -1 = no key)           only with HAS_KEYS
    ..     4*n   headers lengths (u32, 0 = no headers)    only with HAS_HEADERS
    ..           values, then keys, then headers (UTF-8 JSON objects), concatenated

The lengths come first, as arrays, so a reader turns a frame into messages with one
`struct.unpack_from` per column and slicing, instead of one unpack per message.
"""

from __future__ import annotations

import itertools
import json
import struct
import sys
from dataclasses import dataclass
from types import MappingProxyType

import crcmod.predefined
import google_crc32c

from ._framesc import configure as _configure_native
from ._framesc import read_plain
from .types import NO_HEADERS, Message, Record

HEADER = struct.Struct("<IIQQIHH")
_LENGTH_CRC = struct.Struct("<II")
HEADER_SIZE = HEADER.size
MAGIC = 0x4C53
HAS_KEYS = 1
HAS_HEADERS = 2
MAX_FRAME_BYTES = 2**31

reference_crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")
"""CRC-32C as the design names it (crcmod): the reference the fast one is tested against."""
REFERENCE_IS_NATIVE: bool = bool(getattr(sys.modules["crcmod.crcmod"], "_usingExtension", False))
"""False when crcmod runs its pure-Python fallback (about 40x slower)."""

crc32c = google_crc32c.value
"""CRC-32C of the hot paths: google-crc32c, the same values as crcmod's, in hardware (SSE4.2
or ARMv8 CRC instructions), about 60x faster on a 100 KB frame (4.6 vs 266 us here)."""
CRC_IS_NATIVE: bool = google_crc32c.implementation == "c"
"""False when google-crc32c runs its pure-Python fallback (far slower than crcmod's C)."""
_configure_native(Message, NO_HEADERS, crc32c)


class FrameTooLarge(ValueError):
    """A batch would make a frame of `MAX_FRAME_BYTES` or more."""

    def __init__(self, size: int):
        super().__init__(f"batch of {size} bytes is over the frame limit of {MAX_FRAME_BYTES}")
        self.size = size


class FrameError(Exception):
    """A frame fails a framing or CRC check; `position` is where in the buffer, if known."""

    def __init__(self, detail: str, position: int | None = None):
        super().__init__(detail)
        self.position = position


@dataclass(slots=True)
class FrameHeader:
    length: int
    crc: int
    base_offset: int
    timestamp: int
    count: int
    flags: int

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.count


def encode(base_offset: int, timestamp: int, records: list[Record]) -> bytes:
    """Frame `records` (already validated) as one batch starting at `base_offset`."""
    n = len(records)
    values = [r.value for r in records]
    keys = [r.key for r in records]
    headers = [r.headers for r in records]
    flags = 0
    columns = [struct.pack(f"<{n}I", *map(len, values))]
    blobs = values
    if any(k is not None for k in keys):
        flags |= HAS_KEYS
        columns.append(struct.pack(f"<{n}i", *(-1 if k is None else len(k) for k in keys)))
        blobs = blobs + [k for k in keys if k is not None]
    if any(headers):
        flags |= HAS_HEADERS
        encoded = [json.dumps(dict(h), ensure_ascii=False).encode() if h else b"" for h in headers]
        columns.append(struct.pack(f"<{n}I", *map(len, encoded)))
        blobs = blobs + encoded
    body = b"".join(columns + blobs)
    length = HEADER_SIZE + len(body)
    if length >= MAX_FRAME_BYTES:
        raise FrameTooLarge(length)
    tail = struct.pack("<QQIHH", base_offset, timestamp, n, flags, MAGIC) + body
    return struct.pack("<II", length, crc32c(tail)) + tail


_ONE_TAIL = struct.Struct("<QQIHHI")


def encode_many(base_offset: int, timestamp: int, values: list[bytes]) -> bytes:
    """`encode` for plain values (no keys, no headers): the hot path of `write_many`."""
    n = len(values)
    if n == 1:
        value = values[0]
        tail = _ONE_TAIL.pack(base_offset, timestamp, 1, 0, MAGIC, len(value)) + value
        return _LENGTH_CRC.pack(HEADER_SIZE + 4 + len(value), crc32c(tail)) + tail
    body = struct.pack(f"<{n}I", *map(len, values)) + b"".join(values)
    tail = struct.pack("<QQIHH", base_offset, timestamp, n, 0, MAGIC) + body
    length = HEADER_SIZE + len(body)
    if length >= MAX_FRAME_BYTES:
        raise FrameTooLarge(length)
    return struct.pack("<II", length, crc32c(tail)) + tail


def parse_header(buf: bytes | memoryview, pos: int) -> FrameHeader:
    """The header of the frame at `pos` of `buf`; checks its shape, not its CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise FrameError(f"truncated frame header ({len(buf) - pos} of {HEADER_SIZE} bytes)")
    length, crc, base, ts, count, flags, magic = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise FrameError(f"bad frame magic {magic:#06x}")
    if count < 1 or length < HEADER_SIZE + 4 * count or flags & ~(HAS_KEYS | HAS_HEADERS):
        raise FrameError(f"impossible frame header (length {length}, count {count})")
    return FrameHeader(length, crc, base, ts, count, flags)


def check_crc(buf: bytes | memoryview, pos: int, header: FrameHeader) -> None:
    end = pos + header.length
    if len(buf) < end:
        raise FrameError(f"truncated frame ({len(buf) - pos} of {header.length} bytes)")
    actual = crc32c(buf[pos + 8 : end])
    if actual != header.crc:
        raise FrameError(f"CRC mismatch (stored {header.crc:#010x}, computed {actual:#010x})")


def decode(buf: bytes, pos: int, header: FrameHeader, first: int, limit: int) -> list[Message]:
    """Messages `first` .. `first + limit` (offsets) of the CRC-checked frame at `pos`."""
    n = header.count
    skip = first - header.base_offset
    stop = min(n, skip + limit)
    column = pos + HEADER_SIZE
    value_lens = struct.unpack_from(f"<{n}I", buf, column)
    column += 4 * n
    key_lens = headers_lens = None
    if header.flags & HAS_KEYS:
        key_lens = struct.unpack_from(f"<{n}i", buf, column)
        column += 4 * n
    if header.flags & HAS_HEADERS:
        headers_lens = struct.unpack_from(f"<{n}I", buf, column)
        column += 4 * n
    bounds = list(itertools.accumulate(value_lens, initial=column))
    end = pos + header.length
    cursor = bounds[-1]
    if key_lens is None:
        keys = itertools.repeat(None)
    else:
        keys, cursor = _optional_blobs(buf, cursor, key_lens)
    if headers_lens is None:
        headers = itertools.repeat(NO_HEADERS)
    else:
        headers = []
        for size in headers_lens:
            headers.append(
                MappingProxyType(json.loads(buf[cursor : cursor + size])) if size else NO_HEADERS
            )
            cursor += size
    if cursor != end:
        raise FrameError(f"frame columns add up to {cursor - pos} bytes, header says {end - pos}")
    ts = header.timestamp
    offsets = range(header.base_offset + skip, header.base_offset + stop)
    starts = bounds[skip:stop]
    ends = bounds[skip + 1 : stop + 1]
    if key_lens is None and headers_lens is None:  # the hot path: map() runs in C
        values = [buf[a:b] for a, b in zip(starts, ends, strict=True)]
        repeat = itertools.repeat
        return list(map(Message, offsets, repeat(ts), repeat(None), repeat(NO_HEADERS), values))
    keys = list(itertools.islice(keys, skip, stop))
    headers = list(itertools.islice(headers, skip, stop))
    return [
        Message(o, ts, k, h, buf[a:b])
        for o, k, h, a, b in zip(offsets, keys, headers, starts, ends, strict=True)
    ]


def _optional_blobs(buf: bytes, cursor: int, lengths: tuple[int, ...]) -> tuple[list, int]:
    out: list[bytes | None] = []
    for size in lengths:
        if size < 0:
            out.append(None)
        else:
            out.append(buf[cursor : cursor + size])
            cursor += size
    return out, cursor


def read_frames(
    buf: bytes, pos: int, frame_offset: int, first: int, stop: int, limit: int, out: list
) -> tuple[int, int]:
    """Decode the whole frames of `buf` from `pos` into `out`: the hot loop of every read.

    The frame at `pos` holds offset `frame_offset`; messages below `first` are skipped,
    frames at or past `stop` (not yet visible) are left alone, and decoding ends once `out`
    holds `limit` messages. Every frame decoded is CRC-checked. Returns the position and
    offset of the first frame not consumed (incomplete in `buf`, not visible, or `out` full).

    Plain frames (no keys, no headers) are decoded in C (`_framesc.read_plain`), which stops
    at any other frame and at one that fails a check; this loop then takes that one frame:
    decodes its keys and headers, or raises the precise `FrameError`.
    """
    size = len(buf)
    while True:
        pos, frame_offset = read_plain(buf, pos, frame_offset, first, stop, limit, out)
        if frame_offset >= stop or len(out) >= limit or size - pos < HEADER_SIZE:
            return pos, frame_offset
        length, crc, base, _, count, _, magic = HEADER.unpack_from(buf, pos)
        if base != frame_offset or magic != MAGIC or count < 1:
            try:
                header = parse_header(buf, pos)  # raises with the precise reason, or:
            except FrameError as exc:
                raise FrameError(str(exc), pos) from None
            raise FrameError(f"frame has offset {header.base_offset}, expected {frame_offset}", pos)
        end = pos + length
        if end > size:
            return pos, frame_offset
        if base + count > first:
            if crc32c(buf[pos + 8 : end]) != crc:
                raise FrameError(f"CRC mismatch (stored {crc:#010x})", pos)
            try:
                header = parse_header(buf, pos)
                decoded = decode(buf, pos, header, max(first, base), limit - len(out))
            except FrameError as exc:
                raise FrameError(str(exc), pos) from None
            out.extend(decoded)
            if decoded[-1].offset + 1 < base + count:
                return pos, frame_offset  # `out` filled up inside this frame
        pos = end
        frame_offset = base + count


# ------------------------------------------------------------------ frames built elsewhere

_STAMP = struct.Struct("<QQ")


def check_encoded(data: bytes) -> tuple[FrameHeader, list[int]]:
    """Check a frame built by a client (the binary wire's publish body): exactly one frame,
    sound layout and CRC, headers JSON objects of text. Its header and each message's size
    (value, key and headers bytes, as `max_message_bytes` counts them). Raises `FrameError`."""
    header = parse_header(data, 0)
    if header.length != len(data):
        raise FrameError(f"the body holds {len(data)} bytes, its frame header says {header.length}")
    check_crc(data, 0, header)
    n = header.count
    if not header.flags:
        sizes = list(struct.unpack_from(f"<{n}I", data, HEADER_SIZE))
        if HEADER_SIZE + 4 * n + sum(sizes) != header.length:
            raise FrameError(f"value lengths disagree with frame length {header.length}")
        return header, sizes
    try:
        messages = decode(data, 0, header, header.base_offset, n)
    except (ValueError, TypeError, struct.error) as exc:
        raise FrameError(f"frame columns are not sound: {exc}") from None
    sizes = []
    for m in messages:
        size = len(m.value) + len(m.key or b"")
        for name, value in m.headers.items():
            if not isinstance(value, str):
                raise FrameError(f"message {m.offset}: header {name!r} is not text")
            size += len(name.encode()) + len(value.encode())
        sizes.append(size)
    return header, sizes


def restamp(frame: bytes, base_offset: int, timestamp: int) -> bytes:
    """A checked frame numbered from `base_offset` at `timestamp`, its CRC recomputed."""
    tail = _STAMP.pack(base_offset, timestamp) + frame[24:]
    return _LENGTH_CRC.pack(len(frame), crc32c(tail)) + tail


def encode_messages(messages: list[Message]) -> bytes:
    """Stored messages framed afresh, keeping their offsets and timestamps: one frame per
    run of consecutive offsets sharing a timestamp (poll answers and damaged stretches of
    the binary wire, where stored frames cannot be sent as they are)."""
    out = []
    i, n = 0, len(messages)
    while i < n:
        first = messages[i]
        j = i + 1
        while (
            j < n
            and messages[j].offset == messages[j - 1].offset + 1
            and messages[j].timestamp == first.timestamp
        ):
            j += 1
        run = messages[i:j]
        if all(m.key is None and not m.headers for m in run):
            out.append(encode_many(first.offset, first.timestamp, [m.value for m in run]))
        else:
            records = [Record(m.value, m.key, m.headers or None) for m in run]
            out.append(encode(first.offset, first.timestamp, records))
        i = j
    return b"".join(out)
