"""The local engine: one data directory of topics, in segment files and LMDB.

Data directory layout::

    LOCK                 flock()ed by the one writing process (StoreLocked for a second)
    meta/                LMDB, synchronous: topics, subscriptions, index marker -- the truth
    index/               LMDB, no fsync: sparse offset and time index            -- a cache
    topics/<uid>-<id>/   one directory of segment files per topic incarnation

Opening runs these passes, each logged under `logstore.engine.local.engine`:

1. Lock the directory (writers only).
2. Open the metadata environment, creating it atomically (see `meta`).
3. Open the index, deleting it unread when the metadata cannot prove it sound, deleting and
   recreating it when it cannot be opened (see `index`).
4. Sweep topic directories that the metadata does not name: a create that died before its
   metadata commit, or a delete that died after it. Their index entries go with them.

Each topic then recovers on first use (see `loader` for its passes), so opening a store of
10,000 topics does not read 10,000 directories.

Idempotency keys are kept in memory, in one table for the store (see `idempotency`).

Threads: callers' threads do appends (group commit), reads and subscription work; one
maintenance thread per engine runs "interval" fsyncs, retention and deferred ack commits.
Thread-safe: any method may be called from any thread. The `*_async` methods never block
the event loop: they wait on it, and hop to its default executor only for file work.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Sequence

import lmdb

from ...config import IDEMPOTENCY_WINDOW_SECONDS, MAX_IDEMPOTENCY_KEYS, Stats
from ...errors import (
    InvalidArgument,
    LogstoreError,
    ReadOnlyStore,
    StoreClosed,
    StoreLocked,
    TopicExists,
    TopicNotFound,
)
from ...types import Message, StoredFrames, SubscriptionInfo, TopicInfo
from ..base import Batch, Leased, Outcome, SubscriptionSettings, TopicSettings
from .failures import storage_error
from .handles import FileHandles
from .idempotency import IdempotencyTable
from .index import OffsetIndex, boot_id, distrust
from .log import LogContext, TopicLog, now_ms
from .meta import MetaStore, TopicMeta
from .segment import create_segment, fsync_directory
from .subscriptions import Subscriptions

log = logging.getLogger(__name__)

_READONLY_POLL_SECONDS = 0.01


def topic_directory_name(topic_id: str, uid: int) -> str:
    """The directory of one topic incarnation: `<uid>-<id>` (uids are never reused)."""
    return f"{uid}-{topic_id}"[:255]


def topic_directory_uid(name: str) -> int | None:
    """The uid a topic directory name starts with, or None for a name of no topic."""
    uid = name.split("-", 1)[0]
    return int(uid) if uid.isdigit() else None


class LocalEngine:
    """Segments + LMDB in one directory. One writing process; readers may be many."""

    def __init__(
        self,
        path: str,
        fsync: str,
        *,
        fsync_interval: float,
        readonly: bool,
        max_open_files: int,
        idempotency_window: float = IDEMPOTENCY_WINDOW_SECONDS,
    ):
        self.path = path
        self.fsync = fsync
        self.readonly = readonly
        self.stats = Stats()
        self._topics_dir = os.path.join(self.path, "topics")
        self._lock = threading.Lock()
        self._logs: dict[str, TopicLog] = {}
        self._closed = False
        self._lock_fd: int | None = None
        if readonly:
            self._open_readonly()
        else:
            self._open_writable()
        self._ctx = LogContext(
            handles=FileHandles(max_open_files, writable=not readonly),
            index=self._index,
            fsync=fsync,
            readonly=readonly,
            stats=self.stats,
            idempotency=IdempotencyTable(idempotency_window, MAX_IDEMPOTENCY_KEYS),
        )
        if self._index is not None and self._index.rebuilt_reason:
            self.stats.rebuilt_index()
        if not readonly:
            self._sweep_orphans()
        self._subs = Subscriptions(self._meta, self._log, self._log_async, sync=fsync == "always")
        self._stop = threading.Event()
        self._maintainer = threading.Thread(
            target=self._maintain,
            args=(min(fsync_interval, 1.0),),
            name=f"logstore-maintenance {self.path}",
            daemon=True,
        )
        self._maintainer.start()

    def _open_writable(self) -> None:
        created = not os.path.isdir(self.path)
        os.makedirs(self._topics_dir, exist_ok=True)
        if created:
            fsync_directory(os.path.dirname(self.path))
        fsync_directory(self.path)
        self._lock_fd = os.open(os.path.join(self.path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(self.path) from None
        log.info("opening store %s (fsync=%s)", self.path, self.fsync)
        try:
            self._meta = MetaStore(
                os.path.join(self.path, "meta"), fresh_ok=not os.listdir(self._topics_dir)
            )
            index_path = os.path.join(self.path, "index")
            me = boot_id()
            why = distrust(self._meta.index_session(), os.path.isdir(index_path), me)
            self._meta.record_index_session(me, clean=False)  # before any index write
            self._index = OffsetIndex(index_path, discard=why)
            for name in ("meta", "index"):
                fsync_directory(os.path.join(self.path, name))
            fsync_directory(self.path)
        except BaseException:
            if getattr(self, "_meta", None) is not None:
                self._meta.close()
            os.close(self._lock_fd)  # else this process can never open the store again
            raise

    def _open_readonly(self) -> None:
        if not os.path.isdir(os.path.join(self.path, "meta")):
            raise InvalidArgument(f"{self.path} is not a logstore data directory")
        self._meta = MetaStore(os.path.join(self.path, "meta"), readonly=True)
        index_path = os.path.join(self.path, "index")
        self._index = None
        why = distrust(self._meta.index_session(), os.path.isdir(index_path), boot_id())
        if why:
            log.warning("read-only store %s: not using the index (%s); scanning", self.path, why)
            return
        try:
            self._index = OffsetIndex(index_path, readonly=True)
        except Exception as exc:  # any LMDB failure: read by scanning segments instead
            log.warning("read-only store %s: index unavailable (%s); scanning", self.path, exc)

    def _sweep_orphans(self) -> None:
        known = {m.uid for m in self._meta.topics().values()}
        for entry in os.listdir(self._topics_dir):
            uid = topic_directory_uid(entry)
            if uid in known:
                continue
            path = os.path.join(self._topics_dir, entry)
            log.warning("removing %s: no topic owns it (an interrupted create or delete)", path)
            if uid is not None:
                self._index.drop(uid)
            shutil.rmtree(path, ignore_errors=True)
            fsync_directory(self._topics_dir)

    # --------------------------------------------------------------- topics

    def create_topic(self, topic_id: str, settings: TopicSettings, *, exist_ok: bool) -> TopicInfo:
        self._check_writable()
        wanted = (
            settings.name,
            settings.retention_ms,
            settings.retention_bytes,
            settings.segment_bytes,
        )
        with self._lock:
            existing = self._meta.topic(topic_id)
            if existing is not None:
                same = existing.settings() == wanted
                if exist_ok and same:
                    return self._info(topic_id, self._log_locked(topic_id))
                raise TopicExists(topic_id, "" if same else _differences(existing, wanted))
            try:
                with self._meta.env.begin(write=True) as txn:
                    # Consumed even if this create fails: a directory it leaves is then
                    # nobody's, and the next open sweeps it, instead of a retry tripping on it.
                    uid = self._meta.next_uid(txn)
            except lmdb.Error as exc:
                raise storage_error(topic_id, exc, "committing a new topic's uid") from exc
            meta = TopicMeta(uid, *wanted, now_ms())
            directory = self._topic_dir(topic_id, uid)
            try:
                os.mkdir(directory)
                create_segment(directory, 0)
                fsync_directory(self._topics_dir)
            except OSError as exc:
                shutil.rmtree(directory, ignore_errors=True)  # best effort
                raise storage_error(topic_id, exc, f"creating {directory}") from exc
            try:
                with self._meta.env.begin(write=True) as txn:
                    self._meta.put_topic(txn, topic_id, meta)
            except lmdb.Error as exc:  # the directory is nobody's: the next open sweeps it
                raise storage_error(topic_id, exc, "committing the new topic") from exc
            topic = self._logs[topic_id] = TopicLog(self._ctx, topic_id, meta, directory)
            return self._info(topic_id, topic)

    def topics(self) -> list[TopicInfo]:
        self._check_open()
        with self._lock:
            ids = sorted(self._meta.topics())
            return [self._info(t, self._log_locked(t)) for t in ids]

    def topic(self, topic_id: str) -> TopicInfo:
        return self._info(topic_id, self._log(topic_id))

    def delete_topic(self, topic_id: str) -> None:
        self._check_writable()
        with self._lock:
            meta = self._meta.topic(topic_id)
            if meta is None:
                raise TopicNotFound(topic_id)
            try:
                with self._meta.env.begin(write=True) as txn:
                    self._meta.delete_topic(txn, topic_id)
                    self._subs.on_topic_deleted(txn, topic_id)
            except lmdb.Error as exc:
                raise storage_error(topic_id, exc, "committing the topic's deletion") from exc
            topic = self._logs.pop(topic_id, None)
        if topic is not None:
            topic.delete()
        self._index.drop(meta.uid)
        shutil.rmtree(self._topic_dir(topic_id, meta.uid), ignore_errors=True)
        fsync_directory(self._topics_dir)
        log.info("deleted topic %r", topic_id)

    # --------------------------------------------------------------- the log

    def append(
        self, topic_id: str, batches: Sequence[Batch], keys: Sequence[str | None] | None = None
    ) -> list[int]:
        if self.readonly:
            raise ReadOnlyStore(self.path)
        firsts = self._log(topic_id).append_frames(batches, keys)
        self._subs.on_written(topic_id)  # wakes the topic's waiting subscription polls
        return firsts

    def append_now(self, topic_id: str, batches: Sequence[Batch]) -> list[int] | None:
        topic = self._logs.get(topic_id)
        if topic is None or self.readonly or self._closed:
            return None  # loading a topic reads the disk: the caller's thread does that
        firsts = topic.append_now(batches)
        if firsts is not None:
            self._subs.on_written(topic_id)
        return firsts

    @property
    def idempotency_keys(self) -> int:
        return len(self._ctx.idempotency)

    def describe(self) -> dict[str, object]:
        return {"engine": "local", "path": self.path, "fsync": self.fsync}

    def read(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> list[Message]:
        topic = self._log(topic_id)
        if self.readonly:
            topic.refresh()
        return topic.read(offset, max_messages, max_bytes)

    def read_stored(
        self, topic_id: str, offset: int, max_messages: int, max_bytes: int | None
    ) -> StoredFrames:
        topic = self._log(topic_id)
        if self.readonly:
            topic.refresh()
        return topic.read_stored(offset, max_messages, max_bytes)

    def wait_beyond(self, topic_id: str, offset: int, timeout: float) -> bool:
        topic = self._log(topic_id)
        if not self.readonly:
            return topic.visible.wait_beyond(offset, timeout)
        # Another process writes: no in-process wake-up exists, so look every 10 ms.
        deadline = time.monotonic() + timeout
        while True:
            topic.refresh()
            if topic.end_offset > offset or time.monotonic() >= deadline:
                return topic.end_offset > offset
            time.sleep(_READONLY_POLL_SECONDS)

    async def wait_beyond_async(self, topic_id: str, offset: int, timeout: float) -> bool:
        topic = await self._log_async(topic_id)
        if not self.readonly:
            return await topic.visible.wait_beyond_async(offset, timeout)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            await loop.run_in_executor(None, topic.refresh)
            if topic.end_offset > offset or time.monotonic() >= deadline:
                return topic.end_offset > offset
            await asyncio.sleep(_READONLY_POLL_SECONDS)

    def offset_for_time(self, topic_id: str, timestamp_ms: int) -> int:
        topic = self._log(topic_id)
        if self.readonly:
            topic.refresh()
        return topic.offset_for_time(timestamp_ms)

    # -------------------------------------------------------- subscriptions

    def subscribe(
        self, topic_id: str, name: str, settings: SubscriptionSettings, start: int
    ) -> tuple[SubscriptionInfo, bool]:
        self._check_writable()
        return self._subs.subscribe(topic_id, name, settings, start)

    def unsubscribe(self, topic_id: str, name: str) -> None:
        self._check_writable()
        self._subs.unsubscribe(topic_id, name)

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        self._check_open()
        return self._subs.list(topic_id)

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        self._check_open()
        return self._subs.info(topic_id, name)

    def lease(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        self._check_writable()
        return self._subs.lease(topic_id, name, max_messages, wait, max_bytes)

    async def lease_async(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        self._check_writable()
        return await self._subs.lease_async(topic_id, name, max_messages, wait, max_bytes)

    def settle(
        self, topic_id: str, name: str, items: Iterable[int | str], outcome: Outcome
    ) -> SubscriptionInfo:
        self._check_writable()
        return self._subs.settle(topic_id, name, items, outcome)

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        self._check_writable()
        return self._subs.commit(topic_id, name, up_to)

    def seek(self, topic_id: str, name: str, offset: int) -> SubscriptionInfo:
        self._check_writable()
        return self._subs.seek(topic_id, name, offset)

    # ------------------------------------------------------------ life cycle

    def sync(self) -> None:
        """Flush every topic to stable storage now, whatever the fsync policy."""
        self._check_writable()
        for topic in list(self._logs.values()):
            topic.sync()

    def close(self) -> None:
        """Flush and close. Waiting readers wake up; later calls raise `StoreClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs = list(self._logs.values())
            self._logs.clear()
        self._stop.set()
        if self._maintainer is not threading.current_thread():
            self._maintainer.join()
        errors: list[LogstoreError] = []
        try:
            self._subs.close()
        except LogstoreError as exc:
            errors.append(exc)
        for topic in logs:
            try:
                topic.close()
            except LogstoreError as exc:
                errors.append(exc)
        try:
            self._ctx.handles.close_all()
            if self._index is not None:
                self._close_index()
        except (OSError, lmdb.Error) as exc:
            errors.append(storage_error("", exc, f"closing the store at {self.path}"))
        finally:
            self._meta.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # whatever failed: the directory is free again
        log.info("closed store %s", self.path)
        if errors:
            raise errors[0]

    def _close_index(self) -> None:
        """Sync the index, then record it clean; if either fails the next open, finding the
        session still open, trusts it only in this boot (see `index`)."""
        self._index.close()
        if not self.readonly:
            self._meta.record_index_session(boot_id(), clean=True)

    def _maintain(self, period: float) -> None:
        """Background duties: "interval" fsyncs, index checkpoints, retention by age."""
        while not self._stop.wait(period):
            for topic in list(self._logs.values()):
                try:
                    if self.readonly:
                        continue
                    if self.fsync == "interval" and topic.dirty:
                        topic.sync()
                    topic.apply_retention()
                except Exception as exc:  # one bad pass must not end fsyncs and retention
                    log.error("maintenance of topic %r failed: %s", topic.topic_id, exc)
            if not self.readonly:
                try:
                    self._subs.maintain()
                except Exception as exc:
                    log.error("maintenance of subscriptions failed: %s", exc)

    # --------------------------------------------------------------- helpers

    def _topic_dir(self, topic_id: str, uid: int) -> str:
        return os.path.join(self._topics_dir, topic_directory_name(topic_id, uid))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ReadOnlyStore(self.path)

    def _log(self, topic_id: str) -> TopicLog:
        """The topic's log, loaded (and recovered) on first use."""
        topic = self._logs.get(topic_id)
        if topic is not None and not self.readonly:
            return topic
        self._check_open()
        with self._lock:
            return self._log_locked(topic_id)

    async def _log_async(self, topic_id: str) -> TopicLog:
        """`_log` for the event loop: loading a topic (recovery, LMDB) runs in the executor."""
        topic = self._logs.get(topic_id)
        if topic is not None and not self.readonly:
            return topic
        return await asyncio.get_running_loop().run_in_executor(None, self._log, topic_id)

    def _log_locked(self, topic_id: str) -> TopicLog:
        self._check_open()
        topic = self._logs.get(topic_id)
        if topic is not None and not self.readonly:
            return topic
        meta = self._meta.topic(topic_id)
        if meta is None:
            if topic is not None:
                self._logs.pop(topic_id).delete()
            raise TopicNotFound(topic_id)
        if topic is not None and topic.uid == meta.uid:
            return topic
        if topic is not None:
            topic.delete()
        topic = TopicLog(self._ctx, topic_id, meta, self._topic_dir(topic_id, meta.uid))
        self._logs[topic_id] = topic
        return topic

    def _info(self, topic_id: str, topic: TopicLog) -> TopicInfo:
        if self.readonly:
            topic.refresh()
        meta = topic.meta
        return TopicInfo(
            id=topic_id,
            name=meta.name,
            start_offset=topic.start_offset,
            end_offset=topic.end_offset,
            size_bytes=topic.size_bytes,
            segments=topic.segment_count,
            created_at=meta.created_at,
            retention_ms=meta.retention_ms,
            retention_bytes=meta.retention_bytes,
            segment_bytes=meta.segment_bytes,
        )


_TOPIC_SETTINGS = ("name", "retention_ms", "retention_bytes", "segment_bytes")


def _differences(existing: TopicMeta, wanted: tuple) -> str:
    """What a create asked for that the existing topic does not have, for its error."""
    differ = [
        f"{field}={have!r}, not {want!r}"
        for field, have, want in zip(_TOPIC_SETTINGS, existing.settings(), wanted, strict=True)
        if have != want
    ]
    return " with different settings (" + "; ".join(differ) + "); delete it first to change them"
