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

In memory, per subscription (see `subscription_state`): a cursor (the next offset not
delivered since the last restart or seek); leases (offset -> grant number) with their grants
queued in deadline order (one `ack_wait` per subscription makes the queue sorted, so expiry is
a pop from its head); the offsets ready for redelivery (nacked or expired; lowest first);
those awaiting the dead-letter topic. Expiry is lazy: a poll or info pops the grants whose
deadline has passed.
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
import json
import logging
import math
import threading
import time
from collections.abc import Iterable
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
from .subscription_state import SubscriptionState, decode_acks, runs_of, state_key
from .topic import TopicLog, now_ms
from .types import Delivery, Grant, Message, Record, SubscriptionInfo
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


class _Group:
    """The loaded subscriptions of one topic incarnation, and its change counter."""

    __slots__ = ("changes", "subs", "uid")

    def __init__(self, uid: int):
        self.uid = uid
        self.subs: dict[str, SubscriptionState] = {}
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
                sub = group.subs[name] = SubscriptionState(topic_id, name, settings, position)
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
        prefix = state_key(topic_id, "")
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

    def _info(self, topic: TopicLog, sub: SubscriptionState) -> SubscriptionInfo:
        if self._readonly:
            topic.refresh()
        with sub.lock:
            self._catch_up(topic, sub)
            return self._info_locked(topic, sub)

    def _info_locked(self, topic: TopicLog, sub: SubscriptionState) -> SubscriptionInfo:
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
        self, topic: TopicLog, sub: SubscriptionState, limit: int
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
            counts = {o: sub.counts[o] for o in again}
            lease_deadline = sub.next_deadline()
        if dead_lettered:
            self._persist(sub, wait=self._sync)
        try:
            out: list[Delivery] = []
            for offsets, leased in ((again, Grant(grant, counts)), (fresh, Grant(grant))):
                if offsets:
                    messages = _read_offsets(topic, offsets)
                    for m in messages:  # fresh objects, shared with no one: no copy
                        m.__class__ = Delivery
                        m._grant = leased
                    out += messages
        except BaseException:
            with sub.lock:
                sub.unlease(grant, [*again, *fresh])
            raise
        return out, lease_deadline

    def _dead_letter(self, topic: TopicLog, sub: SubscriptionState) -> None:
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
        sub.ack_runs(runs_of(offsets))
        sub.release(offsets)

    def _catch_up(self, topic: TopicLog, sub: SubscriptionState) -> None:
        """Retention removed messages below the floor: acknowledge them, move on."""
        start = topic.start_offset
        if sub.floor < start:
            sub.ack_runs([(sub.floor, start)])
            sub.release_below(start)
            if not self._readonly:
                self._persist(sub, wait=False)

    # ------------------------------------------------------- acknowledgement

    def ack(self, topic_id: str, name: str, items: Iterable[int | str]) -> SubscriptionInfo:
        """Acknowledge these offsets or lease tokens (leased or not: a token of an expired or
        replaced lease acknowledges its offset); durable per the store's fsync policy."""
        topic, _, sub = self._resolve(topic_id, name)
        sorted_offsets = sorted({o for o, _ in _check_items(topic, items)})
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            if sorted_offsets:
                sub.ack_runs(runs_of(sorted_offsets))
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

    def nack(self, topic_id: str, name: str, items: Iterable[int | str]) -> SubscriptionInfo:
        """End these leases now: the messages are delivered again on the next poll. An offset
        ends its current lease; a token of an expired or replaced lease has no effect."""
        topic, group, sub = self._resolve(topic_id, name)
        checked = _check_items(topic, items)
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            for o, grant in checked:
                current = sub.leases.get(o)
                if current is not None and grant in (None, current):
                    del sub.leases[o]
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

    def _persist(self, sub: SubscriptionState, *, wait: bool) -> None:
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

    def _find(self, key: bytes) -> SubscriptionState | None:
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

    def _resolve(self, topic_id: str, name: str) -> tuple[TopicLog, _Group, SubscriptionState]:
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
        prefix = state_key(topic.topic_id, "")
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
                    floor, ranges = decode_acks(txn.get(key, db=self._acks_db))
                    name = key[len(prefix) :].decode()
                    group.subs[name] = SubscriptionState(
                        topic.topic_id, name, settings, floor, ranges=ranges, stored=True
                    )
        if stale and not self._readonly:
            with self._commit_lock:
                self._dirty.update(stale)  # not live: the next commit deletes them
        return group


# ------------------------------------------------------------------- helpers


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


def _check_items(topic: TopicLog, items: Iterable[int | str]) -> list[tuple[int, int | None]]:
    """(offset, grant) for each offset (grant None) or lease token; each offset must be
    below the topic's end offset."""
    if isinstance(items, int | str | bytes):
        raise InvalidArgument(f"offsets must be an iterable of ints or lease tokens, not {items!r}")
    checked = [_parse_item(item) for item in items]
    if not checked:
        return checked
    highest = max(o for o, _ in checked)
    end = topic.end_offset
    if highest >= end:
        raise OffsetOutOfRange(topic.topic_id, highest, topic.start_offset, end)
    return checked


def _parse_item(item: object) -> tuple[int, int | None]:
    if type(item) is int:
        if item < 0:
            raise InvalidArgument(f"offsets must not be negative, not {item}")
        return item, None
    if isinstance(item, str):
        offset, _, grant = item.partition("-")
        if offset.isdigit() and grant.isdigit():
            return int(offset), int(grant)
        raise InvalidArgument(f"{item!r} is not a lease token (tokens come with deliveries)")
    raise InvalidArgument(f"offsets must be ints or lease tokens, not {item!r}")


def _dead_letter_record(sub: SubscriptionState, message: Message) -> Record:
    """The message as it goes to the dead-letter topic: its headers name where it came from."""
    facts = (sub.topic_id, str(message.offset), sub.name, str(sub.counts.get(message.offset, 1)))
    headers = {**message.headers, **dict(zip(DEAD_LETTER_HEADERS, facts, strict=True))}
    return Record(message.value, message.key, headers)


def _read_offsets(topic: TopicLog, ordered: range | list[int]) -> list[Message]:
    """The messages at these sorted offsets, but those retention removed meanwhile: the
    next catch-up counts them acknowledged."""
    out: list[Message] = []
    for first, stop in runs_of(ordered):
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
