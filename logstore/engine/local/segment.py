"""One segment file: its name, and walking its frames.

A topic's log is a directory of segment files, each named by the zero-padded offset of its
first message (`00000000000000000000.log`) and holding frames (see `record`) back to back.
Only the newest segment is appended to; the others are sealed. Frames never span files.

`scan` is the single place that walks frames from a position, checking framing, offset
continuity and (optionally) CRCs; recovery, the index rebuild, reads that meet damage,
`check` and the read-only follower all use it. Its two modes:

- strict: the first unsound frame ends the walk (`ScanStop` with the reason);
- resync: an unsound frame starts a `DamagedRegion`, which ends at the next frame that is
  sound (framing and CRC) and whose base offset continues the log; the walk goes on from
  there. Only when nothing sound follows does the walk end with an error `ScanStop`, and
  the caller decides whether that is a torn tail (the newest segment: cut it) or damage
  running to the end of a sealed segment (kept). So one flipped bit, in a header or a
  body, never makes the frames after it look like a torn tail.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ... import frames as record
from ...frames import FrameError, FrameHeader

SUFFIX = ".log"
_NAME = re.compile(r"^(\d{20})\.log$")
READ_CHUNK = 256 * 1024


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def list_segments(directory: str) -> list[int]:
    """Base offsets of the segment files in `directory`, ascending."""
    bases = (parse_segment_name(name) for name in os.listdir(directory))
    return sorted(b for b in bases if b is not None)


@dataclass(slots=True)
class ScanStop:
    """Where and why a scan stopped: `error` is None at a clean end of file."""

    position: int
    next_offset: int
    error: str | None = None


@dataclass(slots=True, frozen=True)
class DamagedRegion:
    """Bytes `[position, end)` of a segment that hold no sound frame: offsets
    `[first_offset, next_offset)` are unreadable (`Corruption`); the log goes on at `end`."""

    position: int
    end: int
    first_offset: int
    next_offset: int
    reason: str


_MAGIC_BYTES = record.MAGIC.to_bytes(2, "little")
_MAGIC_AT = record.HEADER_SIZE - 2
_SEARCH_CHUNK = 1 << 20


def pread_exactly(fd: int, size: int, position: int) -> bytes:
    """Up to `size` bytes at `position`; fewer only at end of file."""
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def scan(
    fd: int,
    position: int,
    next_offset: int,
    *,
    verify: bool = True,
    end: int | None = None,
    resync: bool = False,
) -> Iterator[tuple[int, FrameHeader] | DamagedRegion | ScanStop]:
    """Yield `(position, header)` for each sound frame from `position`, then one `ScanStop`.

    A frame is sound when its header is well formed, its base offset continues the previous
    frame (`next_offset`), it lies wholly before `end` (default: end of file) and, with
    `verify`, its CRC matches. Strict (default): the first unsound frame ends the scan with
    the reason. With `resync`: an unsound frame followed by a sound one yields a
    `DamagedRegion` and the scan goes on (see the module comment).
    """
    size = os.fstat(fd).st_size if end is None else end
    chunk = b""
    chunk_pos = position
    while position < size:
        rel = position - chunk_pos
        if len(chunk) - rel < record.HEADER_SIZE:
            chunk = pread_exactly(fd, min(READ_CHUNK, size - position), position)
            chunk_pos, rel = position, 0
        try:
            header = record.parse_header(chunk, rel)
            if header.base_offset != next_offset:
                raise FrameError(
                    f"frame starts at offset {header.base_offset}, expected {next_offset}"
                )
            if position + header.length > size:
                raise FrameError(
                    f"frame of {header.length} bytes runs past the end of the file "
                    f"({size - position} bytes left)"
                )
            if verify:
                if len(chunk) - rel < header.length:
                    chunk = pread_exactly(fd, max(READ_CHUNK, header.length), position)
                    chunk_pos, rel = position, 0
                record.check_crc(chunk, rel, header)
        except FrameError as exc:
            found = _next_sound_frame(fd, position + 1, size, next_offset) if resync else None
            if found is None:
                yield ScanStop(position, next_offset, str(exc))
                return
            yield DamagedRegion(position, found.position, next_offset, found.base_offset, str(exc))
            position, next_offset, chunk = found.position, found.base_offset, b""
            continue
        yield position, header
        position += header.length
        next_offset = header.next_offset
    yield ScanStop(position, next_offset)


@dataclass(slots=True, frozen=True)
class _Found:
    position: int
    base_offset: int


def _next_sound_frame(fd: int, start: int, size: int, expected: int) -> _Found | None:
    """The first sound frame at or after byte `start` whose offset is >= `expected`."""
    search = start + _MAGIC_AT
    while search < size:
        chunk = pread_exactly(fd, min(_SEARCH_CHUNK + 1, size - search), search)
        found = chunk.find(_MAGIC_BYTES)
        while found >= 0:
            candidate = search + found - _MAGIC_AT
            base = _sound_frame_at(fd, candidate, size, expected)
            if base is not None:
                return _Found(candidate, base)
            found = chunk.find(_MAGIC_BYTES, found + 1)
        search += _SEARCH_CHUNK
    return None


def _sound_frame_at(fd: int, position: int, size: int, expected: int) -> int | None:
    """The base offset of the frame at `position` if it is sound and continues `expected`."""
    try:
        header = record.parse_header(pread_exactly(fd, record.HEADER_SIZE, position), 0)
        if header.base_offset < expected or position + header.length > size:
            return None
        record.check_crc(pread_exactly(fd, header.length, position), 0, header)
    except FrameError:
        return None
    return header.base_offset


def fsync_directory(path: str) -> None:
    """Make a created, renamed or removed entry of directory `path` survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment(directory: str, base_offset: int) -> str:
    """Create the empty segment file `base_offset` in `directory`, durably; its path.

    An empty file of that name is taken over: a roll whose directory fsync failed left it,
    and the retry must make its entry durable instead of tripping over it."""
    path = os.path.join(directory, segment_name(base_offset))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if os.fstat(fd).st_size:
            raise FileExistsError(errno.EEXIST, "a segment with data is in the way", path)
    finally:
        os.close(fd)
    fsync_directory(directory)
    return path
