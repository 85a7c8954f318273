"""Backups of a live data directory, and restores of them (`logstore backup` / `restore`).

A backup is itself a data directory, plus a manifest (`BACKUP.json`) written last::

    meta/                LMDB's own consistent copy of the source's metadata
    topics/<uid>-<id>/   per topic: sealed segments hard-linked (or copied), the newest copied
    BACKUP.json          what was copied: per topic, start and end offsets, segments

The offset index is left out: it is a cache (see `index`), and a directory without one
rebuilds it when a topic is first opened. Idempotency keys live only in the writer's memory,
so they are not in a backup either. Neither is the `published` file: a writer makes it at
open.

How a copy stays consistent while the writer runs in another process (it never takes the
directory lock, and writes nothing in the source):

1. Metadata first, at one instant T0: `lmdb.Environment.copy` copies the metadata inside one
   read transaction (the same read-only open a follower makes). Topics and subscriptions are
   those of T0. Every acknowledgement committed by T0 is of an offset below the topic's
   visible end at T0, so below the end the copy of its log reaches in step 2 (ends only
   grow): no subscription in the backup is ahead of its topic.
2. Then each topic of T0, one at a time:
   a. Read the writer's published end E (see `published`): what a follower may see, so only
      complete frames, all written, all acknowledged, and under fsync="always" all synced.
   b. List the segments. Segments with a base above E were rolled after E was read and hold
      nothing below E: left out. Every kept segment but the last had a successor, so it is
      sealed (never written again): hard-linked (copied across filesystems). The last kept
      one may be the active segment: copied (never linked, so appends to the source never
      reach the backup) up to the end of the frame that ends at E, found by walking its
      frames (`segment.scan`); the walk stops earlier at a torn or unsound tail.
   c. Races: retention deletes the oldest segments first, so a sealed segment gone before it
      was linked takes the older ones already linked out of the copy too (the backup starts
      later; the links keep the bytes of those linked after it). A roll after E is harmless
      (2b). If the last kept segment itself is gone (sealed and retained meanwhile), the
      topic is copied again from 2a. A topic whose directory is gone was deleted after T0:
      the backup deletes it from its own metadata (with its subscriptions) as the engine
      deletes a topic. A topic created after T0 is not in the backup.
3. Everything is fsynced, the manifest written, and the staging directory (`DEST.partial-PID`,
   beside DEST so hard links work) renamed to DEST: a backup that did not finish is never
   found at DEST. The source's fsync policy bounds what the backup can hold: it is a prefix
   of each topic as a reader of the source saw it, ending at or before the end the writer had
   acknowledged when the topic was copied, never after it.

LMDB opens an environment once per process, so a store is backed up from another process
than the one that has it open (`logstore backup`, as the server runs apart).

Hard links share the source's files: logstore never rewrites the frames of a sealed segment
(retention unlinks it; recovery cuts only unsound bytes at the end of a file, which
`logstore check` reports), so neither copy changes the other. One known exception: a roll
whose directory fsync failed leaves an empty next segment on disk while the writer may go
on appending to the one before it; a backup taken then links a segment that still grows,
`logstore check` on the backup reports the overlap, and `restore` refuses it (take the
backup again once the storage error is resolved and the store reopened). A backup on
another filesystem copies everything.

`restore` refuses a non-empty destination and a directory without a manifest, runs the
checks of `logstore check` on the backup (any damage refuses the restore), then builds the
store the same way (metadata through LMDB's copy, sealed segments linked, the newest copied,
since the restored store appends to it) in a staging directory, opens it once with the
engine (which makes its lock file and an empty index, filled as each topic is first
opened), and renames it into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import lmdb

from ...errors import Corruption, InvalidArgument, StorageError
from .check import Report, check_store
from .engine import LocalEngine, topic_directory_name
from .meta import MetaStore, TopicMeta
from .published import Subscriber
from .segment import DamagedRegion, ScanStop, fsync_directory, list_segments, scan, segment_name

MANIFEST = "BACKUP.json"
_FORMAT = 1
_ATTEMPTS = 20  # a topic copied again because retention took its newest kept segment
_CHUNK = 8 << 20
_LINK_REFUSED = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP)

Progress = Callable[[str, int, int], None]
"""`progress(phase, done, total)`: phase "checking" or "copying", in bytes."""


@dataclass(slots=True, frozen=True)
class TopicCopy:
    """One topic in a backup: offsets [start_offset, end_offset), and how its files came."""

    start_offset: int
    end_offset: int
    segments: int
    linked: int  # hard-linked rather than copied
    size_bytes: int


@dataclass(slots=True, frozen=True)
class BackupReport:
    """What `backup` copied; `deleted`: topics deleted during the backup, so left out."""

    path: str
    topics: dict[str, TopicCopy]
    deleted: list[str]


class _Gone(Exception):
    """A source segment disappeared between listing and linking (retention or deletion)."""


def backup(src: str, dest: str, progress: Progress | None = None) -> BackupReport:
    """Copy the data directory `src`, live or not, to `dest` (absent or empty); see above."""
    src, dest = os.path.abspath(src), os.path.abspath(dest)
    if not os.path.isdir(os.path.join(src, "meta")):
        raise InvalidArgument(f"{src} is not a logstore data directory (no meta/)")
    _refuse_nonempty(dest)
    staging = _staging(dest)
    try:
        topics = _copy_meta(src, staging)
        os.mkdir(os.path.join(staging, "topics"))
        directories = {t: _topic_dir(src, t, m) for t, m in topics.items()}
        meter = _Meter(progress, "copying", sum(map(_bytes_of, directories.values())))
        copies: dict[str, TopicCopy] = {}
        deleted: list[str] = []
        for topic_id in sorted(topics):
            copy = _copy_topic(topic_id, directories[topic_id], staging, meter)
            if copy is None:
                deleted.append(topic_id)
            else:
                copies[topic_id] = copy
        if deleted:
            _forget_topics(staging, deleted)
        _write_manifest(staging, src, copies)
        _sync_tree(staging)
        _move_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupReport(dest, copies, deleted)


def restore(backup_dir: str, dest: str, progress: Progress | None = None) -> Report:
    """Make the backup `backup_dir` a store at `dest` (absent or empty), after checking every
    frame of it as `logstore check` does; the check's report."""
    backup_dir, dest = os.path.abspath(backup_dir), os.path.abspath(dest)
    if not os.path.isfile(os.path.join(backup_dir, MANIFEST)):
        raise InvalidArgument(
            f"{backup_dir} is not a logstore backup (no {MANIFEST}; a backup that did not "
            "finish has none)"
        )
    _refuse_nonempty(dest)
    report = check_store(backup_dir, _Meter.phase(progress, "checking"))
    if report.damage:
        first = report.damage[0]
        more = f" (and {len(report.damage) - 1} more damaged place(s))" * (len(report.damage) > 1)
        raise Corruption(
            first.file,
            first.position,
            f"{first.detail}{more}; the backup {backup_dir} fails `logstore check`, "
            "nothing was restored",
        )
    staging = _staging(dest)
    try:
        topics = _copy_meta(backup_dir, staging)
        os.mkdir(os.path.join(staging, "topics"))
        directories = [_topic_dir(backup_dir, t, m) for t, m in topics.items()]
        meter = _Meter(progress, "copying", sum(map(_bytes_of, directories)))
        for directory in directories:
            target = os.path.join(staging, "topics", os.path.basename(directory))
            os.mkdir(target)
            bases = list_segments(directory)
            for base in bases[:-1]:
                _link_or_copy(_path(directory, base), _path(target, base), meter)
            with open(_path(directory, bases[-1]), "rb") as f:
                _copy_prefix(f.fileno(), _path(target, bases[-1]), None, meter)
        _open_once(staging).close()  # a store ready to serve: lock file, index (filled lazily)
        _sync_tree(staging)
        _move_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


# ------------------------------------------------------------------ topics


def _copy_topic(topic_id: str, source: str, staging: str, meter: _Meter) -> TopicCopy | None:
    """Copy one topic's log up to its published end (step 2); None if it was deleted."""
    target = os.path.join(staging, "topics", os.path.basename(source))
    for _ in range(_ATTEMPTS):
        shutil.rmtree(target, ignore_errors=True)
        if not os.path.isdir(source):
            return None
        end = _published_end(source)
        try:
            bases = list_segments(source)
        except FileNotFoundError:
            return None
        kept = [b for b in bases if end is None or b <= end]
        if not kept:
            continue  # retention passed E before the listing: read E again
        os.mkdir(target)
        linked = _link_sealed(source, target, kept[:-1], meter)
        try:
            fd = os.open(_path(source, kept[-1]), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # sealed and retained since the listing, or the topic deleted
        try:
            length, end_offset = _prefix(fd, kept[-1], end)
            _copy_prefix(fd, _path(target, kept[-1]), length, meter)
        finally:
            os.close(fd)
        kept = list_segments(target)
        size = sum(os.path.getsize(_path(target, b)) for b in kept)
        return TopicCopy(kept[0], end_offset, len(kept), linked, size)
    raise StorageError(
        topic_id,
        f"retention in {source} kept deleting the segments being copied ({_ATTEMPTS} tries); "
        "take the backup again when the topic writes less, or raise its retention",
    )


def _published_end(directory: str) -> int | None:
    """The writer's published end offset of a topic (None: no `published` file)."""
    subscriber = Subscriber(directory)
    try:
        return subscriber.end()
    finally:
        subscriber.close()


def _link_sealed(source: str, target: str, bases: list[int], meter: _Meter) -> int:
    """Link (or copy) sealed segments; one that vanished takes the older ones out too."""
    linked = 0
    for i, base in enumerate(bases):
        try:
            linked += _link_or_copy(_path(source, base), _path(target, base), meter)
        except _Gone:
            for older in bases[:i]:
                os.unlink(_path(target, older))
            linked = 0
    return linked


def _prefix(fd: int, base: int, end: int | None) -> tuple[int, int]:
    """(bytes, end offset) of the segment's frames up to offset `end` (None: all that are
    sound), stopping earlier at a torn or unsound tail; kept damage before it is copied."""
    if end is not None and base >= end:
        return 0, base
    length, offset = 0, base
    for item in scan(fd, 0, base, resync=True):
        if isinstance(item, ScanStop):
            return item.position, item.next_offset
        if isinstance(item, DamagedRegion):
            start, stop, next_offset = item.position, item.end, item.next_offset
        else:
            start, header = item
            stop, next_offset = start + header.length, header.next_offset
        if end is not None and next_offset > end:
            return length, offset
        length, offset = stop, next_offset
        if offset == end:
            return length, offset
    return length, offset


# ------------------------------------------------------------------- files


def _link_or_copy(source: str, target: str, meter: _Meter) -> int:
    """Hard-link `source` at `target`, or copy it where links cannot be made; 1 if linked."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise _Gone(source) from None
    except OSError as exc:
        if exc.errno not in _LINK_REFUSED:
            raise
        try:
            fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Gone(source) from None
        try:
            _copy_prefix(fd, target, None, meter)
        finally:
            os.close(fd)
        return 0
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)  # under fsync="never" the source may not have synced it
        meter.advance(os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return 1


def _copy_prefix(fd: int, target: str, length: int | None, meter: _Meter) -> None:
    """Copy the first `length` bytes (None: all) of open file `fd` to a new file, fsynced."""
    if length is None:
        length = os.fstat(fd).st_size
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        done = 0
        while done < length:
            n = _copy_chunk(fd, out, done, min(_CHUNK, length - done))
            if n == 0:
                raise OSError(errno.EIO, f"{target}: the source ended after {done} bytes")
            done += n
            meter.advance(n)
        os.fsync(out)
    finally:
        os.close(out)


def _copy_chunk(fd: int, out: int, position: int, size: int) -> int:
    """Copy bytes [position, position + size) of `fd` to the end of `out`; bytes copied."""
    try:
        return os.copy_file_range(fd, out, size, position)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    data = os.pread(fd, size, position)
    os.write(out, data)
    return len(data)


def _copy_meta(src: str, staging: str) -> dict[str, TopicMeta]:
    """Copy `src`'s metadata with LMDB's consistent copy; the topics of that copy."""
    target = os.path.join(staging, "meta")
    os.mkdir(target)
    try:
        meta = MetaStore(os.path.join(src, "meta"), readonly=True)
    except lmdb.Error as exc:
        if "already open in this process" not in str(exc):
            raise
        raise InvalidArgument(
            f"{src} is open in this process, and LMDB opens a store once per process: "
            "back it up from another process (`logstore backup`)"
        ) from None
    try:
        meta.env.copy(target, compact=True)
    finally:
        meta.close()
    copied = MetaStore(target, readonly=True)
    try:
        return copied.topics()
    finally:
        copied.close()


def _forget_topics(staging: str, topics: list[str]) -> None:
    """Delete from the backup's metadata the topics deleted in the source during the copy
    (and their subscriptions), the way the engine deletes a topic."""
    engine = _open_once(staging)
    try:
        for topic_id in topics:
            engine.delete_topic(topic_id)
    finally:
        engine.close()
    for leftover in ("LOCK", "index"):  # the backup keeps no lock file and no index
        path = os.path.join(staging, leftover)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)


def _open_once(path: str) -> LocalEngine:
    """The store at `path`, opened by the engine as a writer (which loads no topic yet)."""
    return LocalEngine(path, "always", fsync_interval=1.0, readonly=False, max_open_files=16)


def _write_manifest(staging: str, src: str, topics: dict[str, TopicCopy]) -> None:
    doc = {
        "format": _FORMAT,
        "source": src,
        "created_at": time.time_ns() // 1_000_000,
        "topics": {t: asdict(c) for t, c in topics.items()},
    }
    with open(os.path.join(staging, MANIFEST), "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _sync_tree(root: str) -> None:
    """fsync every directory under `root`, and the metadata files (segments already are)."""
    meta = os.path.join(root, "meta")
    for name in os.listdir(meta):
        fd = os.open(os.path.join(meta, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory, _, _ in os.walk(root):
        fsync_directory(directory)


def _move_into_place(staging: str, dest: str) -> None:
    """Rename the finished staging directory to `dest` (replacing it if empty), durably."""
    os.rename(staging, dest)
    fsync_directory(os.path.dirname(dest))


def _refuse_nonempty(dest: str) -> None:
    if os.path.isdir(dest):
        if os.listdir(dest):
            raise InvalidArgument(f"{dest} is not empty; give a new or empty directory")
    elif os.path.exists(dest):
        raise InvalidArgument(f"{dest} exists and is not a directory")


def _staging(dest: str) -> str:
    """A new directory beside `dest` (same filesystem, so links and the rename work)."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging = f"{dest}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of this same pid
    os.mkdir(staging)
    return staging


def _topic_dir(root: str, topic_id: str, meta: TopicMeta) -> str:
    return os.path.join(root, "topics", topic_directory_name(topic_id, meta.uid))


def _path(directory: str, base: int) -> str:
    return os.path.join(directory, segment_name(base))


def _bytes_of(directory: str) -> int:
    """Bytes of a topic's segments now (a total for progress; the log moves meanwhile)."""
    total = 0
    try:
        bases = list_segments(directory)
    except FileNotFoundError:
        return 0
    for base in bases:
        with contextlib.suppress(FileNotFoundError):  # retained since the listing
            total += os.path.getsize(_path(directory, base))
    return total


class _Meter:
    """Counts bytes done against a total and reports them to a `Progress`, if given."""

    def __init__(self, progress: Progress | None, phase: str, total: int):
        self._progress = progress
        self._phase = phase
        self._total = total
        self._done = 0
        self.advance(0)

    def advance(self, n: int) -> None:
        self._done += n
        self._total = max(self._total, self._done)  # the log grew while it was copied
        if self._progress is not None:
            self._progress(self._phase, self._done, self._total)

    @staticmethod
    def phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
        """A `check_store` progress callback reporting as `phase`."""
        if progress is None:
            return None
        return lambda done, total: progress(phase, done, total)
