"""Group commit: many callers' work written by one of them at a time, together.

Callers queue items; a caller that finds no leader becomes it and writes everything queued
with one call of `write` (one `pwrite` + one fsync, or one LMDB commit), while later callers
queue up behind it. When the leader is done it wakes the callers of its batch (each waits
on a lock of its own, released by the leader) and hands leadership to the first caller of
the next batch, so no caller waits for more than its own batch and the one before
(LevelDB's writer queue). A lone caller takes no lock to wait on at all.

Batches finish in order: a batch's callers learn its outcome only after every batch queued
before it has finished, so a caller that queues nothing (`enqueue_locked([])`) and waits
knows, once its wait returns, how every batch queued before it went (the topic log's
idempotency keys wait for a write in flight this way).

Used by the topic log (frames, numbered under `lock` as they are queued) and by the
subscription commits (dirty subscription keys). Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

from .errors import LogstoreError, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Batch:
    """The callers whose items one leader writes together, and how that went.

    Its followers wait on locks of their own, taken before they wait and released to wake
    them (one C call each): an Event's condition would wake them through a deque whose
    removals cost O(n) each, quadratic in the followers, all of it holding the GIL. A lone
    writer takes no lock at all."""

    __slots__ = ("error", "finished", "heir", "heir_woken", "waiters")

    def __init__(self) -> None:
        self.heir: threading.Lock | None = None  # held; the first follower waits on it
        self.heir_woken = False
        self.waiters: list[threading.Lock] = []  # held; one per later follower
        self.error: LogstoreError | None = None
        self.finished = False

    def finish(self, error: LogstoreError | None) -> None:
        self.error = error
        self.finished = True
        for waiter in self.waiters:
            waiter.release()
        self.wake_heir()

    def wake_heir(self) -> None:
        """Let the first follower go on: to lead this batch, or to learn that it finished."""
        if self.heir is not None and not self.heir_woken:
            self.heir_woken = True
            self.heir.release()


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


LEAD, INHERIT, FOLLOW = 0, 1, 2
Ticket = tuple[_Batch, int, "threading.Lock | None"]
"""A caller's place in the queue: its batch, whether it leads, inherits or follows it, and
the lock it waits on (a tuple: this is on the path of every write)."""


def succeeded(ticket: Ticket) -> bool | None:
    """How the ticket's batch went: True (written), False (failed), None (not finished)."""
    batch = ticket[0]
    return (batch.error is None) if batch.finished else None


class GroupCommit(Generic[T]):
    """The queue and its leadership. `write(items)` stores a batch or raises.

    `on_failure(failed, behind)`, called under `lock` when `write` raised, returns the items
    to keep queued for the next leader; every caller of the failed batch, and of the batch
    queued behind it, gets the error (items numbered after a failed batch must not land).
    `exclusive` (optional) is held around taking the queue and writing it.
    """

    def __init__(
        self,
        write: Callable[[list[T]], None],
        on_failure: Callable[[list[T], list[T]], list[T]],
        *,
        exclusive: threading.Lock | None = None,
        name: str = "",
    ):
        self.lock = threading.Lock()  # the queue; callers may hold it to number their items
        self._idle = threading.Condition(self.lock)
        self._write = write
        self._on_failure = on_failure
        self._exclusive: AbstractContextManager = exclusive or nullcontext()
        self._name = name
        self._queue: list[T] = []
        self._batch = _Batch()
        self._leading = False
        self._draining = False  # someone waits in `drain_locked` for the leader to finish

    def submit(self, items: list[T]) -> None:
        """Queue `items` and return once they are written (or raise why not)."""
        with self.lock:
            ticket = self.enqueue_locked(items)
        self.wait(ticket)

    def enqueue_locked(self, items: list[T]) -> Ticket:
        """Queue `items` (the caller holds `lock`); then `wait(ticket)` outside the lock.

        `items` may be empty: the caller then only waits for the batches queued so far."""
        self._queue.extend(items)
        batch = self._batch
        if not self._leading:
            self._leading = True
            return batch, LEAD, None
        if batch.heir is None:
            batch.heir = _held_lock()
            return batch, INHERIT, batch.heir
        waiter = _held_lock()
        batch.waiters.append(waiter)
        return batch, FOLLOW, waiter

    def idle_locked(self) -> bool:
        """Nobody leads and nothing is queued (the caller holds `lock`): whoever also holds
        `exclusive` may write on its own without passing anyone in the queue."""
        return not self._leading and not self._queue

    def defer_locked(self, items: list[T]) -> None:
        """Queue `items` for the next leader or `flush`, without waiting (caller holds `lock`)."""
        self._queue.extend(items)

    def wait(self, ticket: Ticket) -> None:
        """Lead, inherit or wait for the ticket's batch; raise its error, if any."""
        batch, role, waiter = ticket
        if role == LEAD:
            self._lead()
        elif role == INHERIT:
            waiter.acquire()
            if not batch.finished:
                self._lead()  # handed over: this caller writes its own batch
        else:
            waiter.acquire()
        if batch.error is not None:
            raise batch.error

    def flush(self) -> None:
        """Write what is queued now, unless a leader is already at it (background flush)."""
        with self.lock:
            if self._leading or not self._queue:
                return
            ticket = self.enqueue_locked([])
        self.wait(ticket)

    def drain_locked(self) -> list[T]:
        """Wait (holding `lock`) until no leader runs; take what is still queued."""
        while self._leading:
            self._draining = True
            self._idle.wait()
        items, self._queue = self._queue, []
        return items

    def _lead(self) -> None:
        """Write the batch at the head of the queue, then hand leadership to the next one."""
        with self._exclusive:
            with self.lock:
                items, batch = self._queue, self._batch
                self._queue, self._batch = [], _Batch()
            try:
                if items:  # empty when its only callers queued nothing (they wait)
                    self._write(items)
            except Exception as exc:  # every caller must hear of it, whatever it was
                if not isinstance(exc, LogstoreError):
                    log.exception("%s: unexpected failure writing a batch", self._name)
                    exc = StorageError(self._name, f"unexpected failure: {exc!r}")
                with self.lock:
                    behind, self._batch = self._batch, _Batch()
                    self._queue = self._on_failure(items, self._queue)
                batch.finish(exc)  # first: batches finish in order
                behind.finish(exc)
            else:
                batch.finish(None)
            with self.lock:
                if self._batch.heir is None:  # else a caller waits, even with nothing queued
                    self._leading = False
                    if self._draining:
                        self._idle.notify_all()
                    return
                heir = self._batch
        heir.wake_heir()  # the next batch's first caller leads it; `_leading` stays set
