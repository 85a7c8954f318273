"""Idempotency keys of the local engine: which keyed batches were written, or are being.

`Store.write*` take an idempotency key per batch (the policy is documented on the facade).
This table remembers, per topic incarnation (its uid) and key, the first offset the key's
batch got and how its write went (its group-commit ticket), so `TopicLog.append_frames` can
answer a duplicate without appending it again:

- written less than `window` seconds ago: the first offset, as a `Replayed`;
- in flight (queued, not yet written): the duplicate waits for that write (it joins the
  group commit with nothing to write: the mechanism every write already uses), then answers
  its first offset, or is appended itself if that write failed;
- failed, expired, dropped for room or never seen: not found, so the batch is appended.

An entry is added when its batch is queued (under the topic's queue lock, so a duplicate
never takes offsets) and counts as written only once its group commit succeeded; a failed
write's entry is dropped, so its retry really runs. The window runs from the first write.

The table lives in this process's memory (a restart forgets it), holds at most `max_keys`
entries for the whole store (oldest dropped first) and is consulted only for batches that
carry a key: writes without keys never touch it. `forget_topic` drops a deleted topic's keys
(a re-created topic has a new uid, so none of the old ones could match it anyway).

Thread-safe: `_lock` guards the table, which every topic of a store shares; it is taken
under a topic's queue lock, never the other way round. An entry's own fields are read and
set under its topic's queue lock, or by the caller that wrote it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ...group_commit import Ticket, succeeded


class Entry:
    """One key: its batch's first offset, when it was queued, and its ticket (None once it is
    known written, which also lets the group commit's batch go)."""

    __slots__ = ("first", "since", "ticket")

    def __init__(self, first: int, since: float, ticket: Ticket | None):
        self.first = first
        self.since = since
        self.ticket = ticket

    def written(self) -> bool | None:
        """True once its batch is written, False if that failed, None while in flight."""
        ticket = self.ticket
        return True if ticket is None else succeeded(ticket)

    def settle(self) -> None:
        """Its writer saw the batch written."""
        self.ticket = None


class IdempotencyTable:
    def __init__(self, window: float, max_keys: int):
        self.window = window
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str], Entry] = OrderedDict()  # oldest first

    def find(self, uid: int, key: str) -> Entry | None:
        """The key's entry, written or in flight; None if there is none (or it failed)."""
        with self._lock:
            self._expire(time.monotonic())
            entry = self._entries.get((uid, key))
            if entry is not None and entry.written() is False:
                del self._entries[(uid, key)]
                return None
            return entry

    def add(self, uid: int, key: str, first: int, ticket: Ticket) -> Entry:
        """Remember a batch just queued under `key`, dropping the oldest entries for room."""
        entry = Entry(first, time.monotonic(), ticket)
        with self._lock:
            entries = self._entries
            entries.pop((uid, key), None)  # a new entry goes last: the order is by time
            entries[(uid, key)] = entry
            while len(entries) > self.max_keys:
                entries.popitem(last=False)
        return entry

    def forget(self, uid: int, key: str, entry: Entry) -> None:
        """Its write failed: drop the entry (unless another has replaced it)."""
        with self._lock:
            if self._entries.get((uid, key)) is entry:
                del self._entries[(uid, key)]

    def forget_topic(self, uid: int) -> None:
        """The topic incarnation is gone: its keys go with it."""
        with self._lock:
            for k in [k for k in self._entries if k[0] == uid]:
                del self._entries[k]

    def __len__(self) -> int:
        """Keys remembered now (written within the window, or in flight)."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        cutoff = now - self.window
        while entries and next(iter(entries.values())).since <= cutoff:
            entries.popitem(last=False)
