"""A topic's log: its segments and the appends to them (group commit), syncs and rolls.

`TopicLog` holds a topic's state; the other jobs live beside it, one module each: loading
and recovery (`loader`), reads (`reader`), retention (`retention`) and the read-only
follower (`follower`). On disk a topic is a directory of segment files (see `segment`),
each a run of frames (see `frames`); the LMDB offset index (see `index`) is a cache, the
segments are the truth. Pending index entries are committed every `_PENDING_LIMIT`
entries, at rolls and at close, so a reopen scans only a short tail.

Appends and durability: `append_frames` encodes the callers' frames and numbers their
offsets under the queue lock, then queues them. A caller that finds no leader leads: it
takes the whole queue, writes it with one `pwrite` and, under fsync="always", one
`fdatasync`, wakes the callers of that batch (see `group_commit`), and hands leadership to the
first caller of the next batch (group commit, as in LevelDB's writer queue). Readers see
messages once synced ("always") or once written ("interval", "never"). A failed write or
sync cuts the file back to its last good end and fails that batch and every batch queued
behind it. Batches with idempotency keys take a separate path (`_append_keyed`) that
consults the store's key table (see `idempotency`) under the same queue lock.
`append_now` is the event loop's append: it writes only when that needs no wait at all
(both locks free at once, nobody queued, no fsync, roll or index commit due), else does
nothing and says so.

Thread-safety: every public method is thread-safe. `_lock` guards the queue; `_io_lock`
guards the files (writes, syncs, rolls, retention, damage found later). Reads take neither:
they snapshot the immutable segment tuple and the visible end offset, and pin the
descriptors they read.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import lmdb

from ... import frames as record
from ...config import Stats
from ...errors import (
    LogstoreError,
    MessageTooLarge,
    StorageError,
    StoreClosed,
    TopicNotFound,
)
from ...frames import FrameError, Message
from ...group_commit import GroupCommit, Ticket
from ...types import Replayed, StoredFrames
from ...waiting import Watermark
from ..base import Batch
from . import follower, reader, retention
from .failures import is_space, storage_error
from .handles import FileHandles
from .idempotency import Entry, IdempotencyTable
from .index import INTERVAL_BYTES, IndexEntry, OffsetIndex
from .loader import Loader, log_damage
from .meta import TopicMeta
from .published import Publisher, Subscriber
from .segment import (
    DamagedRegion,
    create_segment,
    fsync_directory,
    pread_exactly,
    segment_name,
)

log = logging.getLogger(__name__)

_PENDING_LIMIT = 32


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
    idempotency: IdempotencyTable


class TopicLog:
    def __init__(self, ctx: LogContext, topic_id: str, meta: TopicMeta, directory: str):
        self.topic_id = topic_id
        self.meta = meta
        self.uid = meta.uid
        self.directory = directory
        self._ctx = ctx
        self._io_lock = threading.Lock()  # the files: writes, syncs, rolls, retention
        self._commits: GroupCommit[_Frame] = GroupCommit(
            self._write_batch_locked, self._void_queued, exclusive=self._io_lock, name=topic_id
        )
        self._lock = self._commits.lock  # the queue: offsets handed out, frames waiting
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
        self._failed: StorageError | None = None  # set by a failed fsync: writes refused
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
        """Start from what the recovery passes found (see `loader`)."""
        loaded = Loader(self._ctx, self.topic_id, self.uid, self.directory).load()
        bases = loaded.segments
        self._segments = bases
        self._active_path = self.segment_path(bases[-1])
        self._sealed_sizes = {b: os.stat(self.segment_path(b)).st_size for b in bases[:-1]}
        self._active_size = self._durable_pos = loaded.active_size
        self._end = self._durable_end = self._next_offset = loaded.end_offset
        self._last_ts = loaded.last_timestamp
        self._damage = loaded.damage
        self._since_entry = INTERVAL_BYTES
        self.visible.reset(loaded.end_offset)
        if self._ctx.readonly:
            self._published: Publisher | Subscriber = Subscriber(self.directory)
        else:
            self._published = Publisher(self.directory, loaded.end_offset)

    def add_damage(self, base: int, found: list[DamagedRegion]) -> None:
        """Keep damage found after loading (by a read or a follower), logged once."""
        known = self._damage.get(base, ())
        new = [region for region in found if region not in known]
        for region in new:
            log_damage(self.topic_id, self.segment_path(base), region)
        if new:  # replaced whole: readers iterate it unlocked
            regions = tuple(sorted({*known, *new}, key=_region_position))
            self._damage = {**self._damage, base: regions}

    def _create_segment(self, base: int) -> None:
        try:
            create_segment(self.directory, base)
        except OSError as exc:
            path = self.segment_path(base)
            raise self._storage_error(exc, f"creating segment {path}") from exc

    # --------------------------------------------------------------- appends

    def append_frames(
        self, batches: Sequence[Batch], keys: Sequence[str | None] | None = None
    ) -> list[int]:
        """Append each batch as its own atomic frame, all written (and synced) together.

        The frames join a queue. Whoever finds no leader becomes one and writes every
        queued frame with one `pwrite` and (under "always") one `fdatasync`, while later
        callers queue up behind it: group commit without a thundering herd. Returns the
        first offset of each batch; nothing is queued if any batch is too large. `keys`
        (one idempotency key or None per batch) is handled by `_append_keyed`.
        """
        if keys is not None:
            return self._append_keyed(batches, keys)
        with self._lock:
            queued = self._frames_locked(batches)
            self._numbered_locked(queued)
            ticket = self._commits.enqueue_locked(queued)
        self._commits.wait(ticket)
        return [frame.first for frame in queued]

    def append_now(self, batches: Sequence[Batch]) -> list[int] | None:
        """`append_frames` (without keys) if it can finish at once; else None, nothing done.

        For an event loop that must not wait on the disk or on another thread: it writes
        only when both locks are free, nobody leads or queues, the policy leaves the fsync
        to later ("interval", "never"), and the write needs no roll and no index commit.
        Then the cost is one `pwrite` into the page cache, and readers see the messages at
        once. Otherwise the caller queues the batches on a thread with `append_frames`."""
        if self._ctx.fsync == "always" or not self._io_lock.acquire(blocking=False):
            return None
        try:
            if not self._lock.acquire(blocking=False):
                return None
            try:
                if not self._commits.idle_locked() or not batches:
                    return None
                queued = self._frames_locked(batches)
                size = sum(len(frame.data) for frame in queued)
                if self._active_size + size > self.meta.segment_bytes or (
                    len(self._pending) + len(queued) >= _PENDING_LIMIT
                ):
                    return None
                self._write_batch_locked(queued)
                self._numbered_locked(queued)
                return [frame.first for frame in queued]
            finally:
                self._lock.release()
        finally:
            self._io_lock.release()

    def _frames_locked(self, batches: Sequence[Batch]) -> list[_Frame]:
        """Each batch as one frame, numbered from the next offset (nothing is taken yet)."""
        base, ts = self._next_append_locked()
        frames = []
        for batch in batches:
            frame = self._encode(batch, base, ts)
            frames.append(frame)
            base = frame.end
        return frames

    def _numbered_locked(self, frames: list[_Frame]) -> None:
        """Take the offsets and the timestamp of `frames` (queued or written)."""
        if frames:
            self._next_offset = frames[-1].end
            self._last_ts = frames[-1].timestamp

    def _next_append_locked(self) -> tuple[int, int]:
        """(first offset, timestamp) for the next frames, if the topic takes writes now."""
        self._check_open()
        if self._failed is not None:
            raise self._failed
        return self._next_offset, max(now_ms(), self._last_ts)

    def _encode(self, batch: Batch, base: int, ts: int) -> _Frame:
        """One batch as one frame, numbered from `base` (under the queue lock)."""
        records = batch.records
        if batch.frame is not None:
            data = record.restamp(batch.frame, base, ts)
            return _Frame(data, base, base + batch.frame_count, ts)
        try:
            if batch.plain:
                data = record.encode_many(base, ts, records)
            else:
                data = record.encode(base, ts, records)
        except record.FrameTooLarge as exc:
            raise MessageTooLarge(self.topic_id, exc.size, record.MAX_FRAME_BYTES) from None
        return _Frame(data, base, base + len(records), ts)

    def _append_keyed(self, batches: Sequence[Batch], keys: Sequence[str | None]) -> list[int]:
        """`append_frames` with idempotency keys (see `idempotency` for the table).

        Under the queue lock each keyed batch is looked up: a key written within the window
        answers its first offset (a `Replayed`); a key in flight makes this caller join the
        group commit (with nothing of its own, if that is all it has) and, once its wait
        returns, answer that batch's first offset or, if that write failed, append the
        batch after all; a key used twice in this call appends once. New keys are added as
        their frames are queued, count as written when the group commit succeeds, and are
        dropped when it fails."""
        table, uid = self._ctx.idempotency, self.uid
        firsts: list[int] = []
        queued: list[_Frame] = []
        fresh: dict[str, int] = {}  # key -> first offset, for keys this call appends
        awaited: dict[int, Entry] = {}  # batch index -> entry of a keyed write in flight
        with self._lock:
            base, ts = self._next_append_locked()
            for i, (batch, key) in enumerate(zip(batches, keys, strict=True)):
                if key is not None:
                    if key in fresh:
                        firsts.append(Replayed(fresh[key]))
                        continue
                    entry = table.find(uid, key)
                    if entry is not None:
                        if entry.written():
                            firsts.append(Replayed(entry.first))
                        else:
                            awaited[i] = entry
                            firsts.append(-1)  # known once that write finishes
                        continue
                    fresh[key] = base
                frame = self._encode(batch, base, ts)
                queued.append(frame)
                firsts.append(base)
                base = frame.end
            if not queued and not awaited:
                return firsts  # every batch a replay of a finished write
            if queued:
                self._next_offset = base
                self._last_ts = ts
            ticket = self._commits.enqueue_locked(queued)
            mine = [(key, table.add(uid, key, first, ticket)) for key, first in fresh.items()]
        self._wait_keyed(ticket, mine, bool(queued))
        retry = [i for i, entry in awaited.items() if not self._replayed(entry, firsts, i)]
        if retry:
            again = self._append_keyed([batches[i] for i in retry], [keys[i] for i in retry])
            for i, first in zip(retry, again, strict=True):
                firsts[i] = first
        return firsts

    def _wait_keyed(self, ticket: Ticket, mine: list[tuple[str, Entry]], wrote: bool) -> None:
        """Wait for the group commit; keys of a failed write are forgotten. A caller that
        wrote nothing (it only waited for other callers' keys) does not raise: how those
        writes went decides its answer."""
        table = self._ctx.idempotency
        try:
            self._commits.wait(ticket)
        except LogstoreError:
            for key, entry in mine:
                table.forget(self.uid, key, entry)
            if wrote:
                raise
        else:
            for _, entry in mine:
                entry.settle()

    @staticmethod
    def _replayed(entry: Entry, firsts: list[int], i: int) -> bool:
        """Answer batch `i` from the keyed write it waited for, if that one was written.
        Batches finish in order (see `group_commit`), so that write has finished."""
        if entry.written():
            firsts[i] = Replayed(entry.first)
            return True
        return False

    def _void_queued(self, failed: list[_Frame], behind: list[_Frame]) -> list[_Frame]:
        """A batch failed: frames queued behind it were numbered after it, so void them."""
        self._next_offset = self._end
        return []

    def _write_batch_locked(self, items: list[_Frame]) -> None:
        """Write queued frames with one `pwrite`, rolling first if the first one does not fit.

        A batch never spans segments (it may overshoot `segment_bytes` by its own size), so a
        failure leaves the whole batch unwritten: callers never get an error for data that
        was in fact stored."""
        first = items[0].data
        if self._active_size and self._active_size + len(first) > self.meta.segment_bytes:
            self._roll_locked()
        position = self._active_size
        segment = self._segments[-1]
        for item in items:
            if position == 0 or self._since_entry >= INTERVAL_BYTES:
                self._pending.append(IndexEntry(item.first, segment, position, item.timestamp))
                self._since_entry = 0
            self._since_entry += len(item.data)
            position += len(item.data)
        data = first if len(items) == 1 else b"".join([item.data for item in items])
        handle = self._ctx.handles.acquire(self._active_path)
        try:
            self._pwrite_locked(handle.fd, data, items[-1].end)
            if self._ctx.fsync == "always":
                self._sync_locked(handle.fd)
            else:
                self._dirty = True
                self._make_visible()
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
            raise self._fsync_failed(fd, path, exc) from exc
        self._ctx.stats.fsynced(time.perf_counter() - started)
        self._durable_end = self._end
        self._durable_pos = self._active_size
        self._dirty = False
        self._make_visible()

    def _make_visible(self) -> None:
        """Readers here (the watermark) and followers elsewhere (`published`) see up to
        `_end` now."""
        self._published.publish(self._end)
        self.visible.advance(self._end)

    def _fsync_failed(self, fd: int, path: str, exc: OSError) -> StorageError:
        """After a failed fsync the kernel may have dropped the written pages, and a later
        fsync would report success for them (PostgreSQL's "fsyncgate"). So nothing unsure is
        kept or retried: under "always" the file is cut back to what was synced before (no
        caller of those bytes was told they were stored); where that cannot be done (readers
        have seen the bytes: "interval", "never") or the device failed (not a full disk),
        the topic refuses writes and syncs until the store is reopened, and reopening
        recovers from what is on disk."""
        error = self._storage_error(exc, f"syncing {path}")
        cut = self._ctx.fsync == "always"
        if cut:
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
                cut = False
            self._active_size = self._durable_pos
            self._end = self._durable_end
            self._pending = [e for e in self._pending if e.offset < self._end]
            self._since_entry = INTERVAL_BYTES
        if not cut or not is_space(exc):
            log.error(
                "topic %r: fsync of %s failed (%s): refusing writes until reopened",
                self.topic_id,
                path,
                exc,
            )
            self._failed = StorageError(
                self.topic_id,
                f"an fsync of {path} failed ({exc}), so the topic refuses writes until the "
                "store is reopened (reopening recovers from what is on disk)",
            )
        return error

    def _storage_error(self, exc: OSError, doing: str) -> StorageError:
        return storage_error(self.topic_id, exc, doing)

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
        try:
            self._retain_locked(now_ms())
        except OSError as exc:  # the write goes on; the maintenance thread tries again
            log.error("topic %r: retention failed while rolling: %s", self.topic_id, exc)

    def sync(self) -> None:
        """Make everything written so far durable (the "interval" flusher calls this)."""
        with self._io_lock:
            if self._closed is None:
                if self._failed is not None:
                    raise self._failed
                for path in self._unsynced_sealed:
                    try:
                        with self._ctx.handles.pinned(path) as fd:
                            os.fdatasync(fd)
                    except FileNotFoundError:
                        pass  # retention removed it
                    except OSError as exc:
                        raise self._fsync_failed(-1, path, exc) from exc
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
        """Up to `max_messages` visible messages from `offset` (see `reader`)."""
        return reader.read(self, offset, max_messages, max_bytes)

    def read_stored(self, offset: int, max_messages: int, max_bytes: int | None) -> StoredFrames:
        """Whole stored frames from the one holding `offset` (see `reader`)."""
        return reader.read_stored(self, offset, max_messages, max_bytes)

    def offset_for_time(self, timestamp: int) -> int:
        """The first visible offset whose timestamp is >= `timestamp` (see `reader`)."""
        return reader.offset_for_time(self, timestamp)

    # ------------------------------------------------------------- retention

    def apply_retention(self) -> int:
        """Delete whole sealed segments past the topic's age or size limit; how many."""
        with self._io_lock:
            if self._closed is not None:
                return 0
            return self._retain_locked(now_ms())

    def _retain_locked(self, now: int) -> int:
        """Delete the sealed segments the limits let go (see `retention`); how many."""
        meta = self.meta
        segments = list(self._segments)
        drop = 0
        if meta.retention_bytes is not None:
            size = self.size_bytes
            drop = retention.by_bytes(segments, self._sealed_sizes, size, meta.retention_bytes)
        if meta.retention_ms is not None:
            cutoff = now - meta.retention_ms
            drop = max(drop, retention.by_age(segments, self._newest_timestamp, cutoff))
        if not drop:
            return 0
        victims, segments = segments[:drop], segments[drop:]
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

    def _newest_timestamp(self, i: int) -> int | None:
        """An upper bound of the timestamps in sealed segment `i`: the first record of the
        segment after it, or the topic's last record if that segment is still empty."""
        following = self._segments[i + 1]
        with self._ctx.handles.pinned(self.segment_path(following)) as fd:
            head = pread_exactly(fd, record.HEADER_SIZE, 0)
        if not head and following == self._segments[-1]:
            return self._last_ts
        try:
            return record.parse_header(head, 0).timestamp
        except FrameError:
            return None  # damaged: keep it

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
            self._commits.drain_locked()
        try:
            with self._io_lock:
                if reason is None and not self._ctx.readonly and self._failed is None:
                    if self._ctx.fsync != "never":
                        self._sync_locked()
                    self._flush_index_locked()
        finally:
            self.visible.close()
            self._published.close()
            for base in self._segments:
                self._ctx.handles.forget(self.segment_path(base))

    def delete(self) -> None:
        self.close(TopicNotFound(self.topic_id))
        self._ctx.idempotency.forget_topic(self.uid)

    # ------------------------------------------------- read-only followers

    def refresh(self) -> None:
        """Pick up what the writing process appended or retained (see `follower`)."""
        follower.refresh(self)


@dataclass(slots=True)
class _Frame:
    """One queued frame and the offsets and timestamp it was numbered with."""

    data: bytes
    first: int  # base offset
    end: int  # the offset after its last message
    timestamp: int


def _region_position(region: DamagedRegion) -> int:
    return region.position
