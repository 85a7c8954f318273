"""`Store`: the public face of the library, the same for every engine.

The facade checks what callers give (names, messages, arguments), resolves where a read or a
subscription starts (offsets, times, "earliest"/"latest": `resolve_start`, the one place),
dead-letters messages that reached `max_deliveries`, and offers the synchronous and asyncio
forms. Everything stored lives behind the engine seam (`engine.base.Engine`); today the
engine is the local one (`engine.local`: a data directory of segment files and LMDB).

Threads: the synchronous methods run on the caller's thread (the local engine adds none
but its maintenance thread). The `*_async` methods never block the event loop: they wait on
it and hop to the loop's default executor only for work that touches files, so a server
that sets one executor runs everything on that one.

Thread-safe: any method may be called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from . import frames, iterators
from .config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SEGMENT_BYTES,
    FSYNC_POLICIES,
    IDEMPOTENCY_WINDOW_SECONDS,
    MAX_BATCH_MESSAGES,
    MAX_IDEMPOTENCY_KEY,
    MIN_SEGMENT_BYTES,
    Stats,
    check_display_name,
    check_name,
    check_optional_positive,
)
from .engine.base import Batch, Engine, Leased, SubscriptionSettings, TopicSettings
from .engine.jetstream.options import is_cluster_url
from .engine.local.engine import LocalEngine
from .errors import (
    InvalidArgument,
    LogstoreError,
    MessageTooLarge,
    OffsetOutOfRange,
)
from .types import (
    Delivery,
    EncodedBatch,
    Message,
    Record,
    StoredFrames,
    SubscriptionInfo,
    TopicInfo,
)

log = logging.getLogger(__name__)

POSITIONS = ("earliest", "latest")
DEAD_LETTER_HEADERS = (
    "x-logstore-source-topic",
    "x-logstore-source-offset",
    "x-logstore-subscription",
    "x-logstore-delivery-count",
)
_SUB_NAME = "subscription name"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Store:
    """A data directory of topics. Open one writer per directory; readers may be many.

    `path` may instead be a NATS JetStream cluster, `"nats://h1:4222,nats://h2:4222"`
    (options in `engine.jetstream.options`): the same API on replicated streams, shared by
    any number of processes (docs/CLUSTER.md lists what differs). `fsync` then does not
    apply: durability is the cluster's `sync_interval`.

    `fsync` is "always" (a write returns once it is on stable storage; concurrent writers
    share fsyncs), "interval" (flushed every `fsync_interval` seconds) or "never".
    `readonly=True` opens a directory another process writes, and sees its new messages.
    `idempotency_window` (keyword-only, seconds, default 120) is how long a written batch's
    idempotency key answers its retries (see `write_batches`).
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
        idempotency_window: float = IDEMPOTENCY_WINDOW_SECONDS,
    ):
        if fsync not in FSYNC_POLICIES:
            raise InvalidArgument(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if not fsync_interval > 0:
            raise InvalidArgument(f"fsync_interval must be positive, not {fsync_interval!r}")
        if isinstance(idempotency_window, bool) or not (
            isinstance(idempotency_window, int | float) and idempotency_window > 0
        ):
            raise InvalidArgument(
                f"idempotency_window must be a positive number of seconds, "
                f"not {idempotency_window!r}"
            )
        cluster = is_cluster_url(path)
        self.path = path if cluster else os.path.abspath(os.fspath(path))
        self.fsync = fsync
        self.readonly = readonly
        self.max_message_bytes = max_message_bytes
        # Whether `write_batches_now` can ever write: else it refuses before checking the
        # batches, which the caller's `write_batches` would check again.
        self._writes_now = not cluster and not readonly and fsync != "always"
        if not frames.CRC_IS_NATIVE:
            log.warning(
                "google-crc32c's C extension is missing: CRC-32C runs in pure Python, "
                "hundreds of times slower. Reinstall google-crc32c from a wheel."
            )
        if cluster:
            if readonly:
                raise InvalidArgument("readonly=True is for data directories, not clusters")
            self._engine: Engine = _cluster_engine(path, float(idempotency_window))
            return
        self._engine = LocalEngine(
            self.path,
            fsync,
            fsync_interval=fsync_interval,
            readonly=readonly,
            max_open_files=max_open_files,
            idempotency_window=float(idempotency_window),
        )

    @property
    def stats(self) -> Stats:
        """Counters for metrics and tests: fsyncs, recovery truncations, index rebuilds."""
        return self._engine.stats

    def describe(self) -> dict[str, object]:
        """What the store runs on, for `/health`: the engine, where its data lives, its
        durability, and (a cluster) the connection and the differences of cluster mode."""
        return self._engine.describe()

    @property
    def idempotency_keys(self) -> int:
        """How many idempotency keys the store remembers now (written within the window or
        in flight; see `write_batches`). Read-only, for metrics."""
        return self._engine.idempotency_keys

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
        """Create a topic; `TopicExists` if it exists, unless `exist_ok` and the settings
        are the same. `name` is a display name (any text, default the id); retention by
        age of the records and by size deletes whole old segments."""
        check_name(topic_id)
        name = check_display_name(name, topic_id)
        check_optional_positive(retention_ms, "retention_ms")
        check_optional_positive(retention_bytes, "retention_bytes")
        check_optional_positive(segment_bytes, "segment_bytes")
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise InvalidArgument(f"segment_bytes must be at least {MIN_SEGMENT_BYTES}")
        settings = TopicSettings(name, retention_ms, retention_bytes, segment_bytes)
        return self._engine.create_topic(topic_id, settings, exist_ok=exist_ok)

    def topics(self) -> list[TopicInfo]:
        """Every topic, by id."""
        return self._engine.topics()

    def topic(self, topic_id: str) -> TopicInfo:
        """One topic's settings and extent; `TopicNotFound` if there is none."""
        return self._engine.topic(check_name(topic_id))

    def delete_topic(self, topic_id: str) -> None:
        """Delete a topic and its subscriptions; a re-created topic starts at offset 0."""
        self._engine.delete_topic(check_name(topic_id))

    # -------------------------------------------------------------- writing

    def write(
        self,
        topic_id: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Append one message; its offset. Durable on return under fsync="always".

        `idempotency_key`: a retry with the same key answers the first write's offset
        without appending again (see `write_batches` for the policy)."""
        check_name(topic_id)
        if key is None and not headers:
            batch = Batch([self._check_value(topic_id, value)], plain=True)
        else:
            batch = Batch([self._check_record(topic_id, Record(value, key, headers))], False)
        keys = None if idempotency_key is None else [_check_idempotency_key(idempotency_key)]
        return self._engine.append(topic_id, [batch], keys)[0]

    def write_many(
        self,
        topic_id: str,
        messages: Iterable[bytes | Record],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Append a batch atomically (all or nothing, even across a crash); first offset.

        `idempotency_key`: a retry with the same key answers the first write's first offset
        without appending again (see `write_batches` for the policy)."""
        keys = None if idempotency_key is None else [idempotency_key]
        return self.write_batches(topic_id, [messages], idempotency_keys=keys)[0]

    def write_batches(
        self,
        topic_id: str,
        batches: Sequence[Iterable[bytes | Record]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Append several batches, each atomic, written and synced together; first offsets.

        For a server or a pipeline that gathers many callers' writes: one `pwrite` and one
        fsync serve them all. Every batch is checked before any is written.

        Idempotency keys (`idempotency_keys`: one key or None per batch; a key is a str of 1
        to 256 characters) make retries safe for a writer that lost an answer (a timeout, a
        dropped connection) and cannot know whether its batch was stored:

        - the same key on the same topic within 2 minutes (`Store(idempotency_window=)`) of
          the first write answers that write's first offset, as a `Replayed` (an int), and
          appends nothing;
        - a retry that arrives while the first write is still in progress waits for it;
        - a write that failed is forgotten, so its retry really runs (and a duplicate that
          was waiting for it is appended after all);
        - the same key twice in one call appends that batch once;
        - keys are per topic and are forgotten when the topic is deleted.

        The local engine keeps the keys in memory: a restart forgets them, and it holds at
        most 100,000 per store (the oldest are dropped first). A JetStream engine will pass
        them to the server as `Nats-Msg-Id` (deduplicated within its stream's window)."""
        check_name(topic_id)
        checked = [self._checked_batch(topic_id, b) for b in batches]
        if idempotency_keys is None:
            return self._engine.append(topic_id, checked)
        keys = [None if k is None else _check_idempotency_key(k) for k in idempotency_keys]
        if len(keys) != len(checked):
            raise InvalidArgument(
                f"idempotency_keys has {len(keys)} entries for {len(checked)} batches"
            )
        return self._engine.append(topic_id, checked, keys if any(keys) else None)

    def write_batches_now(
        self, topic_id: str, batches: Sequence[Iterable[bytes | Record]]
    ) -> list[int] | None:
        """`write_batches` (without idempotency keys) if it can be done at once, or None.

        For an event loop, where a write may not wait on the disk or on another thread:
        it writes only when that costs one `pwrite` into the page cache and nothing else
        (fsync="interval" or "never", no write or sync in progress on the topic, no new
        segment or index commit due, the topic already open). None means nothing was
        written: call `write_batches` from a thread, which checks the batches (bad input raises
        here too whenever the store could write at once)."""
        if not self._writes_now:
            return None
        check_name(topic_id)
        checked = [self._checked_batch(topic_id, b) for b in batches]
        return self._engine.append_now(topic_id, checked)

    def _checked_batch(self, topic_id: str, messages: Iterable[bytes | Record]) -> Batch:
        """Validated, and plain when all are bytes (the fast frame path)."""
        if isinstance(messages, EncodedBatch):
            return self._checked_encoded(topic_id, messages)
        items = list(messages)
        if not items:
            raise InvalidArgument(f"a batch for topic {topic_id!r} is empty")
        if all(type(m) is bytes for m in items):
            limit = self.max_message_bytes
            for m in items:
                if len(m) > limit:
                    raise MessageTooLarge(topic_id, len(m), limit)
            return Batch(items, plain=True)
        return Batch([self._check_record(topic_id, m) for m in items], plain=False)

    def _checked_encoded(self, topic_id: str, data: EncodedBatch) -> Batch:
        try:
            header, sizes = frames.check_encoded(data)
        except frames.FrameError as exc:
            raise InvalidArgument(
                f"the encoded batch for topic {topic_id!r} is not one sound frame: {exc}"
            ) from None
        if header.count > MAX_BATCH_MESSAGES:
            raise InvalidArgument(
                f"a batch for topic {topic_id!r} may hold at most {MAX_BATCH_MESSAGES} "
                f"messages, not {header.count}"
            )
        largest = max(sizes)
        if largest > self.max_message_bytes:
            raise MessageTooLarge(topic_id, largest, self.max_message_bytes)
        return Batch((), plain=False, frame=bytes(data), frame_count=header.count)

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
        """Up to `max_messages` messages from `offset` (and at most about `max_bytes` of
        values and keys, but always the first). With `wait`, a read at the end offset blocks
        up to that many seconds for a message. `OffsetOutOfRange` outside the retained
        offsets; `Corruption` when the message at `offset` is damaged (a read that meets
        damage later stops before it)."""
        check_name(topic_id)
        self._check_read_args(offset, max_messages, max_bytes, wait)
        if wait > 0:
            self._engine.wait_beyond(topic_id, offset, wait)
        return self._engine.read(topic_id, offset, max_messages, max_bytes)

    async def read_async(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
        wait: float = 0.0,
    ) -> list[Message]:
        """`read` for asyncio: waits on the event loop, reads in the loop's executor."""
        check_name(topic_id)
        self._check_read_args(offset, max_messages, max_bytes, wait)
        if wait > 0:
            await self._engine.wait_beyond_async(topic_id, offset, wait)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._engine.read, topic_id, offset, max_messages, max_bytes
        )

    def read_stored(
        self,
        topic_id: str,
        offset: int = 0,
        max_messages: int = 100,
        max_bytes: int | None = None,
    ) -> StoredFrames:
        """`read`'s messages as whole frames in the stored format (`logstore.frames`), for
        the binary wire (SPEC §6): the frames may begin before `offset`; the messages meant
        run from `offset` to the answer's `next_offset`. Damage is met as `read` meets it
        (the receiver checks every CRC again, end to end). `max_bytes` bounds the frames'
        bytes (always one frame)."""
        check_name(topic_id)
        self._check_read_args(offset, max_messages, max_bytes, 0.0)
        return self._engine.read_stored(topic_id, offset, max_messages, max_bytes)

    def wait(self, topic_id: str, offset: int, timeout: float) -> bool:
        """Block until a message at `offset` is readable (True) or `timeout` passes."""
        return self._engine.wait_beyond(check_name(topic_id), offset, timeout)

    async def wait_async(self, topic_id: str, offset: int, timeout: float) -> bool:
        """`wait` for asyncio code: suspends the task, never blocks the event loop."""
        return await self._engine.wait_beyond_async(check_name(topic_id), offset, timeout)

    def offset_for_time(self, topic_id: str, timestamp_ms: int | datetime) -> int:
        """The first offset whose timestamp is >= `timestamp_ms` (ms since the epoch, or a
        datetime); the end offset if there is none."""
        return self._engine.offset_for_time(check_name(topic_id), _milliseconds(timestamp_ms))

    def resolve_start(
        self,
        topic_id: str,
        start: str | int | datetime | None = None,
        *,
        timestamp: int | None = None,
    ) -> int:
        """Where a read or a subscription starts, as an offset: the one place that turns
        "earliest" (also None), "latest", an offset (`OffsetOutOfRange` outside the
        retained offsets), a datetime or `timestamp` (ms since the epoch) into one."""
        check_name(topic_id)
        if timestamp is not None:
            if start is not None:
                raise InvalidArgument("give a start or a timestamp, not both")
            return self._engine.offset_for_time(topic_id, _milliseconds(timestamp))
        if isinstance(start, datetime):
            return self._engine.offset_for_time(topic_id, _milliseconds(start))
        info = self._engine.topic(topic_id)
        if start is None or start == "earliest":
            return info.start_offset
        if start == "latest":
            return info.end_offset
        if isinstance(start, bool) or not isinstance(start, int):
            raise InvalidArgument(
                f"start must be 'earliest', 'latest', an int offset or a datetime, not {start!r}"
            )
        if not info.start_offset <= start <= info.end_offset:
            raise OffsetOutOfRange(topic_id, start, info.start_offset, info.end_offset)
        return start

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
        """Create a durable subscription (a no-op if it exists with the same settings;
        different `ack_wait`, `max_deliveries` or `dead_letter_topic` raise
        `SubscriptionExists`).

        `start` ("earliest", "latest", an offset or a datetime) or `start_time` (ms since
        the epoch, or a datetime) only place a new subscription: re-subscribing resumes
        where it stands, as a restarted consumer expects. After `max_deliveries` deliveries
        without an ack a message goes to `dead_letter_topic` (or is dropped, logged).
        """
        check_name(topic_id)
        check_name(name, _SUB_NAME)
        if isinstance(ack_wait, bool) or not isinstance(ack_wait, int | float):
            raise InvalidArgument(f"ack_wait must be a number of seconds, not {ack_wait!r}")
        if not (ack_wait > 0 and math.isfinite(ack_wait)):
            raise InvalidArgument(f"ack_wait must be a positive number of seconds, not {ack_wait}")
        check_optional_positive(max_deliveries, "max_deliveries")
        if dead_letter_topic is not None:
            check_name(dead_letter_topic, "dead_letter_topic")
            if dead_letter_topic == topic_id:
                raise InvalidArgument(
                    f"dead_letter_topic of subscription {name!r} must differ from its topic"
                )
            if max_deliveries is None:
                raise InvalidArgument(
                    f"subscription {name!r} on topic {topic_id!r}: dead_letter_topic needs "
                    "max_deliveries (the number of deliveries after which a message goes there)"
                )
            self._engine.topic(dead_letter_topic)  # TopicNotFound unless it exists
        if start_time is not None:
            if start != "earliest":
                raise InvalidArgument("give start or start_time, not both")
            start = start_time if isinstance(start_time, datetime) else None
        position = self.resolve_start(
            topic_id, start, timestamp=start_time if isinstance(start_time, int) else None
        )
        settings = SubscriptionSettings(float(ack_wait), max_deliveries, dead_letter_topic)
        info, _ = self._engine.subscribe(topic_id, name, settings, position)
        return info

    def unsubscribe(self, topic_id: str, name: str) -> None:
        """Remove the subscription and its state; its waiting pollers get
        `SubscriptionNotFound`."""
        self._engine.unsubscribe(check_name(topic_id), check_name(name, _SUB_NAME))

    def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        """The topic's subscriptions, by name."""
        return self._engine.subscriptions(check_name(topic_id))

    def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        """Ack floor, pending leases, lag and settings of one subscription."""
        return self._engine.subscription(check_name(topic_id), check_name(name, _SUB_NAME))

    def poll(
        self,
        topic_id: str,
        name: str,
        max_messages: int = 100,
        wait: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Delivery]:
        """Lease up to `max_messages` messages (and at most about `max_bytes` of values and
        keys, but always the first) to this caller for the subscription's `ack_wait`
        (redeliveries first); with `wait`, block up to that long for the first."""
        _check_poll_args(topic_id, name, max_messages, wait, max_bytes)
        deadline = time.monotonic() + wait
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            leased = self._engine.lease(topic_id, name, max_messages, remaining, max_bytes)
            if leased.exhausted_offsets:
                self._dead_letter(topic_id, name, leased)
            if leased.deliveries or time.monotonic() >= deadline:
                return leased.deliveries

    async def poll_async(
        self,
        topic_id: str,
        name: str,
        max_messages: int = 100,
        wait: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Delivery]:
        """`poll` for asyncio: a poll waiting for messages costs no thread."""
        _check_poll_args(topic_id, name, max_messages, wait, max_bytes)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            leased = await self._engine.lease_async(
                topic_id, name, max_messages, remaining, max_bytes
            )
            if leased.exhausted_offsets:
                await loop.run_in_executor(None, self._dead_letter, topic_id, name, leased)
            if leased.deliveries or time.monotonic() >= deadline:
                return leased.deliveries

    def _dead_letter(self, topic_id: str, name: str, leased: Leased) -> None:
        """Send exhausted messages to the dead-letter topic, then count them acknowledged.

        If that write fails (the topic was deleted, the disk is full, the added headers make
        a message too large) they go back to waiting and the error reaches the poller:
        nothing is dropped for want of a dead-letter topic. No lock is held meanwhile."""
        messages = leased.exhausted
        if leased.dead_letter_topic is not None and messages:
            records = [_dead_letter_record(topic_id, name, m, leased) for m in messages]
            try:
                self.write_many(leased.dead_letter_topic, records)
            except LogstoreError:
                self._engine.settle(topic_id, name, leased.exhausted_offsets, "nack")
                raise
            log.info(
                "subscription %r on topic %r: %d message(s) sent to dead-letter topic %r",
                name,
                topic_id,
                len(records),
                leased.dead_letter_topic,
            )
        elif messages:
            log.warning(
                "subscription %r on topic %r: dropped %d message(s) after %d deliveries",
                name,
                topic_id,
                len(messages),
                leased.max_deliveries,
            )
        self._engine.settle(topic_id, name, leased.exhausted_offsets, "terminate")

    def ack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """Acknowledge offsets or lease tokens (`Delivery.lease`): never delivered again on
        this subscription (unless `seek` moves it back). A token of an expired or replaced
        lease still acknowledges its offset. Durable per the fsync policy."""
        return self._engine.settle(
            check_name(topic_id), check_name(name, _SUB_NAME), offsets, "ack"
        )

    def nack(self, topic_id: str, name: str, offsets: Iterable[int | str]) -> SubscriptionInfo:
        """End these leases now, so the messages are delivered again. An offset ends its
        current lease; a token of an expired or replaced lease is ignored."""
        return self._engine.settle(
            check_name(topic_id), check_name(name, _SUB_NAME), offsets, "nack"
        )

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to`."""
        if isinstance(up_to, bool) or not isinstance(up_to, int):
            raise InvalidArgument(f"up_to must be an int offset, not {up_to!r}")
        return self._engine.commit(check_name(topic_id), check_name(name, _SUB_NAME), up_to)

    def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        """Move the subscription to an offset, a time, or "earliest"/"latest": below it
        everything counts as acknowledged, from it on nothing does (so seeking back replays
        history). Its leases end."""
        check_name(name, _SUB_NAME)
        given = [x is not None for x in (offset, timestamp, position)]
        if sum(given) != 1:
            raise InvalidArgument("seek needs exactly one of offset, timestamp or position")
        if position is not None and position not in POSITIONS:
            raise InvalidArgument(f"position must be one of {POSITIONS}, not {position!r}")
        if isinstance(timestamp, datetime):
            target = self.resolve_start(topic_id, timestamp)
        elif timestamp is not None:
            target = self.resolve_start(topic_id, timestamp=timestamp)
        else:
            target = self.resolve_start(topic_id, offset if position is None else position)
        return self._engine.seek(topic_id, name, target)

    # ------------------------------------------------------------ life cycle

    def sync(self) -> None:
        """Flush every topic to stable storage now, whatever the fsync policy."""
        self._engine.sync()

    def close(self) -> None:
        """Flush and close. Waiting readers wake up; later calls raise `StoreClosed`."""
        self._engine.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ iterators

    def messages(
        self,
        topic_id: str,
        offset: str | int | datetime | None = None,
        *,
        follow: bool = True,
        max_messages: int = 100,
        wait: float = 30.0,
    ) -> Iterator[Message]:
        """Every message from `offset` (default "earliest") on, then with `follow` each new
        one as it is written; see `logstore.iterators`."""
        return iterators.messages(
            self, topic_id, offset, follow=follow, max_messages=max_messages, wait=wait
        )

    def deliveries(
        self, topic_id: str, name: str, *, max_outstanding: int = 100, wait: float = 30.0
    ) -> Iterator[iterators.Received]:
        """Leased deliveries of a subscription, each with `ack()` / `nack()`, at most
        `max_outstanding` unsettled at a time; see `logstore.iterators`."""
        return iterators.deliveries(
            self, topic_id, name, max_outstanding=max_outstanding, wait=wait
        )


def _cluster_engine(url: str, idempotency_window: float) -> Engine:
    """The JetStream engine (SPEC §9), imported only here: nats-py is needed only then."""
    try:
        from .engine.jetstream.engine import JetStreamEngine
    except ImportError as exc:
        raise InvalidArgument(
            f"a cluster store needs nats-py ({exc}): pip install 'logstore[cluster]'"
        ) from None
    return JetStreamEngine(url, idempotency_window=idempotency_window)


def _milliseconds(timestamp: object) -> int:
    """Ms since the epoch from an int or a datetime (naive ones are taken as UTC)."""
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        return (timestamp - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise InvalidArgument(f"timestamp must be int milliseconds, not {timestamp!r}")
    return timestamp


def _check_idempotency_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(
            f"an idempotency key must be a str of 1 to {MAX_IDEMPOTENCY_KEY} characters, "
            f"not {key!r:.80}"
        )
    return key


def _check_poll_args(
    topic_id: str, name: str, max_messages: object, wait: object, max_bytes: object
) -> None:
    check_name(topic_id)
    check_name(name, _SUB_NAME)
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise InvalidArgument(f"max_messages must be an int of at least 1, not {max_messages!r}")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise InvalidArgument(f"wait must be a non-negative number of seconds, not {wait!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise InvalidArgument(f"max_bytes must be a positive int or None, not {max_bytes!r}")


def _dead_letter_record(topic_id: str, name: str, message: Message, leased: Leased) -> Record:
    """The message as it goes to the dead-letter topic: its headers name where it came from."""
    facts = (topic_id, str(message.offset), name, str(leased.max_deliveries))
    headers = {**message.headers, **dict(zip(DEAD_LETTER_HEADERS, facts, strict=True))}
    return Record(message.value, message.key, headers)
