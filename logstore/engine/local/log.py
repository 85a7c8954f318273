"""A topic's log: segments + index entries + appends (group commit) + reads + retention.

On disk a topic is a directory of segment files (see `segment`), each a run of frames (see
`record`). The LMDB offset index (see `index`) is a cache; the segments are the truth.

Recovery when a topic is opened, in passes (each logged under `logstore.topic`):

1. Segments: list the segment files; a topic directory without one gets an empty
   segment 0 (a create interrupted after `mkdir`).
2. Index check: take the topic's last index entry. It must name an existing segment and
   point at a sound frame with that base offset; otherwise the index is ahead of or
   inconsistent with the segments, and the topic's entries are dropped (full rebuild).
   Entries below the first segment (retention interrupted) are dropped.
3. Tail scan: from that entry (or the first segment when rebuilding) walk every frame,
   checking framing, offset continuity across segments and CRC, adding index entries.
   A frame with a sound header but a bad body, followed by sound log, is mid-log damage:
   it is kept (reads of it raise `Corruption`) and the scan goes on. Any other unsound
   frame is a torn tail: the segment is cut there (logged, counted in `Stats`) and later
   segments are removed. A later segment whose base offset does not continue the log (a
   roll interrupted after the previous tail was lost) is removed too.
4. State: end offset, last timestamp and active segment size come from the scan.

So opening costs time in proportion to the un-indexed tail, not to the log: pending index
entries are committed every `_PENDING_LIMIT` entries, at rolls and at close.

Appends and durability: `append` encodes the caller's frame and numbers its offsets under
the queue lock, then queues it. A caller that finds no leader leads: it takes the whole
queue, writes it with one `pwrite` and, under fsync="always", one `fdatasync`, wakes the
callers of that batch with one event, and hands leadership to the first caller of the next
batch (group commit, as in LevelDB's writer queue). Readers see messages once synced
("always") or once written ("interval", "never"). A failed write or sync cuts the file back
to its last good end and fails that batch and every batch queued behind it.

Thread-safety: every public method is thread-safe. `_lock` guards the queue; `_io_lock`
guards the files (writes, syncs, rolls, retention). Reads take neither: they snapshot the
immutable segment tuple and the visible end offset, and pin the descriptors they read.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import lmdb

from ... import frames as record
from ...config import Stats
from ...errors import (
    Corruption,
    LogstoreError,
    MessageTooLarge,
    OffsetOutOfRange,
    StorageError,
    StorageFull,
    StoreClosed,
    TopicNotFound,
)
from ...frames import FrameError, Message
from ...waiting import Watermark
from ..base import Batch
from .handles import FileHandles
from .index import INTERVAL_BYTES, IndexEntry, OffsetIndex
from .meta import TopicMeta
from .segment import (
    READ_CHUNK,
    DamagedRegion,
    ScanStop,
    create_segment,
    fsync_directory,
    list_segments,
    pread_exactly,
    scan,
    segment_name,
)

log = logging.getLogger("logstore.topic")

_PENDING_LIMIT = 32
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class LogContext:
    """What every topic of one store shares."""

    handles: FileHandles
    index: OffsetIndex | None
    fsync: str
    readonly: bool
    stats: Stats


class TopicLog:
    def __init__(self, ctx: LogContext, topic_id: str, meta: TopicMeta, directory: str):
        self.topic_id = topic_id
        self.meta = meta
        self.uid = meta.uid
        self.directory = directory
        self._ctx = ctx
        self._lock = threading.Lock()  # the queue: offsets handed out, frames waiting
        self._idle = threading.Condition(self._lock)
        self._io_lock = threading.Lock()  # the files: writes, syncs, rolls, retention
        self._queue: list[tuple[bytes, int, int, int]] = []
        self._batch = _Batch()
        self._leading = False
        self._next_offset = 0
        self._segments: tuple[int, ...] = ()
        self._active_path = ""
        self._sealed_sizes: dict[int, int] = {}  # replaced, never mutated: readers iterate it
        self._active_size = 0
        self._end = 0
        self._durable_end = 0
        self._durable_pos = 0
        self._last_ts = 0
        self._pending: list[IndexEntry] = []
        self._damage: dict[int, tuple[DamagedRegion, ...]] = {}  # by segment; replaced whole
        self._unsynced_sealed: list[str] = []  # fsync="never": rolled without a sync
        self._since_entry = 0
        self._dirty = False
        self._closed: LogstoreError | None = None
        self.visible = Watermark(0)
        self._recover()

    # ----------------------------------------------------------------- facts

    @property
    def start_offset(self) -> int:
        return self._segments[0]

    @property
    def end_offset(self) -> int:
        """The offset the next visible message will have."""
        return self.visible.value

    @property
    def size_bytes(self) -> int:
        return sum(self._sealed_sizes.values()) + self._active_size

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def segment_path(self, base: int) -> str:
        return os.path.join(self.directory, segment_name(base))

    # -------------------------------------------------------------- recovery

    def _recover(self) -> None:
        bases = list_segments(self.directory)
        if not bases:
            if self._ctx.readonly:
                self._segments = (0,)
                return
            log.info("topic %r: no segment file, creating segment 0", self.topic_id)
            self._create_segment(0)
            bases = [0]
        found = None
        resume = self._index_resume_point(bases)
        if resume is not None:
            found = self._scan_tail(bases, resume, from_index=True)
        if found is None:
            if self._ctx.index is not None and not self._ctx.readonly:
                log.info(
                    "topic %r: building the index from %d segment(s)", self.topic_id, len(bases)
                )
            found = self._scan_tail(bases, IndexEntry(bases[0], bases[0], 0, 0), from_index=False)
        bases, next_offset, active_size, last_ts, entries = found
        self._segments = tuple(bases)
        self._active_path = self.segment_path(bases[-1])
        self._sealed_sizes = {b: os.stat(self.segment_path(b)).st_size for b in bases[:-1]}
        self._active_size = self._durable_pos = active_size
        self._end = self._durable_end = self._next_offset = next_offset
        self._last_ts = last_ts
        self._since_entry = INTERVAL_BYTES
        if self._ctx.index is not None and not self._ctx.readonly:
            self._ctx.index.drop(self.uid, from_offset=next_offset)
            self._ctx.index.add(self.uid, entries)
        self.visible.reset(next_offset)

    def _index_resume_point(self, bases: list[int]) -> IndexEntry | None:
        """Pass 2: the last index entry, if it can be trusted as a place to resume from."""
        index = self._ctx.index
        if index is None:
            return None
        resume = index.last(self.uid)
        if resume is None:
            return None
        if resume.segment_base not in bases:
            return self._drop_index(
                f"its last index entry names missing segment {segment_name(resume.segment_base)}"
            )
        if bases[0] and not self._ctx.readonly and index.floor(self.uid, bases[0] - 1):
            index.drop(self.uid, below=bases[0])
        return resume

    def _drop_index(self, why: str) -> None:
        """Forget the topic's index entries (they disagree with the segments)."""
        log.warning("topic %r: %s; rebuilding its index from the segments", self.topic_id, why)
        if not self._ctx.readonly:
            self._ctx.index.drop(self.uid)
            self._ctx.stats.rebuilt_index()
        return None

    def _scan_tail(self, bases: list[int], resume: IndexEntry, *, from_index: bool):
        """Pass 3. None when the index entry it started from proves wrong."""
        first = bases.index(resume.segment_base)
        position, next_offset, last_ts = resume.position, resume.offset, resume.timestamp
        entries: list[IndexEntry] = []
        damage: dict[int, list[DamagedRegion]] = {}
        since = 0
        kept = bases[:first]
        for i in range(first, len(bases)):
            base = bases[i]
            if i > first:
                if base < next_offset:
                    self._remove_segments(
                        bases[i:],
                        f"segment {segment_name(base)} starts at offset {base}, inside "
                        f"the log before it (which ends at {next_offset})",
                    )
                    break
                if base > next_offset:  # whole frames lost at the end of the previous one
                    previous = self.segment_path(kept[-1])
                    size = os.stat(previous).st_size
                    self._keep_damage(
                        damage,
                        kept[-1],
                        DamagedRegion(
                            size, size, next_offset, base, f"offsets up to {base - 1} are missing"
                        ),
                    )
                    next_offset = base
                position = 0
            kept.append(base)
            path = self.segment_path(base)
            last_segment = i == len(bases) - 1
            with self._ctx.handles.pinned(path) as fd:
                for item in scan(fd, position, next_offset, resync=True):
                    if from_index and not isinstance(item, tuple):
                        break
                    from_index = False
                    if isinstance(item, ScanStop):
                        break
                    if isinstance(item, DamagedRegion):
                        self._keep_damage(damage, base, item)
                        since = INTERVAL_BYTES  # index the sound frame after it
                        continue
                    pos, header = item
                    if pos == 0 or since >= INTERVAL_BYTES:
                        entries.append(IndexEntry(header.base_offset, base, pos, header.timestamp))
                        since = 0
                    since += header.length
                    last_ts = header.timestamp
                size = os.fstat(fd).st_size
            if from_index:
                self._drop_index(
                    f"its last index entry (offset {resume.offset}) points at no "
                    f"sound frame in {path}"
                )
                return None
            position, next_offset = item.position, item.next_offset
            if item.error is None:
                continue
            following = None if last_segment else bases[i + 1]
            if following is not None and following > next_offset:
                # Damage up to the end of a sealed segment, and the log goes on after it.
                self._keep_damage(
                    damage,
                    base,
                    DamagedRegion(position, size, next_offset, following, item.error),
                )
                position, next_offset = size, following
                continue
            self._cut(path, position, item.error)
            if following is not None and following < next_offset:
                self._remove_segments(bases[i + 1 :], "the log before it ends inside it")
                break
        self._damage = {b: tuple(regions) for b, regions in damage.items()}
        return kept, next_offset, position, last_ts, entries

    def _keep_damage(self, damage: dict, base: int, region: DamagedRegion) -> None:
        self._log_damage(base, region)
        damage.setdefault(base, []).append(region)

    def _log_damage(self, base: int, region: DamagedRegion) -> None:
        log.error(
            "topic %r: damaged bytes %d..%d in %s (%s): offsets %d to %d are unreadable; "
            "keeping them and the log after them",
            self.topic_id,
            region.position,
            region.end,
            self.segment_path(base),
            region.reason,
            region.first_offset,
            region.next_offset - 1,
        )

    def _cut(self, path: str, position: int, reason: str) -> None:
        size = os.stat(path).st_size
        if self._ctx.readonly:
            return
        log.warning(
            "topic %r: torn tail in %s at byte %d (%s): cutting %d byte(s)",
            self.topic_id,
            path,
            position,
            reason,
            size - position,
        )
        with self._ctx.handles.pinned(path) as fd:
            os.ftruncate(fd, position)
            os.fsync(fd)
        self._ctx.stats.truncated(size - position)

    def _remove_segments(self, bases: list[int], reason: str) -> None:
        if not bases or self._ctx.readonly:
            return
        for base in bases:
            path = self.segment_path(base)
            log.warning("topic %r: removing segment %s: %s", self.topic_id, path, reason)
            self._ctx.stats.truncated(os.stat(path).st_size)
            self._ctx.handles.forget(path)
            os.unlink(path)
        fsync_directory(self.directory)

    def _create_segment(self, base: int) -> None:
        try:
            create_segment(self.directory, base)
        except OSError as exc:
            path = self.segment_path(base)
            raise self._storage_error(exc, f"creating segment {path}") from exc

    # --------------------------------------------------------------- appends

    def append_frames(self, batches: Sequence[Batch]) -> list[int]:
        """Append each batch as its own atomic frame, all written (and synced) together.

        The frames join a queue. Whoever finds no leader becomes one and writes every
        queued frame with one `pwrite` and (under "always") one `fdatasync`, while later
        callers queue up behind it: group commit without a thundering herd. Returns the
        first offset of each batch; nothing is queued if any batch is too large.
        """
        with self._lock:
            self._check_open()
            base = self._next_offset
            ts = max(now_ms(), self._last_ts)
            queued = []
            for batch in batches:
                records = batch.records
                try:
                    if batch.plain:
                        frame = record.encode_many(base, ts, records)
                    else:
                        frame = record.encode(base, ts, records)
                except record.FrameTooLarge as exc:
                    raise MessageTooLarge(self.topic_id, exc.size, record.MAX_FRAME_BYTES) from None
                queued.append((frame, base, base + len(records), ts))
                base += len(records)
            self._next_offset = base
            self._last_ts = ts
            self._queue.extend(queued)
            batch = self._batch
            lead = not self._leading
            heir = False
            if lead:
                self._leading = True
            elif batch.done is None:
                batch.done, batch.heir, heir = threading.Event(), threading.Event(), True
        if lead:
            self._lead()
        elif heir:
            batch.heir.wait()
            if not batch.finished:
                self._lead()  # handed over: this caller writes its own batch
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return [first for _, first, _, _ in queued]

    def _lead(self) -> None:
        """Write the batch at the head of the queue, then hand leadership to the next one."""
        with self._io_lock:
            with self._lock:
                items, batch = self._queue, self._batch
                self._queue, self._batch = [], _Batch()
            try:
                self._write_batch_locked(items)
            except Exception as exc:  # every caller must hear of it, whatever it was
                if not isinstance(exc, LogstoreError):
                    log.exception("topic %r: unexpected failure writing", self.topic_id)
                    exc = StorageError(self.topic_id, f"unexpected failure: {exc!r}")
                with self._lock:
                    # Frames queued behind this batch were numbered after it: void them.
                    behind, self._batch, self._queue = self._batch, _Batch(), []
                    self._next_offset = self._end
                behind.finish(exc)
                batch.finish(exc)
            else:
                batch.finish(None)
            with self._lock:
                if not self._queue:
                    self._leading = False
                    if self._closed is not None:
                        self._idle.notify_all()
                    return
                heir = self._batch.heir
        heir.set()  # the next batch's first caller leads it; `_leading` stays set

    def _write_batch_locked(self, items: list[tuple[bytes, int, int, int]]) -> None:
        """Write queued frames with one `pwrite`, rolling first if the first one does not fit.

        A batch never spans segments (it may overshoot `segment_bytes` by its own size), so a
        failure leaves the whole batch unwritten: callers never get an error for data that
        was in fact stored."""
        if self._active_size and self._active_size + len(items[0][0]) > self.meta.segment_bytes:
            self._roll_locked()
        position = self._active_size
        segment = self._segments[-1]
        for frame, base, _, ts in items:
            if position == 0 or self._since_entry >= INTERVAL_BYTES:
                self._pending.append(IndexEntry(base, segment, position, ts))
                self._since_entry = 0
            self._since_entry += len(frame)
            position += len(frame)
        data = items[0][0] if len(items) == 1 else b"".join([frame for frame, *_ in items])
        handle = self._ctx.handles.acquire(self._active_path)
        try:
            self._pwrite_locked(handle.fd, data, items[-1][2])
            if self._ctx.fsync == "always":
                self._sync_locked(handle.fd)
            else:
                self._dirty = True
                self.visible.advance(self._end)
        finally:
            self._ctx.handles.release(handle)
        if len(self._pending) >= _PENDING_LIMIT:
            self._flush_index_locked()

    def _pwrite_locked(self, fd: int, data: bytes, data_end: int) -> None:
        """Append `data` (whole frames ending before offset `data_end`) to the active segment."""
        position = self._active_size
        try:
            written = os.pwrite(fd, data, position)
            while written < len(data):
                n = os.pwrite(fd, memoryview(data)[written:], position + written)
                if n == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
        except OSError as exc:
            try:
                os.ftruncate(fd, position)
            except OSError as cut_exc:
                log.error(
                    "topic %r: cannot cut a partial write in %s at byte %d: %s",
                    self.topic_id,
                    self._active_path,
                    position,
                    cut_exc,
                )
            self._pending = [e for e in self._pending if e.offset < self._end]
            self._since_entry = INTERVAL_BYTES
            raise self._storage_error(exc, f"writing {self._active_path}") from exc
        self._active_size += len(data)
        self._end = data_end

    def _sync_locked(self, fd: int | None = None) -> None:
        """fdatasync the active segment; on failure cut back to what was synced before."""
        if self._durable_end >= self._end:
            return
        if fd is None:
            handle = self._ctx.handles.acquire(self._active_path)
            try:
                return self._sync_locked(handle.fd)
            finally:
                self._ctx.handles.release(handle)
        path = self._active_path
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            if self._ctx.fsync != "always":
                # Readers have seen these messages already: cutting them would reuse offsets.
                log.error(
                    "topic %r: fsync of %s failed (%s); retrying later", self.topic_id, path, exc
                )
                raise self._storage_error(exc, f"syncing {path}") from exc
            # The kernel may have dropped the unsynced pages (fsyncgate): keep nothing unsure.
            log.error(
                "topic %r: fsync of %s failed (%s): cutting back to offset %d",
                self.topic_id,
                path,
                exc,
                self._durable_end,
            )
            try:
                os.ftruncate(fd, self._durable_pos)
            except OSError as cut_exc:
                log.error("topic %r: cannot cut back %s: %s", self.topic_id, path, cut_exc)
            self._active_size = self._durable_pos
            self._end = self._durable_end
            self._pending = [e for e in self._pending if e.offset < self._end]
            self._since_entry = INTERVAL_BYTES
            raise self._storage_error(exc, f"syncing {path}") from exc
        self._ctx.stats.fsynced(time.perf_counter() - started)
        self._durable_end = self._end
        self._durable_pos = self._active_size
        self._dirty = False
        self.visible.advance(self._end)

    def _storage_error(self, exc: OSError, doing: str) -> StorageError:
        if exc.errno in _SPACE_ERRNOS:
            return StorageFull(self.topic_id, f"{os.strerror(exc.errno)} while {doing}")
        return StorageError(self.topic_id, f"{exc} while {doing}")

    def _roll_locked(self) -> None:
        """Seal the active segment (synced first, unless fsync="never") and start a new one."""
        if self._ctx.fsync != "never":
            self._sync_locked()
        elif self._durable_end < self._end:
            self._unsynced_sealed.append(self._active_path)
        self._create_segment(self._end)
        self._sealed_sizes = {**self._sealed_sizes, self._segments[-1]: self._active_size}
        self._segments = (*self._segments, self._end)
        self._active_path = self.segment_path(self._end)
        self._active_size = self._durable_pos = 0
        self._durable_end = self._end
        self._flush_index_locked()
        self._retain_locked(now_ms())

    def sync(self) -> None:
        """Make everything written so far durable (the "interval" flusher calls this)."""
        with self._io_lock:
            if self._closed is None:
                for path in self._unsynced_sealed:
                    try:
                        with self._ctx.handles.pinned(path) as fd:
                            os.fdatasync(fd)
                    except FileNotFoundError:
                        pass  # retention removed it
                    except OSError as exc:
                        raise self._storage_error(exc, f"syncing {path}") from exc
                self._unsynced_sealed = []
                self._sync_locked()
                self._flush_index_locked()

    def _flush_index_locked(self) -> None:
        """Commit pending index entries. The index is a cache: if LMDB refuses (a full disk),
        the entries are dropped and reads scan a little further; the next open redoes them."""
        if self._pending and self._ctx.index is not None:
            try:
                self._ctx.index.add(self.uid, self._pending)
            except lmdb.Error as exc:
                log.warning("topic %r: index update failed (%s); continuing", self.topic_id, exc)
            self._pending = []

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    # ----------------------------------------------------------------- reads

    def read(self, offset: int, max_messages: int, max_bytes: int | None) -> list[Message]:
        """Up to `max_messages` visible messages from `offset` (at least one if any).

        A read that reaches damaged bytes returns the messages before them, or raises
        `Corruption` when they hold `offset` itself; it steps over damage it has no need of.
        """
        self._check_open()
        visible = self.visible.value  # first: segments read after it cover every offset below
        segments = self._segments
        if offset < segments[0] or offset > visible:
            raise OffsetOutOfRange(self.topic_id, offset, segments[0], visible)
        out: list[Message] = []
        if offset == visible or max_messages <= 0:
            return out
        i, position, frame_offset = self._locate(segments, offset)
        budget = [max_bytes if max_bytes is not None else -1]
        while True:
            base = segments[i]
            path = self.segment_path(base)
            start = _ReadStart(position, frame_offset, offset, len(out), budget[0])
            try:
                with self._ctx.handles.pinned(path) as fd:
                    while True:
                        try:
                            offset, done = self._read_segment(
                                fd, path, base, start, visible, out, max_messages, budget
                            )
                            break
                        except FrameError as exc:  # damage not met before: learn it, retry
                            self._learn_damage(fd, path, base, start, exc.position or 0)
                            del out[start.had :]
                            budget[0] = start.budget
            except FileNotFoundError:
                self._check_open()
                raise OffsetOutOfRange(
                    self.topic_id, offset, self.start_offset, self.end_offset
                ) from None
            i += 1
            if done or i >= len(segments) or offset >= visible:
                return out
            position, frame_offset = 0, segments[i]

    def _read_segment(self, fd, path, base, start, visible, out, limit, budget) -> tuple[int, bool]:
        """Read on in one segment; (next offset, done). Not done = its end was reached.

        Raises `FrameError` (with the absolute position) at damage it does not know yet."""
        position, frame_offset, offset = start.position, start.frame_offset, start.offset
        regions = self._damage.get(base, ())
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

    def _learn_damage(self, fd: int, path: str, base: int, start: _ReadStart, at: int) -> None:
        """Walk from `start` past byte `at`, where a read failed (and on to the first damage
        if `at` was too early), and keep the damage found.

        Raises `Corruption` when the walk finds none there (so a read never loops)."""
        with self._io_lock:  # one learner at a time; the regions are replaced, not mutated
            known = self._damage.get(base, ())
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
            for region in found:
                self._log_damage(base, region)
            self._add_damage(base, found)

    def _add_damage(self, base: int, found: list[DamagedRegion]) -> None:
        """Merge regions into the damage map (replaced whole: readers iterate it unlocked)."""
        regions = tuple(sorted({*self._damage.get(base, ()), *found}, key=_region_position))
        self._damage = {**self._damage, base: regions}

    def _locate(self, segments: tuple[int, ...], offset: int) -> tuple[int, int, int]:
        """(segment index, byte position, frame offset) of a frame at or before `offset`,
        past any known damage below `offset`."""
        i = bisect_right(segments, offset) - 1
        entry = None
        pending = self._pending
        if pending and pending[0].offset <= offset:
            entry = pending[bisect_right(pending, offset, key=_entry_offset) - 1]
        elif self._ctx.index is not None:
            try:
                entry = self._ctx.index.floor(self.uid, offset)
            except lmdb.Error:
                self._check_open()  # closed under us: StoreClosed, else just scan
        if entry is not None and entry.segment_base == segments[i]:
            position, frame_offset = entry.position, entry.offset
        else:
            position, frame_offset = 0, segments[i]
        for region in self._damage.get(segments[i], ()):
            if region.position >= position and region.next_offset <= offset:
                position, frame_offset = region.end, region.next_offset
        return i, position, frame_offset

    def offset_for_time(self, timestamp: int) -> int:
        """The first visible offset whose timestamp is >= `timestamp` (end offset if none)."""
        self._check_open()
        visible = self.visible.value  # first: segments read after it cover every offset below
        segments = self._segments
        entry = None
        pending = self._pending
        if pending and pending[0].timestamp < timestamp:
            entry = pending[bisect_left(pending, timestamp, key=_entry_timestamp) - 1]
        elif self._ctx.index is not None:
            try:
                entry = self._ctx.index.floor_time(self.uid, timestamp)
            except lmdb.Error:
                self._check_open()
        if entry is None or entry.segment_base not in segments:
            i, position, frame_offset = 0, 0, segments[0]
        else:
            i, position, frame_offset = (
                segments.index(entry.segment_base),
                entry.position,
                entry.offset,
            )
        while frame_offset < visible:
            path = self.segment_path(segments[i])
            try:
                with self._ctx.handles.pinned(path) as fd:
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
                return self.offset_for_time(timestamp)
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

    # ------------------------------------------------------------- retention

    def apply_retention(self) -> int:
        """Delete whole sealed segments past the topic's age or size limit; how many."""
        with self._io_lock:
            if self._closed is not None:
                return 0
            return self._retain_locked(now_ms())

    def _retain_locked(self, now: int) -> int:
        retention_bytes, retention_ms = self.meta.retention_bytes, self.meta.retention_ms
        if retention_bytes is None and retention_ms is None:
            return 0
        segments = list(self._segments)
        victims = []
        if retention_bytes is not None:
            total = self.size_bytes
            while len(segments) > 1 and total - self._sealed_sizes[segments[0]] >= retention_bytes:
                total -= self._sealed_sizes[segments[0]]
                victims.append(segments.pop(0))
        if retention_ms is not None:
            while len(segments) > 1:
                modified = os.stat(self.segment_path(segments[0])).st_mtime * 1000
                if modified >= now - retention_ms:
                    break
                victims.append(segments.pop(0))
        if not victims:
            return 0
        self._segments = tuple(segments)
        self._sealed_sizes = {b: n for b, n in self._sealed_sizes.items() if b not in victims}
        self._pending = [e for e in self._pending if e.offset >= segments[0]]
        if self._ctx.index is not None:
            try:
                self._ctx.index.drop(self.uid, below=segments[0])
            except lmdb.Error as exc:  # a cache: the next open drops entries below the start
                log.warning("topic %r: index cleanup failed (%s)", self.topic_id, exc)
        for base in victims:
            path = self.segment_path(base)
            os.unlink(path)  # first: a reader opening it after this fails, not caches it
            self._ctx.handles.forget(path)
        fsync_directory(self.directory)
        log.info(
            "topic %r: retention removed %d segment(s); start offset is now %d",
            self.topic_id,
            len(victims),
            segments[0],
        )
        return len(victims)

    # ---------------------------------------------------------- life cycle

    @property
    def dirty(self) -> bool:
        return self._dirty

    def close(self, reason: LogstoreError | None = None) -> None:
        """Refuse new writes, let queued ones finish, flush (unless deleting), release files."""
        with self._lock:
            if self._closed is not None:
                return
            self._closed = reason or StoreClosed()
            while self._leading:
                self._idle.wait()
        try:
            with self._io_lock:
                if reason is None and not self._ctx.readonly:
                    if self._ctx.fsync != "never":
                        self._sync_locked()
                    self._flush_index_locked()
        finally:
            self.visible.close()
            for base in self._segments:
                self._ctx.handles.forget(self.segment_path(base))

    def delete(self) -> None:
        self.close(TopicNotFound(self.topic_id))

    # ------------------------------------------------- read-only followers

    def refresh(self) -> None:
        """Pick up what the writing process appended or retained (read-only stores only)."""
        with self._io_lock:
            try:
                bases = list_segments(self.directory)
            except FileNotFoundError:
                raise TopicNotFound(self.topic_id) from None  # the writer deleted it
            if not bases:
                return
            for gone in (b for b in self._segments if b < bases[0]):
                self._ctx.handles.forget(self.segment_path(gone))  # retention deleted it
            known = [b for b in self._segments if b >= bases[0]]
            position = self._active_size
            if not known:
                known, position, self._end = [bases[0]], 0, bases[0]
            self._sealed_sizes = {b: s for b, s in self._sealed_sizes.items() if b in known}
            newer = [b for b in bases if b > known[-1]]
            while True:
                path = self.segment_path(known[-1])
                try:
                    with self._ctx.handles.pinned(path) as fd:
                        for item in scan(fd, position, self._end, resync=True):
                            if isinstance(item, ScanStop):
                                break
                            if isinstance(item, tuple):
                                self._last_ts = item[1].timestamp
                            elif item not in self._damage.get(known[-1], ()):
                                self._log_damage(known[-1], item)
                                self._add_damage(known[-1], [item])
                    position, self._end = item.position, item.next_offset
                except FileNotFoundError:
                    return
                if item.error is not None or not newer or newer[0] != self._end:
                    break
                self._sealed_sizes = {**self._sealed_sizes, known[-1]: position}
                known.append(newer.pop(0))
                position = 0
            self._segments = tuple(known)
            self._active_path = self.segment_path(known[-1])
            self._active_size = position
            self.visible.advance(self._end)


class _Batch:
    """The callers whose frames one leader writes together, and how that went.

    The event exists only once a follower joins: a lone writer never pays for one."""

    __slots__ = ("done", "error", "finished", "heir")

    def __init__(self) -> None:
        self.done: threading.Event | None = None
        self.heir: threading.Event | None = None  # the first follower waits here
        self.error: LogstoreError | None = None
        self.finished = False

    def finish(self, error: LogstoreError | None) -> None:
        self.error = error
        self.finished = True
        if self.done is not None:
            self.done.set()
            self.heir.set()


@dataclass(slots=True, frozen=True)
class _ReadStart:
    """Where a read of one segment began: it restarts there after learning of damage."""

    position: int
    frame_offset: int
    offset: int
    had: int
    budget: int


def _region_position(region: DamagedRegion) -> int:
    return region.position


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
