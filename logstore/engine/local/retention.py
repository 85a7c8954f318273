"""Retention: which whole sealed segments a topic's limits let go; one function per limit.

Age is measured from the records' own timestamps, not file times (a copied or restored
segment keeps its age): every record of a sealed segment is no newer than the first record
of the segment after it (timestamps never decrease within a topic), or than the topic's
last record when the segment after it is still empty; a segment is past `retention_ms`
once that bound is. Size counts whole segments from the
oldest. The newest segment is never a victim. The log deletes the victims (see
`TopicLog.apply_retention`): it moves the start offset first, so no reader is handed a
segment being deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def by_bytes(segments: list[int], sizes: Mapping[int, int], total: int, limit: int) -> int:
    """How many of the oldest `segments` to drop so the rest stays within `limit` bytes."""
    drop = 0
    while drop < len(segments) - 1 and total - sizes[segments[drop]] >= limit:
        total -= sizes[segments[drop]]
        drop += 1
    return drop


def by_age(segments: list[int], newest: Callable[[int], int | None], cutoff: int) -> int:
    """How many of the oldest `segments` hold only records older than `cutoff` (ms).

    `newest(i)` bounds the timestamps of sealed segment `i` from above (None: unknown,
    keep it)."""
    drop = 0
    while drop < len(segments) - 1:
        bound = newest(drop)
        if bound is None or bound >= cutoff:
            break
        drop += 1
    return drop
