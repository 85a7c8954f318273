"""`Store`: the public face of the library. One data directory, many topics.

Data directory layout::

    LOCK                 flock()ed by the one writing process (StoreLocked for a second)
    meta/                LMDB, synchronous: topics (and subscriptions)      -- the truth
    index/               LMDB, no fsync: sparse offset and time index       -- a cache
    topics/<uid>-<id>/   one directory of segment files per topic incarnation

Opening runs these passes, each logged under `logstore.store`:

1. Lock the directory (writers only).
2. Open the metadata environment.
3. Open the index; drop it when the machine restarted while it was open, delete and
   recreate it when it cannot be opened (see `index`).
4. Sweep topic directories that the metadata does not name: a create that died before its
   metadata commit, or a delete that died after it. Their index entries go with them.

Each topic then recovers on first use (see `topic` for its passes), so opening a store of
10,000 topics does not read 10,000 directories.

Thread-safe: any method may be called from any thread. `wait_async` and `read_async`
serve asyncio code without blocking its event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from . import record
from .config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SEGMENT_BYTES,
    FSYNC_POLICIES,
    MAX_DISPLAY_NAME,
    MIN_SEGMENT_BYTES,
    Stats,
    check_name,
    check_optional_positive,
)
from .errors import (
    InvalidArgument,
    LogstoreError,
    MessageTooLarge,
    ReadOnlyStore,
    StorageError,
    StoreClosed,
    StoreLocked,
    TopicExists,
    TopicNotFound,
)
from .handles import FileHandles
from .index import OffsetIndex, boot_id, distrust
from .meta import MetaStore, TopicMeta
from .segment import create_segment, fsync_directory
from .subscriptions import Subscriptions
from .topic import LogContext, TopicLog, now_ms
from .types import Delivery, Message, Record, SubscriptionInfo, TopicInfo

log = logging.getLogger("logstore.store")

_READONLY_POLL_SECONDS = 0.01


class Store:
    """A data directory of topics. Open one writer per directory; readers may be many.

    `fsync` is "always" (a write returns once it is on stable storage; concurrent writers
    share fsyncs), "interval" (flushed every `fsync_interval` seconds) or "never".
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: str = "always",
        *,
        fsync_interval: float = 1.0,
        readonly: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_open_files: int = 256,
    ):
        if fsync not in FSYNC_POLICIES:
            raise InvalidArgument(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if not fsync_interval > 0:
            raise InvalidArgument(f"fsync_interval must be positive, not {fsync_interval!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.fsync = fsync
        self.readonly = readonly
        self.max_message_bytes = max_message_bytes
        self.stats = Stats()
        self._topics_dir = os.path.join(self.path, "topics")
        self._lock = threading.Lock()
        self._logs: dict[str, TopicLog] = {}
        self._closed = False
        self._lock_fd: int | None = None
        if not record.CRC_IS_NATIVE:
            log.warning(
                "crcmod's C extension is missing: CRC-32C runs in pure Python, about 40x "
                "slower. Reinstall crcmod with a C compiler and the Python headers present."
            )
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
        )
        if self._index is not None and self._index.rebuilt_reason:
            self.stats.rebuilt_index()
        if not readonly:
            self._sweep_orphans()
        self._subs = Subscriptions(self, self._meta)
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
            uid_text = entry.split("-", 1)[0]
            if uid_text.isdigit() and int(uid_text) in known:
                continue
            path = os.path.join(self._topics_dir, entry)
            log.warning("removing %s: no topic owns it (an interrupted create or delete)", path)
            if uid_text.isdigit():
                self._index.drop(int(uid_text))
            shutil.rmtree(path, ignore_errors=True)
            fsync_directory(self._topics_dir)

    # --------------------------------------------------------------- topics

    def create_topic(
        self,
        topic_id: str,
        name: str | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """Create a topic. With `exist_ok`, an existing topic with the same settings is fine."""
        self._check_writable()
        check_name(topic_id)
        name = topic_id if name is None else name
        if not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME:
            raise InvalidArgument(f"topic name must be text of at most {MAX_DISPLAY_NAME} chars")
        check_optional_positive(retention_ms, "retention_ms")
        check_optional_positive(retention_bytes, "retention_bytes")
        check_optional_positive(segment_bytes, "segment_bytes")
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise InvalidArgument(f"segment_bytes must be at least {MIN_SEGMENT_BYTES}")
        with self._lock:
            existing = self._meta.topic(topic_id)
            if existing is not None:
                wanted = (name, retention_ms, retention_bytes, segment_bytes)
                if exist_ok and existing.settings() == wanted:
                    return self._info(topic_id, self._log_locked(topic_id))
                same = existing.settings() == wanted
                raise TopicExists(topic_id, "" if same else " with different settings")
            with self._meta.env.begin(write=True) as txn:
                # Consumed even if this create fails: a directory it leaves is then nobody's,
                # and the next open sweeps it, instead of a retry tripping over it.
                uid = self._meta.next_uid(txn)
            meta = TopicMeta(uid, name, retention_ms, retention_bytes, segment_bytes, now_ms())
            directory = self._topic_dir(topic_id, uid)
            try:
                os.mkdir(directory)
                create_segment(directory, 0)
                fsync_directory(self._topics_dir)
            except OSError as exc:
                shutil.rmtree(directory, ignore_errors=True)  # best effort
                raise StorageError(topic_id, f"{exc} while creating {directory}") from exc
            with self._meta.env.begin(write=True) as txn:
                self._meta.put_topic(txn, topic_id, meta)
            topic = self._logs[topic_id] = TopicLog(self._ctx, topic_id, meta, directory)
            return self._info(topic_id, topic)

    def topics(self) -> list[TopicInfo]:
        self._check_open()
        with self._lock:
            ids = sorted(self._meta.topics())
            return [self._info(t, self._log_locked(t)) for t in ids]

    def topic(self, topic_id: str) -> TopicInfo:
        topic = self._log(topic_id)
        return self._info(topic_id, topic)

    def delete_topic(self, topic_id: str) -> None:
        """Delete a topic and its subscriptions; a re-created topic starts at offset 0."""
        self._check_writable()
        check_name(topic_id)
        with self._lock:
            meta = self._meta.topic(topic_id)
            if meta is None:
                raise TopicNotFound(topic_id)
            with self._meta.env.begin(write=True) as txn:
                self._meta.delete_topic(txn, topic_id)
                self._subs.on_topic_deleted(txn, topic_id)
            topic = self._logs.pop(topic_id, None)
        if topic is not None:
            topic.delete()
        self._index.drop(meta.uid)
        shutil.rmtree(self._topic_dir(topic_id, meta.uid), ignore_errors=True)
        fsync_directory(self._topics_dir)
        log.info("deleted topic %r", topic_id)

    # -------------------------------------------------------------- writing

    def write(
        self,
        topic_id: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Append one message; its offset. Durable on return under fsync="always"."""
        topic = self._writable_log(topic_id)
        if key is None and not headers:
            offset = topic.append([self._check_value(topic_id, value)], plain=True)
        else:
            item = self._check_record(topic_id, Record(value, key, headers))
            offset = topic.append([item], plain=False)
        self._subs.on_written(topic_id)  # wakes the topic's waiting subscription polls
        return offset

    def write_many(self, topic_id: str, messages: Iterable[bytes | Record]) -> int:
        """Append a batch atomically (all or nothing, even across a crash); first offset."""
        return self.write_batches(topic_id, [messages])[0]

    def write_batches(
        self, topic_id: str, batches: Sequence[Iterable[bytes | Record]]
    ) -> list[int]:
        """Append several batches, each atomic, written and synced together; first offsets.

        For a server or a pipeline that gathers many callers' writes: one `pwrite` and one
        fsync serve them all. Every batch is checked before any is written."""
        topic = self._writable_log(topic_id)
        firsts = topic.append_frames([self._checked_batch(topic_id, b) for b in batches])
        self._subs.on_written(topic_id)  # wakes the topic's waiting subscription polls
        return firsts

    def _checked_batch(self, topic_id: str, messages: Iterable[bytes | Record]) -> tuple:
        """(records, plain): validated, and plain when all are bytes (the fast frame path)."""
        items = list(messages)
        if not items:
            raise InvalidArgument(f"a batch for topic {topic_id!r} is empty")
        if all(type(m) is bytes for m in items):
            limit = self.max_message_bytes
            for m in items:
                if len(m) > limit:
                    raise MessageTooLarge(topic_id, len(m), limit)
            return items, True
        return [self._check_record(topic_id, m) for m in items], False

    def _check_value(self, topic_id: str, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument(f"message value must be bytes, not {type(value).__name__}")
        value = bytes(value)
        if len(value) > self.max_message_bytes:
            raise MessageTooLarge(topic_id, len(value), self.max_message_bytes)
        return value

    def _check_record(self, topic_id: str, item: object) -> Record:
        if not isinstance(item, Record):
            return Record(self._check_value(topic_id, item))
        value = self._check_value(topic_id, item.value)
        key = item.key
        if key is not None:
            if not isinstance(key, bytes | bytearray | memoryview):
                raise InvalidArgument(f"message key must be bytes or None, not {type(key)!r}")
            key = bytes(key)
        headers = item.headers
        size = len(value) + len(key or b"")
        if headers:
            if not isinstance(headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                raise InvalidArgument("message headers must map str to str")
            headers = dict(headers)
            try:
                size += sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
            except UnicodeEncodeError:
                raise InvalidArgument("message headers must be valid Unicode text") from None
        if size > self.max_message_bytes:
            raise MessageTooLarge(topic_id, size, self.max_message_bytes)
        return Record(value, key, headers or None)

    # -------------------------------------------------------------- reading

    def read(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
    ) -> list[Message]:
        """Messages from `offset`; with `wait`, block up to that long for the first one."""
        topic = self._log(topic_id)
        self._check_read_args(offset, max_messages, max_bytes, wait)
        if wait > 0 and offset == topic.end_offset:
            self._wait(topic, offset, wait)
        if self.readonly:
            topic.refresh()
        return topic.read(offset, max_messages, max_bytes)

    async def read_async(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
    ) -> list[Message]:
        """`read` for asyncio: waits on the event loop, reads in the default executor."""
        topic = self._log(topic_id)
        self._check_read_args(offset, max_messages, max_bytes, wait)
        if wait > 0 and offset == topic.end_offset:
            await self.wait_async(topic_id, offset, wait)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self.read, topic_id, offset, max_messages, max_bytes
        )

    def wait(self, topic_id: str, offset: int, timeout: float) -> bool:
        """Block until a message at `offset` is readable (True) or `timeout` passes."""
        return self._wait(self._log(topic_id), offset, timeout)

    async def wait_async(self, topic_id: str, offset: int, timeout: float) -> bool:
        """`wait` for asyncio code: suspends the task, never blocks the event loop."""
        topic = self._log(topic_id)
        if not self.readonly:
            return await topic.visible.wait_beyond_async(offset, timeout)
        deadline = time.monotonic() + timeout
        while True:
            topic.refresh()
            if topic.end_offset > offset or time.monotonic() >= deadline:
                return topic.end_offset > offset
            await asyncio.sleep(_READONLY_POLL_SECONDS)

    def _wait(self, topic: TopicLog, offset: int, timeout: float) -> bool:
        if not self.readonly:
            return topic.visible.wait_beyond(offset, timeout)
        # Another process writes: no in-process wake-up exists, so look every 10 ms.
        deadline = time.monotonic() + timeout
        while True:
            topic.refresh()
            if topic.end_offset > offset or time.monotonic() >= deadline:
                return topic.end_offset > offset
            time.sleep(_READONLY_POLL_SECONDS)

    def offset_for_time(self, topic_id: str, timestamp_ms: int | datetime) -> int:
        """The first offset whose timestamp is >= `timestamp_ms` (the end offset if none)."""
        if isinstance(timestamp_ms, datetime):
            timestamp_ms = int(timestamp_ms.timestamp() * 1000)
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
            raise InvalidArgument(f"timestamp must be int milliseconds, not {timestamp_ms!r}")
        topic = self._log(topic_id)
        if self.readonly:
            topic.refresh()
        return topic.offset_for_time(timestamp_ms)

    @staticmethod
    def _check_read_args(offset, max_messages, max_bytes, wait) -> None:
        for value, what in ((offset, "offset"), (max_messages, "max_messages")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{what} must be an int, not {value!r}")
        if max_messages < 1:
            raise InvalidArgument(f"max_messages must be at least 1, not {max_messages}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
            raise InvalidArgument(f"max_bytes must be a positive int or None, not {max_bytes!r}")
        if not isinstance(wait, int | float) or not wait >= 0:
            raise InvalidArgument(f"wait must be a non-negative number of seconds, not {wait!r}")

    # -------------------------------------------------------- subscriptions
    # Thin delegations: the state and the rules live in `subscriptions.Subscriptions`.

    def subscribe(
        self,
        topic_id: str,
        name: str,
        start: str | int | datetime = "earliest",
        ack_wait: float = 30.0,
        max_deliveries: int | None = None,
        dead_letter_topic: str | None = None,
        *,
        start_time: int | datetime | None = None,
    ) -> SubscriptionInfo:
        """Create a durable subscription (a no-op if it exists with the same settings).

        `start_time` (ms since the epoch, or a datetime) starts at the first message at or
        after that time, instead of at `start`.
        """
        self._check_writable()
        return self._subs.subscribe(
            topic_id,
            name,
            start,
            ack_wait,
            max_deliveries,
            dead_letter_topic,
            start_time=start_time,
        )

    def unsubscribe(self, topic_id: str, name: str) -> None:
        self._check_writable()
        self._subs.unsubscribe(topic_id, name)

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        self._check_open()
        return self._subs.list(topic_id)

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        self._check_open()
        return self._subs.info(topic_id, name)

    def poll(
        self, topic_id: str, name: str, max_messages: int = 100, wait: float = 0.0
    ) -> list[Delivery]:
        """Lease the next deliverable messages to this caller for the `ack_wait`."""
        self._check_writable()
        return self._subs.poll(topic_id, name, max_messages, wait)

    async def poll_async(
        self, topic_id: str, name: str, max_messages: int = 100, wait: float = 0.0
    ) -> list[Delivery]:
        """`poll` for asyncio code: waits without blocking the event loop."""
        self._check_writable()
        return await self._subs.poll_async(topic_id, name, max_messages, wait)

    def ack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """Acknowledge offsets or lease tokens (`Delivery.lease`). A token of an expired or
        replaced lease still acknowledges its offset."""
        self._check_writable()
        return self._subs.ack(topic_id, name, offsets)

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to`."""
        self._check_writable()
        return self._subs.commit(topic_id, name, up_to)

    def nack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """End these leases now, so the messages are delivered again. An offset ends its
        current lease; a token of an expired or replaced lease is ignored."""
        self._check_writable()
        return self._subs.nack(topic_id, name, offsets)

    def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        """Move the subscription to an offset, a time, or "earliest"/"latest" (replay)."""
        self._check_writable()
        return self._subs.seek(topic_id, name, offset, timestamp=timestamp, position=position)

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
        errors = []
        try:
            self._subs.close()
        except LogstoreError as exc:
            errors.append(exc)
        for topic in logs:
            try:
                topic.close()
            except LogstoreError as exc:
                errors.append(exc)
        self._ctx.handles.close_all()
        if self._index is not None:
            self._index.close()
            if not self.readonly:
                self._meta.record_index_session(boot_id(), clean=True)
        self._meta.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        log.info("closed store %s", self.path)
        if errors:
            raise errors[0]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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
        return os.path.join(self._topics_dir, f"{uid}-{topic_id}"[:255])

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ReadOnlyStore(self.path)

    def _writable_log(self, topic_id: str) -> TopicLog:
        if self.readonly:
            raise ReadOnlyStore(self.path)
        return self._log(topic_id)

    def _log(self, topic_id: str) -> TopicLog:
        topic = self._logs.get(topic_id)
        if topic is not None and not self.readonly:
            return topic
        self._check_open()
        check_name(topic_id)
        with self._lock:
            return self._log_locked(topic_id)

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
