"""Subscriptions: durable named positions on a topic, leased delivery and acknowledgements.

A topic holds each message once; a subscription stores only where it stands, in two LMDB
databases of the metadata environment (see `meta`):

    subs: key b"<topic>\\0<name>"  value JSON {uid, ack_wait, max_deliveries,
                                              dead_letter_topic, created_at}
    acks: the same key             value <Q ack floor, then <QQ (start, end) for each range
                                   of acknowledged offsets above the floor

Every offset below the ack floor is acknowledged; above it, acknowledged offsets are kept as
sorted half-open ranges. So the state grows with the number of gaps, not of acks, and shrinks
back to 8 bytes whenever the floor catches up. `uid` names the topic's incarnation: the
records of a deleted topic never attach to a re-created one of the same id.

Durability follows the store's fsync policy. Under "always" a call that changes the state
(subscribe, unsubscribe, ack, commit, seek, and a poll that dead-letters) returns after
an LMDB commit that holds it; concurrent callers share one commit (group commit, as in
`TopicLog.append`: the first caller leads, commits every dirty subscription at once and
wakes the others). Under "interval" and "never" memory is the authority: dirty subscriptions
are committed by `maintain()` (the store's maintenance thread, about once a second) and by
`close()`. A crash forgets at most that window, and those messages are delivered again.

Leases and delivery counts live in memory only: after a restart every unacknowledged message
is deliverable again (at-least-once) and its delivery count starts again at 1, so
`max_deliveries` counts deliveries since the last restart.

In memory, per subscription: a cursor (the next offset not delivered since the last restart
or seek); leases (offset -> grant number) with their grants queued in deadline order (one
`ack_wait` per subscription makes the queue sorted, so expiry is a pop from its head); the
offsets ready for redelivery (nacked or expired; lowest first); those awaiting the
dead-letter topic. Expiry is lazy: a poll or info pops the grants whose deadline has passed.
A subscription behind retention moves its floor and cursor up to the topic's start offset.

Waiting: each topic with subscriptions has a `Watermark` used as a change counter. Writes to
the topic (the store calls `on_written`), nacks, seeks, unsubscribes and topic deletion
bump it; a poller with nothing to deliver waits on it, bounded by the nearest lease
deadline. Threads block; asyncio tasks await; nobody polls in a loop.

Subscriptions of a topic load from LMDB on first use, so opening a store costs nothing per
subscription.

Thread-safety: every public method is thread-safe. Locks nest only in these orders:
the store's lock -> an LMDB write transaction -> `_lock` (the registry) -> `_commit_lock`,
and a subscription's `lock` -> the store's lock (a dead-letter write) -> `_commit_lock`.
No LMDB write transaction begins under `_lock` or a subscription's lock: the committer
snapshots each subscription under its lock first, then commits holding none.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import lmdb

from .config import check_name, check_optional_positive
from .errors import (
    InvalidArgument,
    LogstoreError,
    OffsetOutOfRange,
    StorageError,
    StoreClosed,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicNotFound,
)
from .record import Message, Record
from .topic import TopicLog, now_ms
from .waiting import Watermark

if TYPE_CHECKING:
    from .meta import MetaStore
    from .store import Store

log = logging.getLogger("logstore.subscriptions")

_SUB_NAME = "subscription name"
POSITIONS = ("earliest", "latest")
DEAD_LETTER_HEADERS = (
    "x-logstore-source-topic",
    "x-logstore-source-offset",
    "x-logstore-subscription",
    "x-logstore-delivery-count",
)


@dataclass(slots=True, frozen=True)
class SubscriptionInfo:
    topic: str
    name: str
    ack_floor: int
    pending: int
    lag: int
    ack_wait: float
    max_deliveries: int | None
    dead_letter_topic: str | None
    created_at: int


class Delivery(Message):
    """A leased message: a `Message` plus `delivery_count` (1 on its first delivery).

    A poll turns the `Message` objects it has just read (fresh ones, shared with no one)
    into deliveries by setting their class, which adds no slot: no copy, no wrapper, on
    the path every delivered message takes. Later deliveries are `_Redelivery` objects,
    which carry their own count.
    """

    __slots__ = ()
    delivery_count: int = 1

    def __repr__(self) -> str:
        return (
            f"Delivery(offset={self.offset}, delivery_count={self.delivery_count}, "
            f"timestamp={self.timestamp}, key={self.key!r}, headers={dict(self.headers)!r}, "
            f"value={self.value!r})"
        )


class _Redelivery(Delivery):
    __slots__ = ("delivery_count",)

    def __init__(self, message: Message, delivery_count: int):
        super().__init__(
            message.offset, message.timestamp, message.key, message.headers, message.value
        )
        self.delivery_count = delivery_count


class _Sub:
    """One subscription: settings, ack state (floor + ranges) and in-memory leases.

    Every mutable field is guarded by `lock`; the methods expect it held.
    """

    __slots__ = (
        "ack_wait",
        "counts",
        "created_at",
        "cursor",
        "dead",
        "dead_letter_topic",
        "ends",
        "floor",
        "grants",
        "key",
        "last_grant",
        "leases",
        "live",
        "lock",
        "max_deliveries",
        "name",
        "ready",
        "ready_heap",
        "starts",
        "stored",
        "topic_id",
        "uid",
    )

    def __init__(
        self,
        topic_id: str,
        name: str,
        settings: dict,
        floor: int,
        *,
        ranges: Iterable[tuple[int, int]] = (),
        stored: bool = False,
    ):
        self.topic_id = topic_id
        self.name = name
        self.key = _key(topic_id, name)
        self.uid: int = settings["uid"]
        self.ack_wait: float = settings["ack_wait"]
        self.max_deliveries: int | None = settings["max_deliveries"]
        self.dead_letter_topic: str | None = settings["dead_letter_topic"]
        self.created_at: int = settings["created_at"]
        self.stored = stored  # its settings are in LMDB (only the committer changes this)
        self.live = True  # False once unsubscribed or its topic deleted
        self.lock = threading.Lock()
        self.floor = floor
        ranges = list(ranges)
        self.starts = [s for s, _ in ranges]  # acknowledged ranges above the floor:
        self.ends = [e for _, e in ranges]  # disjoint, not touching, sorted, start > floor
        self.cursor = floor
        self.leases: dict[int, int] = {}  # offset -> grant number
        self.grants: deque[tuple[float, int, range | list[int]]] = deque()
        self.last_grant = 0
        self.ready: set[int] = set()  # to deliver again (nacked or expired)
        self.ready_heap: list[int] = []  # the same, lowest first; may hold stale entries
        self.counts: dict[int, int] = {}  # deliveries so far, where not 1
        self.dead: set[int] = set()  # delivered max_deliveries times: for the dead letters

    def settings(self) -> dict:
        return {
            "uid": self.uid,
            "ack_wait": self.ack_wait,
            "max_deliveries": self.max_deliveries,
            "dead_letter_topic": self.dead_letter_topic,
            "created_at": self.created_at,
        }

    def same_settings(self, ack_wait, max_deliveries, dead_letter_topic) -> bool:
        return (self.ack_wait, self.max_deliveries, self.dead_letter_topic) == (
            ack_wait,
            max_deliveries,
            dead_letter_topic,
        )

    def encode_acks(self) -> bytes:
        pairs = [x for pair in zip(self.starts, self.ends, strict=True) for x in pair]
        return struct.pack(f"<{1 + len(pairs)}Q", self.floor, *pairs)

    # ------------------------------------------------------ acknowledged set

    def acked(self, offset: int) -> bool:
        if offset < self.floor:
            return True
        i = bisect_right(self.starts, offset) - 1
        return i >= 0 and offset < self.ends[i]

    def acked_above_floor(self) -> int:
        return sum(self.ends) - sum(self.starts)

    def ack_runs(self, runs: list[tuple[int, int]]) -> None:
        """Mark each half-open run of offsets acknowledged; the floor follows."""
        starts, ends = self.starts, self.ends
        for a, b in runs:
            if b <= self.floor:
                continue
            a = max(a, self.floor)
            i = bisect_left(ends, a)  # the first range ending at or after a: touches it
            j = bisect_right(starts, b)  # ranges starting at or before b touch it too
            if i < j:
                a = min(a, starts[i])
                b = max(b, ends[j - 1])
            starts[i:j] = [a]
            ends[i:j] = [b]
            if starts[0] == self.floor:
                self.floor = ends[0]
                del starts[0], ends[0]
        if self.cursor < self.floor:
            self.cursor = self.floor

    def release(self, offsets: list[int]) -> None:
        """Forget the leases and redelivery plans of these (acknowledged) offsets."""
        pop = self.leases.pop
        for o in offsets:
            pop(o, None)
        if self.ready:
            self.ready.difference_update(offsets)
        if self.dead:
            self.dead.difference_update(offsets)
        if self.counts:
            pop = self.counts.pop
            for o in offsets:
                pop(o, None)

    def release_below(self, offset: int) -> None:
        for o in [o for o in self.leases if o < offset]:
            del self.leases[o]
        self.ready = {o for o in self.ready if o >= offset}
        self.dead = {o for o in self.dead if o >= offset}
        self.counts = {o: n for o, n in self.counts.items() if o >= offset}

    def reset(self, offset: int) -> None:
        """Seek: everything below `offset` acknowledged, nothing at or above it; no leases."""
        self.floor = self.cursor = offset
        self.starts, self.ends = [], []
        self.leases.clear()
        self.grants.clear()
        self.ready.clear()
        self.ready_heap.clear()
        self.counts.clear()
        self.dead.clear()

    # ---------------------------------------------------------------- leases

    def expire(self, now: float) -> None:
        """End the leases whose deadline has passed: their messages can be delivered again."""
        grants, leases = self.grants, self.leases
        while grants and grants[0][0] <= now:
            _, grant, offsets = grants.popleft()
            for o in offsets:
                if leases.get(o) == grant:
                    del leases[o]
                    self.requeue(o)

    def requeue(self, offset: int) -> None:
        if self.max_deliveries is not None and self.counts.get(offset, 1) >= self.max_deliveries:
            self.dead.add(offset)
        else:
            self.ready.add(offset)
            heapq.heappush(self.ready_heap, offset)

    def take_ready(self, limit: int) -> list[int]:
        """Up to `limit` offsets to deliver again, lowest first."""
        taken: list[int] = []
        heap, ready = self.ready_heap, self.ready
        while heap and len(taken) < limit:
            o = heapq.heappop(heap)
            if o in ready:
                ready.remove(o)
                taken.append(o)
        if not ready:
            heap.clear()
        return taken

    def take_new(self, limit: int, end: int) -> range | list[int]:
        """Up to `limit` offsets from the cursor on, skipping those acknowledged ahead."""
        starts, ends = self.starts, self.ends
        if not ends or ends[-1] <= self.cursor:
            first = self.cursor
            self.cursor = max(first, min(first + limit, end))
            return range(first, self.cursor)
        taken: list[int] = []
        while len(taken) < limit and self.cursor < end:
            i = bisect_right(starts, self.cursor) - 1
            if i >= 0 and self.cursor < ends[i]:
                self.cursor = ends[i]  # jump over an acknowledged range
                continue
            following = starts[i + 1] if i + 1 < len(starts) else end
            stop = min(following, end, self.cursor + limit - len(taken))
            taken.extend(range(self.cursor, stop))
            self.cursor = stop
        return taken

    def lease(self, now: float, again: list[int], fresh: range | list[int]) -> int:
        """Lease redeliveries (their count goes up) and new offsets under one grant."""
        self.last_grant += 1
        grant, deadline = self.last_grant, now + self.ack_wait
        if again:
            counts, leases = self.counts, self.leases
            for o in again:
                counts[o] = counts.get(o, 1) + 1
                leases[o] = grant
            self.grants.append((deadline, grant, again))
        if fresh:
            self.leases.update(dict.fromkeys(fresh, grant))
            self.grants.append((deadline, grant, fresh))
        return grant

    def unlease(self, grant: int, offsets: list[int]) -> None:
        """Undo `lease` for a poll that failed to read: as if never delivered that time."""
        counts = self.counts
        for o in offsets:
            if self.leases.get(o) == grant:
                del self.leases[o]
                counts[o] = counts.get(o, 1) - 1
                self.requeue(o)

    def next_deadline(self) -> float | None:
        return self.grants[0][0] if self.grants else None


class _Group:
    """The loaded subscriptions of one topic incarnation, and its change counter."""

    __slots__ = ("changes", "subs", "uid")

    def __init__(self, uid: int):
        self.uid = uid
        self.subs: dict[str, _Sub] = {}
        self.changes = Watermark(0)

    def bump(self) -> None:
        """Wake this topic's pollers: something may have become deliverable."""
        self.changes.advance(self.changes.value + 1)


class _Batch:
    """The callers whose changes one leader commits together, and how that went."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: LogstoreError | None = None


class Subscriptions:
    """Every subscription of a store. Created by `Store`, which delegates to it."""

    def __init__(self, store: Store, meta: MetaStore) -> None:
        self._store = store
        self._meta = meta
        self._readonly = meta.readonly
        self._sync = store.fsync == "always"
        self._lock = threading.Lock()  # the registry: _groups
        self._groups: dict[str, _Group] = {}
        self._deleted_uids: set[int] = set()  # incarnations of deleted topics
        self._commit_lock = threading.Lock()  # _dirty, _batch, _leading, _closed
        self._idle = threading.Condition(self._commit_lock)
        self._dirty: set[bytes] = set()
        self._batch = _Batch()
        self._leading = False
        self._closed = False
        self._subs_db = self._acks_db = None
        self._open_dbs()

    def _open_dbs(self) -> bool:
        """Open the databases; a read-only store may find them missing (none created yet)."""
        if self._acks_db is None:
            try:
                self._subs_db = self._meta.env.open_db(b"subs", create=not self._readonly)
                self._acks_db = self._meta.env.open_db(b"acks", create=not self._readonly)
            except lmdb.NotFoundError:
                return False
        return True

    # -------------------------------------------------------------- settings

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
        """Create a subscription; a no-op if it exists with the same settings.

        `start` ("earliest", "latest", an offset or a datetime) or `start_time` (ms since
        the epoch, or a datetime) only place a new subscription: re-subscribing resumes
        where it stands, as a restarted consumer expects. Different `ack_wait`,
        `max_deliveries` or `dead_letter_topic` raise `SubscriptionExists`.
        """
        check_name(name, _SUB_NAME)
        if isinstance(ack_wait, bool) or not isinstance(ack_wait, int | float):
            raise InvalidArgument(f"ack_wait must be a number of seconds, not {ack_wait!r}")
        if not (ack_wait > 0 and math.isfinite(ack_wait)):
            raise InvalidArgument(f"ack_wait must be a positive number of seconds, not {ack_wait}")
        ack_wait = float(ack_wait)
        check_optional_positive(max_deliveries, "max_deliveries")
        topic = self._store._log(topic_id)
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
            self._store._log(dead_letter_topic)  # TopicNotFound unless it exists
        position = self._start_offset(topic_id, topic, start, start_time)
        group = self._group(topic)
        with self._lock:
            if self._groups.get(topic_id) is not group:
                raise TopicNotFound(topic_id)  # deleted meanwhile
            sub = group.subs.get(name)
            if sub is not None:
                if not sub.same_settings(ack_wait, max_deliveries, dead_letter_topic):
                    raise SubscriptionExists(
                        topic_id,
                        name,
                        f" with different settings (ack_wait={sub.ack_wait}, max_deliveries="
                        f"{sub.max_deliveries}, dead_letter_topic={sub.dead_letter_topic!r}); "
                        "unsubscribe first to change them",
                    )
                created = False
            else:
                settings = {
                    "uid": topic.uid,
                    "ack_wait": ack_wait,
                    "max_deliveries": max_deliveries,
                    "dead_letter_topic": dead_letter_topic,
                    "created_at": now_ms(),
                }
                sub = group.subs[name] = _Sub(topic_id, name, settings, position)
                created = True
        if created:
            log.info("subscription %r on topic %r created at offset %d", name, topic_id, position)
            self._persist(sub, wait=self._sync)
        return self._info(topic, sub)

    def _start_offset(
        self, topic_id: str, topic: TopicLog, start: object, start_time: object
    ) -> int:
        if start_time is not None:
            if start != "earliest":
                raise InvalidArgument("give start or start_time, not both")
            return self._store.offset_for_time(topic_id, start_time)
        if isinstance(start, datetime):
            return self._store.offset_for_time(topic_id, start)
        return _position(topic_id, topic, start, "start")

    def unsubscribe(self, topic_id: str, name: str) -> None:
        """Remove the subscription and its state; its waiting pollers get SubscriptionNotFound."""
        _, group, sub = self._resolve(topic_id, name)
        with self._lock:
            if group.subs.get(name) is sub:
                del group.subs[name]
        sub.live = False
        group.bump()
        self._persist(sub, wait=self._sync)
        log.info("subscription %r on topic %r removed", name, topic_id)

    def on_topic_deleted(self, txn: lmdb.Transaction, topic_id: str) -> None:
        """Delete the topic's subscriptions in the caller's transaction (the topic delete).

        Its pollers wake before that transaction commits, while LMDB still shows the
        subscriptions: so the incarnation (uid) is marked deleted, and is never loaded again.
        """
        if not self._open_dbs():
            return
        prefix = _key(topic_id, "")
        uids = set()
        for db in (self._subs_db, self._acks_db):
            cursor = txn.cursor(db=db)
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if db is self._subs_db:
                        uids.add(json.loads(cursor.value())["uid"])
                    if not cursor.delete():
                        break
        with self._lock:
            group = self._groups.pop(topic_id, None)
            if group is not None:
                uids.add(group.uid)
            self._deleted_uids |= uids
        if group is not None:
            for sub in group.subs.values():
                sub.live = False
            group.bump()

    # ------------------------------------------------------------------ info

    def list(self, topic_id: str) -> list[SubscriptionInfo]:
        """The topic's subscriptions, by name."""
        topic = self._store._log(topic_id)
        group = self._group(topic)
        with self._lock:
            subs = sorted(group.subs.items())
        return [self._info(topic, sub) for _, sub in subs]

    def info(self, topic_id: str, name: str) -> SubscriptionInfo:
        """Floor, pending leases, lag and settings (a read-only store shows no leases)."""
        topic, _, sub = self._resolve(topic_id, name)
        return self._info(topic, sub)

    def _info(self, topic: TopicLog, sub: _Sub) -> SubscriptionInfo:
        if self._readonly:
            topic.refresh()
        with sub.lock:
            self._catch_up(topic, sub)
            return self._info_locked(topic, sub)

    def _info_locked(self, topic: TopicLog, sub: _Sub) -> SubscriptionInfo:
        sub.expire(time.monotonic())
        lag = topic.end_offset - sub.floor - sub.acked_above_floor()
        return SubscriptionInfo(
            topic=sub.topic_id,
            name=sub.name,
            ack_floor=sub.floor,
            pending=len(sub.leases),
            lag=max(lag, 0),
            ack_wait=sub.ack_wait,
            max_deliveries=sub.max_deliveries,
            dead_letter_topic=sub.dead_letter_topic,
            created_at=sub.created_at,
        )

    # -------------------------------------------------------------- delivery

    def poll(
        self, topic_id: str, name: str, max_messages: int = 100, wait: float = 0.0
    ) -> list[Delivery]:
        """Lease up to `max_messages` deliverable messages; with `wait`, block for the first.

        Redeliveries (nacked or expired, lowest offset first) come before new messages.
        """
        _check_poll_args(max_messages, wait)
        deadline = time.monotonic() + wait
        while True:
            topic, group, sub = self._resolve(topic_id, name)
            version = group.changes.value
            out, lease_deadline = self._poll_once(topic, sub, max_messages)
            timeout = _timeout(out, deadline, lease_deadline)
            if timeout is None:
                return out
            group.changes.wait_beyond(version, timeout)

    async def poll_async(
        self, topic_id: str, name: str, max_messages: int = 100, wait: float = 0.0
    ) -> list[Delivery]:
        """`poll` for asyncio: waits on the event loop, reads in the default executor."""
        _check_poll_args(max_messages, wait)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        while True:
            topic, group, sub = self._resolve(topic_id, name)
            version = group.changes.value
            out, lease_deadline = await loop.run_in_executor(
                None, self._poll_once, topic, sub, max_messages
            )
            timeout = _timeout(out, deadline, lease_deadline)
            if timeout is None:
                return out
            await group.changes.wait_beyond_async(version, timeout)

    def _poll_once(
        self, topic: TopicLog, sub: _Sub, limit: int
    ) -> tuple[list[Delivery], float | None]:
        """Deliver what can be delivered now; also the nearest lease deadline.

        Offsets are chosen and leased under the subscription's lock, then read without it,
        so competing consumers read their batches side by side instead of in a queue.
        """
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(sub.topic_id, sub.name)
            now = time.monotonic()
            sub.expire(now)
            self._catch_up(topic, sub)
            dead_lettered = bool(sub.dead)
            if dead_lettered:
                self._dead_letter(topic, sub)
            again = sub.take_ready(limit) if sub.ready else []
            fresh = sub.take_new(limit - len(again), topic.end_offset)
            grant = sub.lease(now, again, fresh)
            counts = [sub.counts[o] for o in again]
            lease_deadline = sub.next_deadline()
        if dead_lettered:
            self._persist(sub, wait=self._sync)
        try:
            out: list[Delivery] = []
            if again:
                count_of = dict(zip(again, counts, strict=True))
                out += [_Redelivery(m, count_of[m.offset]) for m in _read_offsets(topic, again)]
            if fresh:
                messages = _read_offsets(topic, fresh)
                for m in messages:
                    m.__class__ = Delivery
                out += messages
        except BaseException:
            with sub.lock:
                sub.unlease(grant, [*again, *fresh])
            raise
        return out, lease_deadline

    def _dead_letter(self, topic: TopicLog, sub: _Sub) -> None:
        """Send the exhausted messages to the dead-letter topic; count them acknowledged.

        If that write fails (the topic was deleted, the disk is full, the added headers make
        a message too large) they stay waiting and the error reaches the poller: nothing is
        dropped for want of a dead-letter topic.
        """
        offsets = sorted(sub.dead)
        messages = _read_offsets(topic, offsets)
        if sub.dead_letter_topic is not None and messages:
            records = [_dead_letter_record(sub, m) for m in messages]
            self._store.write_many(sub.dead_letter_topic, records)
            log.info(
                "subscription %r on topic %r: %d message(s) sent to dead-letter topic %r",
                sub.name,
                sub.topic_id,
                len(records),
                sub.dead_letter_topic,
            )
        elif messages:
            log.warning(
                "subscription %r on topic %r: dropped %d message(s) after %d deliveries",
                sub.name,
                sub.topic_id,
                len(messages),
                sub.max_deliveries,
            )
        sub.ack_runs(_runs(offsets))
        sub.release(offsets)

    def _catch_up(self, topic: TopicLog, sub: _Sub) -> None:
        """Retention removed messages below the floor: acknowledge them, move on."""
        start = topic.start_offset
        if sub.floor < start:
            sub.ack_runs([(sub.floor, start)])
            sub.release_below(start)
            if not self._readonly:
                self._persist(sub, wait=False)

    # ------------------------------------------------------- acknowledgement

    def ack(self, topic_id: str, name: str, offsets: Iterable[int]) -> SubscriptionInfo:
        """Acknowledge these offsets (leased or not); durable per the store's fsync policy."""
        topic, _, sub = self._resolve(topic_id, name)
        sorted_offsets = _check_offsets(topic, offsets)
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            if sorted_offsets:
                sub.ack_runs(_runs(sorted_offsets))
                sub.release(sorted_offsets)
            info = self._info_locked(topic, sub)
        self._persist(sub, wait=self._sync)
        return info

    def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        """Acknowledge every offset below `up_to` (at most the end offset)."""
        topic, _, sub = self._resolve(topic_id, name)
        if isinstance(up_to, bool) or not isinstance(up_to, int):
            raise InvalidArgument(f"up_to must be an int offset, not {up_to!r}")
        end = topic.end_offset
        if not 0 <= up_to <= end:
            raise OffsetOutOfRange(topic_id, up_to, topic.start_offset, end)
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            if up_to > sub.floor:
                sub.ack_runs([(sub.floor, up_to)])
                sub.release_below(up_to)
            info = self._info_locked(topic, sub)
        self._persist(sub, wait=self._sync)
        return info

    def nack(self, topic_id: str, name: str, offsets: Iterable[int]) -> SubscriptionInfo:
        """End these leases now: the messages are delivered again on the next poll."""
        topic, group, sub = self._resolve(topic_id, name)
        sorted_offsets = _check_offsets(topic, offsets)
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            for o in sorted_offsets:
                if sub.leases.pop(o, None) is not None:
                    sub.requeue(o)
            info = self._info_locked(topic, sub)
        group.bump()
        return info

    def seek(
        self,
        topic_id: str,
        name: str,
        offset: int | None = None,
        *,
        timestamp: int | datetime | None = None,
        position: str | None = None,
    ) -> SubscriptionInfo:
        """Move to an offset, a time or "earliest"/"latest": below it everything counts as
        acknowledged, from it on nothing does (so seeking back replays history). Leases end.
        """
        topic, group, sub = self._resolve(topic_id, name)
        given = [x is not None for x in (offset, timestamp, position)]
        if sum(given) != 1:
            raise InvalidArgument("seek needs exactly one of offset, timestamp or position")
        if timestamp is not None:
            target = self._store.offset_for_time(topic_id, timestamp)
        elif position is not None:
            if position not in POSITIONS:
                raise InvalidArgument(f"position must be one of {POSITIONS}, not {position!r}")
            target = _position(topic_id, topic, position, "position")
        else:
            target = _position(topic_id, topic, offset, "offset")
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            sub.reset(target)
            info = self._info_locked(topic, sub)
        group.bump()
        self._persist(sub, wait=self._sync)
        return info

    # ------------------------------------------------------------ durability

    def _persist(self, sub: _Sub, *, wait: bool) -> None:
        """Queue the subscription's state for commit; with `wait`, return once committed."""
        with self._commit_lock:
            if self._closed:
                raise StoreClosed()
            self._dirty.add(sub.key)
            if not wait:
                return
            batch = self._batch
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _lead(self) -> None:
        """Commit every dirty subscription, batch after batch, until none is left."""
        while True:
            with self._commit_lock:
                keys, batch = self._dirty, self._batch
                if not keys:
                    self._leading = False
                    self._idle.notify_all()
                    return
                self._dirty, self._batch = set(), _Batch()
            try:
                self._write(keys)
            except LogstoreError as exc:
                with self._commit_lock:
                    # Keep the keys dirty for the next try; fail this batch and the next.
                    self._dirty |= keys
                    behind, self._batch = self._batch, _Batch()
                    self._leading = False
                    self._idle.notify_all()
                for failed in (batch, behind):
                    failed.error = exc
                    failed.done.set()
                return
            batch.done.set()

    def _write(self, keys: set[bytes]) -> None:
        """One LMDB commit of these subscriptions' current state (or deletion)."""
        rows = []
        for key in keys:
            sub = self._find(key)
            if sub is None:
                rows.append((key, None, b""))
            else:
                with sub.lock:
                    rows.append((key, sub, sub.encode_acks()))
        try:
            with self._meta.env.begin(write=True) as txn:
                for key, sub, acks in rows:
                    # Checked inside the transaction: a topic delete commits before or after.
                    if sub is None or not sub.live:
                        txn.delete(key, db=self._subs_db)
                        txn.delete(key, db=self._acks_db)
                        continue
                    if not sub.stored:
                        txn.put(key, json.dumps(sub.settings()).encode(), db=self._subs_db)
                    txn.put(key, acks, db=self._acks_db)
        except lmdb.Error as exc:
            topic_id = min(keys).split(b"\0", 1)[0].decode()
            raise StorageError(topic_id, f"{exc} while committing subscription state") from exc
        for _, sub, _ in rows:
            if sub is not None:
                sub.stored = True

    def _find(self, key: bytes) -> _Sub | None:
        topic_id, name = key.decode().split("\0", 1)
        group = self._groups.get(topic_id)
        return group.subs.get(name) if group is not None else None

    def maintain(self) -> None:
        """Commit dirty subscriptions; called about once a second by the store.

        Under "interval" and "never" that is every change; under "always" only the floors
        that a catch-up past retention moved (nobody waits for those).
        """
        with self._commit_lock:
            if not self._dirty or self._leading or self._closed:
                return
            batch = self._batch
            self._leading = True
        self._lead()
        if batch.error is not None:
            raise batch.error

    def close(self) -> None:
        """Commit what is dirty, then wake every poller (they get StoreClosed)."""
        with self._commit_lock:
            if self._closed:
                return
            self._closed = True
            while self._leading:
                self._idle.wait()
            keys, self._dirty = self._dirty, set()
        with self._lock:
            groups = list(self._groups.values())
        for group in groups:
            group.changes.close()
        if keys:
            self._write(keys)

    # ---------------------------------------------------------------- lookup

    def on_written(self, topic_id: str) -> None:
        """The store appended to `topic_id`: wake that topic's pollers."""
        group = self._groups.get(topic_id)
        if group is not None:
            group.bump()

    def _resolve(self, topic_id: str, name: str) -> tuple[TopicLog, _Group, _Sub]:
        check_name(name, _SUB_NAME)
        topic = self._store._log(topic_id)
        group = self._group(topic)
        sub = group.subs.get(name)
        if sub is None:
            raise SubscriptionNotFound(topic_id, name)
        return topic, group, sub

    def _group(self, topic: TopicLog) -> _Group:
        """The topic's subscriptions, loaded on first use (every time on a read-only store)."""
        if self._closed:
            raise StoreClosed()
        group = self._groups.get(topic.topic_id)
        if group is not None and group.uid == topic.uid:
            return group
        if self._readonly:
            return self._load(topic)
        with self._lock:
            if topic.uid in self._deleted_uids:
                raise TopicNotFound(topic.topic_id)
            group = self._groups.get(topic.topic_id)
            if group is None or group.uid != topic.uid:
                group = self._groups[topic.topic_id] = self._load(topic)
        return group

    def _load(self, topic: TopicLog) -> _Group:
        group = _Group(topic.uid)
        if not self._open_dbs():
            return group
        prefix = _key(topic.topic_id, "")
        stale = []
        with self._meta.env.begin() as txn:
            cursor = txn.cursor(db=self._subs_db)
            if cursor.set_range(prefix):
                for key, raw in cursor:
                    if not key.startswith(prefix):
                        break
                    settings = json.loads(raw)
                    if settings["uid"] != topic.uid:
                        stale.append(key)  # left by a deleted incarnation of the topic
                        continue
                    floor, ranges = _decode_acks(txn.get(key, db=self._acks_db))
                    name = key[len(prefix) :].decode()
                    group.subs[name] = _Sub(
                        topic.topic_id, name, settings, floor, ranges=ranges, stored=True
                    )
        if stale and not self._readonly:
            with self._commit_lock:
                self._dirty.update(stale)  # not live: the next commit deletes them
        return group


# ------------------------------------------------------------------- helpers


def _key(topic_id: str, name: str) -> bytes:
    return f"{topic_id}\0{name}".encode()


def _decode_acks(raw: bytes | None) -> tuple[int, list[tuple[int, int]]]:
    if raw is None:
        return 0, []
    values = struct.unpack(f"<{len(raw) // 8}Q", raw)
    return values[0], list(zip(values[1::2], values[2::2], strict=True))


def _position(topic_id: str, topic: TopicLog, value: object, what: str) -> int:
    """An offset from "earliest", "latest" or an offset in [start_offset, end_offset]."""
    if value == "earliest":
        return topic.start_offset
    if value == "latest":
        return topic.end_offset
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(
            f"{what} must be 'earliest', 'latest', an int offset or a datetime, not {value!r}"
        )
    if not topic.start_offset <= value <= topic.end_offset:
        raise OffsetOutOfRange(topic_id, value, topic.start_offset, topic.end_offset)
    return value


def _check_offsets(topic: TopicLog, offsets: Iterable[int]) -> list[int]:
    """The offsets, sorted and unique; each must be an int below the topic's end offset."""
    if isinstance(offsets, int | str | bytes):
        raise InvalidArgument(f"offsets must be an iterable of ints, not {offsets!r}")
    unique = set(offsets)
    if not unique:
        return []
    if set(map(type, unique)) != {int}:
        bad = next(o for o in unique if type(o) is not int)
        raise InvalidArgument(f"offsets must be ints, not {bad!r}")
    ordered = sorted(unique)
    if ordered[0] < 0:
        raise InvalidArgument(f"offsets must not be negative, not {ordered[0]}")
    end = topic.end_offset
    if ordered[-1] >= end:
        raise OffsetOutOfRange(topic.topic_id, ordered[-1], topic.start_offset, end)
    return ordered


def _runs(ordered: range | list[int]) -> list[tuple[int, int]]:
    """Sorted unique offsets as half-open runs of consecutive ones."""
    if not ordered:
        return []
    if ordered[-1] - ordered[0] == len(ordered) - 1:
        return [(ordered[0], ordered[-1] + 1)]
    runs = []
    start = prev = ordered[0]
    for o in ordered[1:]:
        if o != prev + 1:
            runs.append((start, prev + 1))
            start = o
        prev = o
    runs.append((start, prev + 1))
    return runs


def _dead_letter_record(sub: _Sub, message: Message) -> Record:
    """The message as it goes to the dead-letter topic: its headers name where it came from."""
    facts = (sub.topic_id, str(message.offset), sub.name, str(sub.counts.get(message.offset, 1)))
    headers = {**message.headers, **dict(zip(DEAD_LETTER_HEADERS, facts, strict=True))}
    return Record(message.value, message.key, headers)


def _read_offsets(topic: TopicLog, ordered: range | list[int]) -> list[Message]:
    """The messages at these sorted offsets, but those retention removed meanwhile: the
    next catch-up counts them acknowledged."""
    out: list[Message] = []
    for first, stop in _runs(ordered):
        while first < stop:
            try:
                out += topic.read(first, stop - first, None)
                break
            except OffsetOutOfRange:
                if topic.start_offset <= first:
                    raise
                first = topic.start_offset
    return out


def _check_poll_args(max_messages: object, wait: object) -> None:
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise InvalidArgument(f"max_messages must be an int of at least 1, not {max_messages!r}")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise InvalidArgument(f"wait must be a non-negative number of seconds, not {wait!r}")


def _timeout(out: list, deadline: float, lease_deadline: float | None) -> float | None:
    """How long a poll should wait for a change now; None when it should return."""
    if out:
        return None
    now = time.monotonic()
    remaining = deadline - now
    if remaining <= 0:
        return None
    if lease_deadline is not None:
        remaining = min(remaining, max(lease_deadline - now, 0.0))
    return remaining
