"""Loading a topic's log: the recovery passes that run when a topic is first opened.

On disk a topic is a directory of segment files (see `segment`), each a run of frames (see
`frames`). The LMDB offset index (see `index`) is a cache; the segments are the truth.
The passes, each logged under `logstore.engine.local.loader`:

1. Segments: list the segment files; a topic directory without one gets an empty
   segment 0 (a create interrupted after `mkdir`).
2. Index check: take the topic's last index entry. It must name an existing segment and
   point at a sound frame with that base offset; otherwise the index is ahead of or
   inconsistent with the segments, and the topic's entries are dropped (full rebuild).
   Entries below the first segment (retention interrupted) are dropped.
3. Tail scan: from that entry (or the first segment when rebuilding) walk every frame in
   resync mode (`segment.scan`), checking framing, offset continuity across segments and
   CRC, adding index entries. Damage (a bad frame, header or body, with sound log after it:
   a sound frame later in the segment, or a later segment that continues the offsets) is
   kept: reads of its offsets raise `Corruption`, the rest stays readable. Only unsound
   bytes with nothing sound after them, at the end of the newest segment, are a torn tail:
   cut there (logged, counted in `Stats`). A later segment that starts inside the log
   before it is removed.
4. State: end offset, last timestamp, active segment size and the damage found come from
   the scan, as a `LoadedLog`.

So opening costs time in proportion to the un-indexed tail, not to the log. Damage before
the tail is found by the reads that meet it (see `reader`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .failures import storage_error
from .index import INTERVAL_BYTES, IndexEntry
from .segment import (
    DamagedRegion,
    ScanStop,
    create_segment,
    fsync_directory,
    list_segments,
    scan,
    segment_name,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedLog:
    """What recovery found: the state a `TopicLog` starts from."""

    segments: tuple[int, ...]  # base offsets of the segment files kept
    end_offset: int
    active_size: int  # bytes of the newest segment
    last_timestamp: int
    entries: list[IndexEntry]  # index entries for the scanned tail
    damage: dict[int, tuple[DamagedRegion, ...]]  # kept damage, by segment base offset


def log_damage(topic_id: str, path: str, region: DamagedRegion) -> None:
    """Say what damage was found and kept: which topic, file, bytes and offsets."""
    log.error(
        "topic %r: damaged bytes %d..%d in %s (%s): offsets %d to %d are unreadable; "
        "keeping them and the log after them",
        topic_id,
        region.position,
        region.end,
        path,
        region.reason,
        region.first_offset,
        region.next_offset - 1,
    )


class Loader:
    """Runs the passes for one topic directory (`load`); holds nothing afterwards."""

    def __init__(self, ctx, topic_id: str, uid: int, directory: str):
        self._ctx = ctx
        self.topic_id = topic_id
        self.uid = uid
        self.directory = directory

    def segment_path(self, base: int) -> str:
        return os.path.join(self.directory, segment_name(base))

    def load(self) -> LoadedLog:
        bases = list_segments(self.directory)
        if not bases:
            if self._ctx.readonly:
                return LoadedLog((0,), 0, 0, 0, [], {})
            log.info("topic %r: no segment file, creating segment 0", self.topic_id)
            path = self.segment_path(0)
            try:
                create_segment(self.directory, 0)
            except OSError as exc:
                raise storage_error(self.topic_id, exc, f"creating {path}") from exc
            bases = [0]
        found = None
        resume = self._index_resume_point(bases)
        if resume is not None:
            found = self._scan_tail(bases, resume, from_index=True)
        if found is None:
            if self._ctx.index is not None and not self._ctx.readonly:
                log.info(
                    "topic %r: building the index from %d segment(s)", self.topic_id, len(bases)
                )
            found = self._scan_tail(bases, IndexEntry(bases[0], bases[0], 0, 0), from_index=False)
        if not self._ctx.readonly:
            if found.active_size == 0 and found.segments[-1] != 0:
                # A roll created this segment, and its directory fsync may have failed:
                # make its entry durable before acknowledged data goes into it.
                fsync_directory(self.directory)
            if self._ctx.index is not None:
                self._ctx.index.drop(self.uid, from_offset=found.end_offset)
                self._ctx.index.add(self.uid, found.entries)
        return found

    def _index_resume_point(self, bases: list[int]) -> IndexEntry | None:
        """Pass 2: the last index entry, if it can be trusted as a place to resume from."""
        index = self._ctx.index
        if index is None:
            return None
        resume = index.last(self.uid)
        if resume is None:
            return None
        if resume.segment_base not in bases:
            return self._drop_index(
                f"its last index entry names missing segment {segment_name(resume.segment_base)}"
            )
        if bases[0] and not self._ctx.readonly and index.floor(self.uid, bases[0] - 1):
            index.drop(self.uid, below=bases[0])
        return resume

    def _drop_index(self, why: str) -> None:
        """Forget the topic's index entries (they disagree with the segments)."""
        log.warning("topic %r: %s; rebuilding its index from the segments", self.topic_id, why)
        if not self._ctx.readonly:
            self._ctx.index.drop(self.uid)
            self._ctx.stats.rebuilt_index()
        return None

    def _scan_tail(
        self, bases: list[int], resume: IndexEntry, *, from_index: bool
    ) -> LoadedLog | None:
        """Pass 3. None when the index entry it started from proves wrong."""
        first = bases.index(resume.segment_base)
        position, next_offset, last_ts = resume.position, resume.offset, resume.timestamp
        entries: list[IndexEntry] = []
        damage: dict[int, list[DamagedRegion]] = {}
        since = 0
        kept = bases[:first]
        for i in range(first, len(bases)):
            base = bases[i]
            if i > first:
                if base < next_offset:
                    self._remove_segments(
                        bases[i:],
                        f"segment {segment_name(base)} starts at offset {base}, inside "
                        f"the log before it (which ends at {next_offset})",
                    )
                    break
                if base > next_offset:  # whole frames lost at the end of the previous one
                    previous = self.segment_path(kept[-1])
                    size = os.stat(previous).st_size
                    self._keep_damage(
                        damage,
                        kept[-1],
                        DamagedRegion(
                            size, size, next_offset, base, f"offsets up to {base - 1} are missing"
                        ),
                    )
                    next_offset = base
                position = 0
            kept.append(base)
            path = self.segment_path(base)
            last_segment = i == len(bases) - 1
            with self._ctx.handles.pinned(path) as fd:
                for item in scan(fd, position, next_offset, resync=True):
                    if from_index and not isinstance(item, tuple):
                        break
                    from_index = False
                    if isinstance(item, ScanStop):
                        break
                    if isinstance(item, DamagedRegion):
                        self._keep_damage(damage, base, item)
                        since = INTERVAL_BYTES  # index the sound frame after it
                        continue
                    pos, header = item
                    if pos == 0 or since >= INTERVAL_BYTES:
                        entries.append(IndexEntry(header.base_offset, base, pos, header.timestamp))
                        since = 0
                    since += header.length
                    last_ts = header.timestamp
                size = os.fstat(fd).st_size
            if from_index:
                self._drop_index(
                    f"its last index entry (offset {resume.offset}) points at no "
                    f"sound frame in {path}"
                )
                return None
            position, next_offset = item.position, item.next_offset
            if item.error is None:
                continue
            following = None if last_segment else bases[i + 1]
            if following is not None and following > next_offset:
                # Damage up to the end of a sealed segment, and the log goes on after it.
                self._keep_damage(
                    damage,
                    base,
                    DamagedRegion(position, size, next_offset, following, item.error),
                )
                position, next_offset = size, following
                continue
            self._cut(path, position, item.error)
            if following is not None and following < next_offset:
                self._remove_segments(bases[i + 1 :], "the log before it ends inside it")
                break
        return LoadedLog(
            tuple(kept),
            next_offset,
            position,
            last_ts,
            entries,
            {b: tuple(regions) for b, regions in damage.items()},
        )

    def _keep_damage(self, damage: dict, base: int, region: DamagedRegion) -> None:
        log_damage(self.topic_id, self.segment_path(base), region)
        damage.setdefault(base, []).append(region)

    def _cut(self, path: str, position: int, reason: str) -> None:
        size = os.stat(path).st_size
        if self._ctx.readonly:
            return
        log.warning(
            "topic %r: torn tail in %s at byte %d (%s): cutting %d byte(s)",
            self.topic_id,
            path,
            position,
            reason,
            size - position,
        )
        try:
            with self._ctx.handles.pinned(path) as fd:
                os.ftruncate(fd, position)
                os.fsync(fd)
        except OSError as exc:  # the next open tries again: nothing was cut
            raise storage_error(self.topic_id, exc, f"cutting the torn tail of {path}") from exc
        self._ctx.stats.truncated(size - position)

    def _remove_segments(self, bases: list[int], reason: str) -> None:
        if not bases or self._ctx.readonly:
            return
        for base in bases:
            path = self.segment_path(base)
            log.warning("topic %r: removing segment %s: %s", self.topic_id, path, reason)
            self._ctx.stats.truncated(os.stat(path).st_size)
            self._ctx.handles.forget(path)
            os.unlink(path)
        fsync_directory(self.directory)
