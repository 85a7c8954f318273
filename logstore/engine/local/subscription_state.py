"""The state of one subscription: its acknowledged offsets and its in-memory leases.

Acknowledgements are an ack floor (every offset below it is acknowledged) plus sorted,
disjoint, half-open ranges of acknowledged offsets above it; `encode_acks` / `decode_acks` are
their stored form (<Q floor, then <QQ per range), so the bytes grow with gaps, not with acks.
Leases, redeliveries, delivery counts and dead-letter candidates live in memory only.
`Subscriptions` (in `subscriptions`) owns the rules, the locking and the storage.
"""

from __future__ import annotations

import heapq
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable


def state_key(topic_id: str, name: str) -> bytes:
    return f"{topic_id}\0{name}".encode()


def decode_acks(raw: bytes | None) -> tuple[int, list[tuple[int, int]]]:
    if raw is None:
        return 0, []
    values = struct.unpack(f"<{len(raw) // 8}Q", raw)
    return values[0], list(zip(values[1::2], values[2::2], strict=True))


def runs_of(ordered: range | list[int]) -> list[tuple[int, int]]:
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


class SubscriptionState:
    """One subscription: settings, ack state (floor + ranges) and in-memory leases.

    Not thread-safe by itself: every mutable field is guarded by `lock`, which the caller
    (`Subscriptions`) holds around each method.
    """

    __slots__ = (
        "ack_wait",
        "counts",
        "created_at",
        "cursor",
        "dead",
        "dead_letter_topic",
        "dying",
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
        self.key = state_key(topic_id, name)
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
        self.last_grant = time.time_ns() // 1000  # grants (in lease tokens) never repeat
        self.ready: set[int] = set()  # to deliver again (nacked or expired)
        self.ready_heap: list[int] = []  # the same, lowest first; may hold stale entries
        self.counts: dict[int, int] = {}  # deliveries so far, where not 1
        self.dead: set[int] = set()  # delivered max_deliveries times: for the dead letters
        self.dying: set[int] = set()  # handed to the facade to dead-letter, not settled yet

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
        if self.dying:
            self.dying.difference_update(offsets)
        if self.counts:
            pop = self.counts.pop
            for o in offsets:
                pop(o, None)

    def release_below(self, offset: int) -> None:
        for o in [o for o in self.leases if o < offset]:
            del self.leases[o]
        self.ready = {o for o in self.ready if o >= offset}
        self.dead = {o for o in self.dead if o >= offset}
        self.dying = {o for o in self.dying if o >= offset}
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
        self.dying.clear()

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

    def take_dead(self) -> list[int]:
        """The exhausted offsets, now held as `dying` until the facade settles them."""
        if not self.dead:
            return []
        taken = sorted(self.dead)
        self.dying.update(taken)
        self.dead.clear()
        return taken

    def revive(self, offsets: Iterable[int]) -> None:
        """Dying offsets whose dead-lettering failed wait for the next poll to try again."""
        for o in offsets:
            if o in self.dying:
                self.dying.discard(o)
                self.dead.add(o)

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
