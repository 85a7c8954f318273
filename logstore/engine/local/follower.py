"""The read-only follower: a `Store(path, readonly=True)` in another process than the writer
picks up what the writer appended, rolled or retained, by walking the new bytes of its
segments (resync mode: it steps over kept damage like recovery does), up to the end offset
the writer published (see `published`): under fsync="always" it never sees a message the
writer has not made durable. It holds no lock on the directory and writes nothing; it looks
again on every read and while waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import TopicNotFound
from .segment import ScanStop, list_segments, scan

if TYPE_CHECKING:
    from .log import TopicLog


def refresh(topic: TopicLog) -> None:
    """Pick up what the writing process appended or retained (read-only stores only)."""
    with topic._io_lock:
        try:
            bases = list_segments(topic.directory)
        except FileNotFoundError:
            raise TopicNotFound(topic.topic_id) from None  # the writer deleted it
        if not bases:
            return
        for gone in (b for b in topic._segments if b < bases[0]):
            topic._ctx.handles.forget(topic.segment_path(gone))  # retention deleted it
        known = [b for b in topic._segments if b >= bases[0]]
        position = topic._active_size
        if not known:
            known, position, topic._end = [bases[0]], 0, bases[0]
        topic._sealed_sizes = {b: s for b, s in topic._sealed_sizes.items() if b in known}
        newer = [b for b in bases if b > known[-1]]
        limit = topic._published.end()  # the writer's visible end: durable under "always"
        while True:
            path = topic.segment_path(known[-1])
            try:
                with topic._ctx.handles.pinned(path) as fd:
                    for item in scan(fd, position, topic._end, resync=True):
                        if isinstance(item, ScanStop):
                            break
                        if isinstance(item, tuple):
                            at, header = item
                            if limit is not None and header.next_offset > limit:
                                item = ScanStop(at, header.base_offset)  # not yet published
                                break
                            topic._last_ts = header.timestamp
                        elif limit is not None and item.next_offset > limit:
                            item = ScanStop(item.position, item.first_offset)
                            break
                        else:
                            topic.add_damage(known[-1], [item])
                position, topic._end = item.position, item.next_offset
            except FileNotFoundError:
                return
            if item.error is not None or not newer or newer[0] != topic._end:
                break
            topic._sealed_sizes = {**topic._sealed_sizes, known[-1]: position}
            known.append(newer.pop(0))
            position = 0
        topic._segments = tuple(known)
        topic._active_path = topic.segment_path(known[-1])
        topic._active_size = position
        topic.visible.advance(topic._end)
