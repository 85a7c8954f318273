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
(subscribe, unsubscribe, ack, commit, seek, and the facade's "terminate" after it dead-
lettered exhausted messages) returns after an LMDB commit that holds it; concurrent callers
share one commit (`group_commit`, the helper the topic log's appends use too: the first
caller leads, commits every dirty subscription at once and wakes the others). Under
"interval" and "never" memory is the authority: dirty subscriptions are committed by
`maintain()` (the store's maintenance thread, about once a second) and by `close()`. A
crash forgets at most that window, and those messages are delivered again.

Leases and delivery counts live in memory only: after a restart every unacknowledged message
is deliverable again (at-least-once) and its delivery count starts again at 1, so
`max_deliveries` counts deliveries since the last restart.

In memory, per subscription (see `subscription_state`): a cursor (the next offset not
delivered since the last restart or seek); leases (offset -> grant number) with their grants
queued in deadline order (one `ack_wait` per subscription makes the queue sorted, so expiry is
a pop from its head); the offsets ready for redelivery (nacked or expired; lowest first);
those awaiting the dead-letter topic (`dead`), and those handed to the facade to dead-letter
(`dying`, until it settles them as "terminate", or as "nack" when that failed). Expiry is
lazy: a poll or info pops the grants whose deadline has passed.
A subscription behind retention moves its floor and cursor up to the topic's start offset.

Waiting: each topic with subscriptions has a `Watermark` used as a change counter. Writes to
the topic (the store calls `on_written`), nacks, seeks, unsubscribes and topic deletion
bump it; a poller with nothing to deliver waits on it, bounded by the nearest lease
deadline. Threads block; asyncio tasks await; nobody polls in a loop.

Subscriptions of a topic load from LMDB on first use, so opening a store costs nothing per
subscription.

Thread-safety: every public method is thread-safe. Locks nest only in this order: the
engine's lock -> an LMDB write transaction -> `_lock` (the registry) -> `_commit_lock`
(the queue of the group commit, `group_commit.GroupCommit`).
A subscription's `lock` is held only for in-memory work: no file is read or written, no
LMDB transaction begins and nothing is fsynced under it (the committer snapshots each
subscription under its lock first, then commits holding none).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import lmdb

from ...errors import (
    InvalidArgument,
    OffsetOutOfRange,
    StoreClosed,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicNotFound,
)
from ...group_commit import GroupCommit
from ...types import Delivery, Grant, Message, SubscriptionInfo
from ...waiting import Watermark
from ..base import Leased, Outcome, SubscriptionSettings
from .failures import storage_error
from .log import TopicLog, now_ms
from .subscription_state import SubscriptionState, decode_acks, runs_of, state_key

if TYPE_CHECKING:
    from .meta import MetaStore

log = logging.getLogger(__name__)


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


_Resolved = tuple[TopicLog, "_Group", SubscriptionState]


class Subscriptions:
    """Every subscription of a store: the local engine's half that leases and settles."""

    def __init__(
        self,
        meta: MetaStore,
        logs: Callable[[str], TopicLog],
        logs_async: Callable[[str], Awaitable[TopicLog]],
        *,
        sync: bool,
    ) -> None:
        self._meta = meta
        self._logs = logs  # topic id -> its loaded log (TopicNotFound if none)
        self._logs_async = logs_async
        self._readonly = meta.readonly
        self._sync = sync
        self._lock = threading.Lock()  # the registry: _groups
        self._groups: dict[str, _Group] = {}
        self._deleted_uids: set[int] = set()  # incarnations of deleted topics
        self._commits: GroupCommit[bytes] = GroupCommit(
            self._write, _keep_dirty, name="subscriptions"
        )  # of the keys of subscriptions whose state changed
        self._commit_lock = self._commits.lock  # also guards _closed
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
        self, topic_id: str, name: str, settings: SubscriptionSettings, start: int
    ) -> tuple[SubscriptionInfo, bool]:
        """Create a subscription at `start`; a no-op if it exists with the same settings
        (re-subscribing resumes where it stands, as a restarted consumer expects)."""
        topic = self._logs(topic_id)
        group = self._group(topic)
        with self._lock:
            if self._groups.get(topic_id) is not group:
                raise TopicNotFound(topic_id)  # deleted meanwhile
            sub = group.subs.get(name)
            if sub is not None:
                if not sub.same_settings(
                    settings.ack_wait, settings.max_deliveries, settings.dead_letter_topic
                ):
                    raise SubscriptionExists(
                        topic_id,
                        name,
                        f" with different settings (ack_wait={sub.ack_wait}, max_deliveries="
                        f"{sub.max_deliveries}, dead_letter_topic={sub.dead_letter_topic!r}); "
                        "unsubscribe first to change them",
                    )
                created = False
            else:
                stored = {
                    "uid": topic.uid,
                    "ack_wait": settings.ack_wait,
                    "max_deliveries": settings.max_deliveries,
                    "dead_letter_topic": settings.dead_letter_topic,
                    "created_at": now_ms(),
                }
                sub = group.subs[name] = SubscriptionState(topic_id, name, stored, start)
                created = True
        if created:
            log.info("subscription %r on topic %r created at offset %d", name, topic_id, start)
            self._persist(sub, wait=self._sync)
        return self._info(topic, sub), created

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
        topic = self._logs(topic_id)
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

    def lease(
        self,
        topic_id: str,
        name: str,
        max_messages: int,
        wait: float,
        max_bytes: int | None = None,
    ) -> Leased:
        """Lease up to `max_messages` deliverable messages (and about `max_bytes` of values
        and keys, but always the first); with `wait`, block for the first.

        Redeliveries (nacked or expired, lowest offset first) come before new messages.
        """
        deadline = time.monotonic() + wait
        while True:
            topic, group, sub = self._resolve(topic_id, name)
            version = group.changes.value
            leased, lease_deadline = self._lease_once(topic, sub, max_messages, max_bytes)
            timeout = _timeout(leased, deadline, lease_deadline)
            if timeout is None:
                return leased
            group.changes.wait_beyond(version, timeout)

    async def lease_async(
        self,
        topic_id: str,
        name: str,
        max_messages: int,
        wait: float,
        max_bytes: int | None = None,
    ) -> Leased:
        """`lease` for asyncio. A poll with nothing to deliver waits on the event loop and
        costs no thread; only leasing (which reads files) runs in the loop's executor, and
        loading a topic or its subscriptions (recovery, LMDB) never runs on the loop."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        while True:
            found = self._loaded(topic_id, name)
            if found is None:
                found = await loop.run_in_executor(None, self._resolve, topic_id, name)
            topic, group, sub = found
            version = group.changes.value
            nearest = self._nothing_to_lease(topic, sub)
            if nearest is False:
                leased, nearest = await loop.run_in_executor(
                    None, self._lease_once, topic, sub, max_messages, max_bytes
                )
            else:
                leased = Leased()
            timeout = _timeout(leased, deadline, nearest)
            if timeout is None:
                return leased
            await group.changes.wait_beyond_async(version, timeout)

    def _nothing_to_lease(self, topic: TopicLog, sub: SubscriptionState) -> float | bool | None:
        """False when a lease may find work; else the nearest lease deadline (or None).

        A cheap look under the lock, so that an idle long poll waits without a thread."""
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(sub.topic_id, sub.name)
            nearest = sub.next_deadline()
            busy = (
                sub.ready
                or sub.dead
                or sub.cursor < topic.end_offset
                or sub.floor < topic.start_offset
                or (nearest is not None and nearest <= time.monotonic())
            )
            return False if busy else nearest

    def _lease_once(
        self, topic: TopicLog, sub: SubscriptionState, limit: int, max_bytes: int | None
    ) -> tuple[Leased, float | None]:
        """Lease what can be delivered now; also the nearest lease deadline.

        Offsets are chosen and leased under the subscription's lock, then read without it,
        so competing consumers read their batches side by side instead of in a queue.
        Exhausted messages are held (`dying`) for the facade to dead-letter: no write, and
        no fsync, happens under the lock. Offsets the byte budget leaves unread are given
        back (`unlease`: delivered next, their count unchanged).
        """
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(sub.topic_id, sub.name)
            now = time.monotonic()
            sub.expire(now)
            self._catch_up(topic, sub)
            dying = sub.take_dead()
            again = sub.take_ready(limit) if sub.ready else []
            fresh = sub.take_new(limit - len(again), topic.end_offset)
            grant = sub.lease(now, again, fresh)
            counts = {o: sub.counts[o] for o in again}
            lease_deadline = sub.next_deadline()
        leased = Leased(
            exhausted_offsets=dying,
            dead_letter_topic=sub.dead_letter_topic,
            max_deliveries=sub.max_deliveries,
        )
        budget = [max_bytes if max_bytes is not None else -1]
        unread: list[int] = []
        try:
            if dying:
                leased.exhausted, _ = _read_offsets(topic, dying, [-1])
            for offsets, grants in ((again, Grant(grant, counts)), (fresh, Grant(grant))):
                if unread:
                    unread += offsets
                elif offsets:
                    messages, unread = _read_offsets(topic, offsets, budget)
                    for m in messages:  # fresh objects, shared with no one: no copy
                        m.__class__ = Delivery
                        m._grant = grants
                    leased.deliveries += messages
        except BaseException:
            with sub.lock:
                sub.unlease(grant, [*again, *fresh])
                sub.revive(dying)
            raise
        if unread:
            with sub.lock:
                sub.unlease(grant, unread)
        return leased, lease_deadline

    def _catch_up(self, topic: TopicLog, sub: SubscriptionState) -> None:
        """Retention removed messages below the floor: acknowledge them, move on."""
        start = topic.start_offset
        if sub.floor < start:
            sub.ack_runs([(sub.floor, start)])
            sub.release_below(start)
            if not self._readonly:
                self._persist(sub, wait=False)

    # ------------------------------------------------------- acknowledgement

    def settle(
        self, topic_id: str, name: str, items: Iterable[int | str], outcome: Outcome
    ) -> SubscriptionInfo:
        """End leases given as offsets or lease tokens.

        "ack": acknowledged (a token of an expired or replaced lease acknowledges its offset
        all the same); durable per the store's fsync policy. "nack": an offset ends its
        current lease, a current token its lease, and the message is delivered again; a
        stale token has no effect; an exhausted message held for dead-lettering goes back
        to waiting for it. "terminate": exhausted messages the facade dead-lettered (or
        dropped) count as acknowledged.
        """
        topic, group, sub = self._resolve(topic_id, name)
        offsets, tokens = _check_items(topic, items)
        with sub.lock:
            if not sub.live:
                raise SubscriptionNotFound(topic_id, name)
            if outcome == "nack":
                sub.revive([*offsets, *(o for o, _ in tokens)])
                leases = sub.leases
                for o, grant in [*((o, leases.get(o)) for o in offsets), *tokens]:
                    if grant is not None and leases.get(o) == grant:
                        del leases[o]
                        sub.requeue(o)
            else:
                if tokens:
                    offsets = sorted({*offsets, *(o for o, _ in tokens)})
                if offsets:  # releasing a "terminate"d offset ends its dying too
                    sub.ack_runs(runs_of(offsets))
                    sub.release(offsets)
        info = self._info_locked(topic, sub)
        if outcome == "nack":
            group.bump()
        else:
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

    def seek(self, topic_id: str, name: str, target: int) -> SubscriptionInfo:
        """Move to offset `target`: below it everything counts as acknowledged, from it on
        nothing does (so seeking back replays history). Leases end."""
        topic, group, sub = self._resolve(topic_id, name)
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
        """Queue the subscription's state for commit; with `wait`, return once committed
        (concurrent callers share one LMDB commit: see `group_commit`)."""
        with self._commit_lock:
            if self._closed:
                raise StoreClosed()
            if not wait:
                self._commits.defer_locked([sub.key])
                return
            ticket = self._commits.enqueue_locked([sub.key])
        self._commits.wait(ticket)

    def _write(self, keys: list[bytes]) -> None:
        """One LMDB commit of these subscriptions' current state (or deletion)."""
        if not keys:
            return
        rows = []
        for key in set(keys):
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
            self._revert([sub for _, sub, _ in rows if sub is not None and sub.live])
            raise storage_error(topic_id, exc, "committing subscription state") from exc
        for _, sub, _ in rows:
            if sub is not None:
                sub.stored = True

    def _revert(self, subs: list[SubscriptionState]) -> None:
        """A commit failed: these subscriptions go back to their last committed state and
        deliver again from its floor, as after a restart, so neither the callers (who get
        the error) nor a later reader take for done what was not stored. A subscription
        whose creation was not stored goes away. If even reading LMDB fails, the state is
        left as it is (logged): the next open reads what was stored."""
        try:
            with self._meta.env.begin() as txn:
                stored = {s.key: decode_acks(txn.get(s.key, db=self._acks_db)) for s in subs}
        except lmdb.Error as exc:
            log.error("cannot read back subscription state after a failed commit: %s", exc)
            return
        for sub in subs:
            group = self._groups.get(sub.topic_id)
            with sub.lock:
                if not sub.stored:
                    sub.live = False
                else:
                    floor, ranges = stored[sub.key]
                    sub.reset(floor)
                    sub.starts = [start for start, _ in ranges]
                    sub.ends = [end for _, end in ranges]
            if not sub.stored and group is not None:
                with self._lock:
                    if group.subs.get(sub.name) is sub:
                        del group.subs[sub.name]
            if group is not None:
                group.bump()
            log.warning(
                "subscription %r on topic %r: a commit failed; back to its stored state "
                "(ack floor %d), unacknowledged messages are delivered again",
                sub.name,
                sub.topic_id,
                sub.floor,
            )

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
            if self._closed:
                return
        self._commits.flush()

    def close(self) -> None:
        """Commit what is dirty, then wake every poller (they get StoreClosed)."""
        with self._commit_lock:
            if self._closed:
                return
            self._closed = True
            keys = self._commits.drain_locked()
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

    def _loaded(
        self, topic_id: str, name: str
    ) -> tuple[TopicLog, _Group, SubscriptionState] | None:
        """`_resolve` from memory alone (no recovery, no LMDB), or None if not loaded yet."""
        group = self._groups.get(topic_id)
        sub = group.subs.get(name) if group is not None else None
        if sub is None or self._closed:
            return None
        topic = self._logs(topic_id) if topic_id in self._groups else None
        return (topic, group, sub) if topic is not None and topic.uid == group.uid else None

    def _resolve(self, topic_id: str, name: str) -> _Resolved:
        topic = self._logs(topic_id)
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
                self._commits.defer_locked(stale)  # not live: the next commit deletes them
        return group


# ------------------------------------------------------------------- helpers


def _check_items(
    topic: TopicLog, items: Iterable[int | str]
) -> tuple[list[int], list[tuple[int, int]]]:
    """The plain offsets (sorted, unique) and the lease tokens as (offset, grant); every
    offset must be below the topic's end offset. All ints (the common case) take a path
    with no Python-level work per item."""
    if isinstance(items, int | str | bytes):
        raise InvalidArgument(f"offsets must be an iterable of ints or lease tokens, not {items!r}")
    items = items if isinstance(items, list) else list(items)
    kinds = set(map(type, items))
    if kinds <= {int}:
        offsets, tokens = sorted(set(items)), []
    elif kinds <= {int, str}:
        offsets = sorted({i for i in items if type(i) is int})
        tokens = [_parse_token(i) for i in items if type(i) is str]
    else:
        bad = next(i for i in items if type(i) not in (int, str))
        raise InvalidArgument(f"offsets must be ints or lease tokens, not {bad!r}")
    if offsets and offsets[0] < 0:
        raise InvalidArgument(f"offsets must not be negative, not {offsets[0]}")
    highest = max([offsets[-1] if offsets else -1, *(o for o, _ in tokens)])
    end = topic.end_offset
    if highest >= end:
        raise OffsetOutOfRange(topic.topic_id, highest, topic.start_offset, end)
    return offsets, tokens


def _parse_token(token: str) -> tuple[int, int]:
    offset, _, grant = token.partition("-")
    if offset.isascii() and offset.isdigit() and grant.isascii() and grant.isdigit():
        return int(offset), int(grant)
    raise InvalidArgument(f"{token!r} is not a lease token (tokens come with deliveries)")


def _read_offsets(
    topic: TopicLog, ordered: range | list[int], budget: list[int]
) -> tuple[list[Message], list[int]]:
    """The messages at these sorted offsets, but those retention removed meanwhile (the
    next catch-up counts them acknowledged), within the byte budget `budget[0]` (spent; -1:
    none; the first message always fits); second, the offsets the budget left unread."""
    out: list[Message] = []
    for first, stop in runs_of(ordered):
        while first < stop:
            if out and budget[0] == 0:
                return out, [o for o in ordered if o >= first]
            try:
                got = topic.read(first, stop - first, None if budget[0] < 0 else budget[0])
            except OffsetOutOfRange:
                if topic.start_offset <= first:
                    raise
                first = topic.start_offset
                continue
            out += got
            if budget[0] >= 0:
                spent = sum(len(m.value) + len(m.key or b"") for m in got)
                cut = got and got[-1].offset + 1 < stop  # the read stopped at the budget
                budget[0] = 0 if cut else max(0, budget[0] - spent)
            first = got[-1].offset + 1 if got and budget[0] == 0 else stop
    return out, []


def _keep_dirty(failed: list[bytes], behind: list[bytes]) -> list[bytes]:
    """A commit failed (and `_write` reverted its subscriptions): those queued behind it
    stay dirty, for the next commit."""
    return behind


def _timeout(leased: Leased, deadline: float, lease_deadline: float | None) -> float | None:
    """How long a poll should wait for a change now; None when it should return."""
    if leased.deliveries or leased.exhausted_offsets:
        return None
    now = time.monotonic()
    remaining = deadline - now
    if remaining <= 0:
        return None
    if lease_deadline is not None:
        remaining = min(remaining, max(lease_deadline - now, 0.0))
    return remaining
