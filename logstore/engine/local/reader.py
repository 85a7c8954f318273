"""Reading a topic's log: locating an offset, decoding frames, stepping over damage.

A read snapshots the visible end offset first, then the segment tuple (so the segments it
reads cover every offset below that end), locates the frame holding `offset` through the
index (one B-tree lookup, then at most `INTERVAL_BYTES` of headers) and decodes whole
frames with `frames.read_frames`, checking the CRC of every frame it returns messages of.

Damage: each topic keeps the damaged regions it knows of (`TopicLog.add_damage`); a read
stops before one, raises `Corruption` for an offset inside one, and jumps over one it has
no need of. A read that meets damage it does not know yet (recovery scans only the tail)
walks that segment again in resync mode from where it started, keeps what it finds, and
reads again. Reads take no lock; they pin the descriptors they read.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lmdb

from ... import frames as record
from ...errors import Corruption, OffsetOutOfRange
from ...frames import FrameError
from ...types import Message, StoredFrames
from .index import IndexEntry
from .segment import READ_CHUNK, DamagedRegion, ScanStop, pread_exactly, scan

if TYPE_CHECKING:
    from .log import TopicLog


def read(topic: TopicLog, offset: int, max_messages: int, max_bytes: int | None) -> list[Message]:
    """Up to `max_messages` visible messages from `offset` (at least one if any).

    A read that reaches damaged bytes returns the messages before them, or raises
    `Corruption` when they hold `offset` itself; it steps over damage it has no need of.
    """
    topic._check_open()
    visible = topic.visible.value  # first: segments read after it cover every offset below
    segments = topic._segments
    if offset < segments[0] or offset > visible:
        raise OffsetOutOfRange(topic.topic_id, offset, segments[0], visible)
    out: list[Message] = []
    if offset == visible or max_messages <= 0:
        return out
    i, position, frame_offset = _locate(topic, segments, offset)
    budget = [max_bytes if max_bytes is not None else -1]
    while True:
        base = segments[i]
        path = topic.segment_path(base)
        start = _ReadStart(position, frame_offset, offset, len(out), budget[0])
        try:
            with topic._ctx.handles.pinned(path) as fd:
                while True:
                    try:
                        offset, done = _read_segment(
                            topic, fd, path, base, start, visible, out, max_messages, budget
                        )
                        break
                    except FrameError as exc:  # damage not met before: learn it, retry
                        _learn_damage(topic, fd, path, base, start, exc.position or 0)
                        del out[start.had :]
                        budget[0] = start.budget
        except FileNotFoundError:
            topic._check_open()
            raise OffsetOutOfRange(
                topic.topic_id, offset, topic.start_offset, topic.end_offset
            ) from None
        i += 1
        if done or i >= len(segments) or offset >= visible:
            return out
        position, frame_offset = 0, segments[i]


def _read_segment(
    topic: TopicLog, fd, path, base, start, visible, out, limit, budget
) -> tuple[int, bool]:
    """Read on in one segment; (next offset, done). Not done = its end was reached.

    Raises `FrameError` (with the absolute position) at damage it does not know yet."""
    position, frame_offset, offset = start.position, start.frame_offset, start.offset
    regions = topic._damage.get(base, ())
    want = min(READ_CHUNK, 8192 + 512 * limit)
    while frame_offset < visible and len(out) < limit:
        region = next((r for r in regions if r.position >= position), None)
        if region is not None and region.position == position:
            if offset < region.next_offset:
                if out:
                    return offset, True
                raise Corruption(path, region.position, region.reason)
            position, frame_offset = region.end, region.next_offset
            continue
        size = want if region is None else min(want, region.position - position)
        chunk = pread_exactly(fd, size, position)
        if not chunk:
            return offset, False
        had = len(out)
        try:
            used, frame_offset = record.read_frames(
                chunk, 0, frame_offset, offset, visible, limit, out
            )
        except FrameError as exc:
            raise FrameError(str(exc), position + (exc.position or 0)) from None
        if len(out) > had:
            if budget[0] >= 0:
                kept = _within_budget(out[had:], budget, bool(had))
                if len(kept) < len(out) - had:
                    del out[had + len(kept) :]
                    return out[-1].offset + 1, True
            offset = out[-1].offset + 1
        elif used == 0:  # the next frame is larger than what was read
            length = record.parse_header(chunk, 0).length
            if len(chunk) < want or position + length > os.fstat(fd).st_size:
                raise FrameError("the segment ends inside a frame", position)
            want = length
        position += used
    return offset, True


def _learn_damage(
    topic: TopicLog, fd: int, path: str, base: int, start: _ReadStart, at: int
) -> None:
    """Walk from `start` past byte `at`, where a read failed (and on to the first damage
    if `at` was too early), and keep the damage found.

    Raises `Corruption` when the walk finds none there (so a read never loops)."""
    with topic._io_lock:  # one learner at a time; the regions are replaced, not mutated
        known = topic._damage.get(base, ())
        found = []
        for item in scan(fd, start.position, start.frame_offset, resync=True):
            if isinstance(item, ScanStop):
                break
            if isinstance(item, DamagedRegion):
                if item not in known:
                    found.append(item)
            elif item[0] > at and found:
                break
        if not found:
            raise Corruption(path, at, "a frame fails its checks where a read met it")
        topic.add_damage(base, found)


def _locate(topic: TopicLog, segments: tuple[int, ...], offset: int) -> tuple[int, int, int]:
    """(segment index, byte position, frame offset) of a frame at or before `offset`,
    past any known damage below `offset`."""
    i = bisect_right(segments, offset) - 1
    entry = None
    pending = topic._pending
    if pending and pending[0].offset <= offset:
        entry = pending[bisect_right(pending, offset, key=_entry_offset) - 1]
    elif topic._ctx.index is not None:
        try:
            entry = topic._ctx.index.floor(topic.uid, offset)
        except lmdb.Error:
            topic._check_open()  # closed under us: StoreClosed, else just scan
    if entry is not None and entry.segment_base == segments[i]:
        position, frame_offset = entry.position, entry.offset
    else:
        position, frame_offset = 0, segments[i]
    for region in topic._damage.get(segments[i], ()):
        if region.position >= position and region.next_offset <= offset:
            position, frame_offset = region.end, region.next_offset
    return i, position, frame_offset


def offset_for_time(topic: TopicLog, timestamp: int) -> int:
    """The first visible offset whose timestamp is >= `timestamp` (end offset if none)."""
    topic._check_open()
    visible = topic.visible.value  # first: segments read after it cover every offset below
    segments = topic._segments
    entry = None
    pending = topic._pending
    if pending and pending[0].timestamp < timestamp:
        entry = pending[bisect_left(pending, timestamp, key=_entry_timestamp) - 1]
    elif topic._ctx.index is not None:
        try:
            entry = topic._ctx.index.floor_time(topic.uid, timestamp)
        except lmdb.Error:
            topic._check_open()
    if entry is None or entry.segment_base not in segments:
        i, position, frame_offset = 0, 0, segments[0]
    else:
        i, position, frame_offset = (
            segments.index(entry.segment_base),
            entry.position,
            entry.offset,
        )
    while frame_offset < visible:
        path = topic.segment_path(segments[i])
        try:
            with topic._ctx.handles.pinned(path) as fd:
                for item in scan(fd, position, frame_offset, verify=False, resync=True):
                    if isinstance(item, ScanStop):
                        break
                    if isinstance(item, DamagedRegion):
                        continue
                    _, header = item
                    if header.base_offset >= visible:
                        return visible
                    if header.timestamp >= timestamp:
                        return header.base_offset
        except FileNotFoundError:
            return offset_for_time(topic, timestamp)
        if item.error is not None:
            if item.next_offset >= visible:
                return visible
            raise Corruption(path, item.position, item.error)
        frame_offset = item.next_offset
        i += 1
        if i >= len(segments):
            break
        position = 0
    return visible


@dataclass(slots=True, frozen=True)
class _ReadStart:
    """Where a read of one segment began: it restarts there after learning of damage."""

    position: int
    frame_offset: int
    offset: int
    had: int
    budget: int


def _entry_offset(entry: IndexEntry) -> int:
    return entry.offset


def _entry_timestamp(entry: IndexEntry) -> int:
    return entry.timestamp


def _within_budget(batch: list[Message], budget: list[int], have_some: bool) -> list[Message]:
    """The prefix of `batch` within the remaining byte budget (which it spends); the first
    message of a read always fits."""
    for kept, message in enumerate(batch):
        size = len(message.value) + (len(message.key) if message.key else 0)
        if size > budget[0] and (have_some or kept):
            budget[0] = 0
            return batch[:kept]
        budget[0] = max(0, budget[0] - size)
    return batch


def read_stored(
    topic: TopicLog, offset: int, max_messages: int, max_bytes: int | None
) -> StoredFrames:
    """Whole frames as they lie in the segments, from the one holding `offset`: up to
    `max_messages` messages from `offset` and about `max_bytes` of frames (always one).

    The binary wire sends these without decoding them; their layout and CRC are checked
    here (in hardware, a few microseconds per 100 KB) so that damage on disk is met as
    `read` meets it, and the client checks the CRCs again, end to end. Where a check fails,
    or at known damage, the frames gathered so far are answered; with none gathered, the
    messages `read` gives (it learns and steps over damage, or raises `Corruption`) are
    framed afresh.
    """
    topic._check_open()
    visible = topic.visible.value  # first: segments read after it cover every offset below
    segments = topic._segments
    if offset < segments[0] or offset > visible:
        raise OffsetOutOfRange(topic.topic_id, offset, segments[0], visible)
    stop = min(visible, offset + max(max_messages, 0))
    if offset >= stop:
        return StoredFrames(b"", offset)
    i, position, frame_offset = _locate(topic, segments, offset)
    parts: list[bytes] = []
    budget = [max_bytes if max_bytes is not None else 2**62]
    while True:
        path = topic.segment_path(segments[i])
        walk = _StoredWalk(segments[i], position, frame_offset, offset, stop)
        try:
            with topic._ctx.handles.pinned(path) as fd:
                frame_offset, sound = _stored_frames(topic, fd, walk, budget, parts)
        except FileNotFoundError:
            topic._check_open()
            raise OffsetOutOfRange(
                topic.topic_id, offset, topic.start_offset, topic.end_offset
            ) from None
        i += 1
        if not sound or frame_offset >= stop or budget[0] <= 0 or i >= len(segments):
            break
        if frame_offset != segments[i]:
            break  # this segment ended early (damage at its tail): `read` will say so
        position = 0
    if not parts:
        messages = read(topic, offset, max_messages, max_bytes)
        next_offset = messages[-1].offset + 1 if messages else offset
        return StoredFrames(record.encode_messages(messages), next_offset)
    return StoredFrames(b"".join(parts), min(frame_offset, stop))


@dataclass(slots=True)
class _StoredWalk:
    base: int  # the segment's base offset
    position: int  # where the walk starts in it, at a frame boundary
    frame_offset: int  # offset of the frame there
    offset: int  # frames wholly below this are passed over, not gathered
    stop: int  # no frame from this offset on is gathered


def _stored_frames(
    topic: TopicLog, fd: int, walk: _StoredWalk, budget: list[int], parts: list[bytes]
) -> tuple[int, bool]:
    """Gather whole frames of one segment into `parts`; (next frame offset, sound). Not
    sound: a frame's layout failed, or known damage was met."""
    regions = topic._damage.get(walk.base, ())
    position, frame_offset, stop = walk.position, walk.frame_offset, walk.stop
    want = READ_CHUNK
    while frame_offset < stop and budget[0] > 0:
        region = next((r for r in regions if r.position >= position), None)
        if region is not None and region.position == position:
            return frame_offset, False
        size = want if region is None else min(want, region.position - position)
        chunk = pread_exactly(fd, size, position)
        if not chunk:
            return frame_offset, True
        start = pos = 0
        sound = True
        while frame_offset < stop and len(chunk) - pos >= record.HEADER_SIZE:
            length, crc, first, _, count, _, magic = record.HEADER.unpack_from(chunk, pos)
            if first != frame_offset or magic != record.MAGIC or count < 1:
                sound = False
                break
            if length < record.HEADER_SIZE + 4 * count:
                sound = False
                break
            if pos + length > len(chunk):
                break
            if first + count <= walk.offset:
                start = pos + length  # wholly before the offset asked for: not sent
            else:
                if (parts or pos > start) and pos + length - start > budget[0]:
                    budget[0] = 0  # the first frame always goes out, whatever its size
                    break
                if record.crc32c(chunk[pos + 8 : pos + length]) != crc:
                    sound = False  # damage recovery has not seen: `read` will learn it
                    break
            pos += length
            frame_offset = first + count
        if pos > start:
            parts.append(chunk[start:pos] if start or pos < len(chunk) else chunk)
            budget[0] -= pos - start
        if not sound:
            return frame_offset, False
        if pos == 0:  # not one whole frame in the chunk
            if budget[0] <= 0:
                return frame_offset, True
            length = int.from_bytes(chunk[:4], "little") if len(chunk) >= record.HEADER_SIZE else 0
            if len(chunk) < want or length <= len(chunk):
                return frame_offset, False  # cut by the file's end or by damage
            want = length
            continue
        position += pos
    return frame_offset, True
