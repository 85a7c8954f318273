"""The offset and time index: derived data in LMDB, rebuilt from the segments when in doubt.

For every topic (by its numeric `uid`, so a re-created topic never sees an old index) the
index holds sparse entries, one at the first frame of each segment and then one every
`INTERVAL_BYTES` of log. An entry maps a frame's base offset to the segment and byte
position of that frame, so any read is one B-tree lookup plus a scan of at most
`INTERVAL_BYTES` of frame headers.

    offsets: key >QQ (uid, offset)             value <QQQ (segment_base, position, timestamp)
    times:   key >QQQ (uid, timestamp, offset) value <QQ  (segment_base, position)

Durability: commits do not fsync (`sync=False`), so an index update costs microseconds, not
two fsyncs. That is safe because the index is only a cache of facts in the segments:

- after a killed process the page cache still holds every commit, so the index is exact up
  to its last commit and recovery scans only the tail written after it;
- after a power loss or OS crash its file can hold any mix of old and new pages, and LMDB
  may crash the process walking them. So the decision to trust it lives outside it, in the
  synchronous metadata (`meta.IndexSession`): the store records "<boot id> open" there
  before the index is written and "<boot id> clean" after it is synced at close. At open,
  `distrust` names a reason to delete the index without ever mapping it: a session left
  open by another (or an unknown) boot, or no record at all beside an existing index;
- an environment that cannot be opened at all is deleted and rebuilt, and each topic
  checks its last entry against the segments (see `topic`).

Thread-safe: LMDB serialises write transactions; reads run in parallel.
"""

from __future__ import annotations

import logging
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import lmdb

from .meta import IndexSession

log = logging.getLogger(__name__)

INTERVAL_BYTES = 4096
_UID_OFF = struct.Struct(">QQ")
_TIME_KEY = struct.Struct(">QQQ")
_OFF_VALUE = struct.Struct("<QQQ")
_TIME_VALUE = struct.Struct("<QQ")
_MAP_SIZE = 1 << 36


@dataclass(slots=True, frozen=True)
class IndexEntry:
    offset: int
    segment_base: int
    position: int
    timestamp: int


UNKNOWN_BOOT = b"unknown"


def boot_id() -> bytes:
    """This boot's id; `UNKNOWN_BOOT` where the system does not tell (never proven equal)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip()
    except OSError:
        return UNKNOWN_BOOT


def distrust(session: IndexSession | None, exists: bool, boot: bytes) -> str | None:
    """Why the index at open cannot be trusted (so is deleted unread), or None."""
    if not exists:
        return None
    if session is None:
        return "no record of how the index was last closed"
    if not session.clean and (session.boot != boot or boot == UNKNOWN_BOOT):
        return "the machine restarted while the store was open"
    return None


class OffsetIndex:
    def __init__(self, path: str, *, readonly: bool = False, discard: str | None = None):
        """Open the index at `path`; with `discard` (a reason), delete it first, unread."""
        self.path = path
        self.readonly = readonly
        self.rebuilt_reason = discard
        if readonly:
            self._env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=4, readonly=True)
            self._offsets = self._env.open_db(b"offsets", create=False)
            self._times = self._env.open_db(b"times", create=False)
            return
        if discard:
            log.warning(
                "index at %s: %s: deleting it; topics rebuild it from segments", path, discard
            )
            shutil.rmtree(path, ignore_errors=True)
        try:
            self._env = self._open_writable(path)
        except lmdb.Error as exc:
            self.rebuilt_reason = f"index at {path} could not be opened ({exc})"
            log.warning("%s: deleting it; topics rebuild it from segments", self.rebuilt_reason)
            shutil.rmtree(path, ignore_errors=True)
            self._env = self._open_writable(path)

    def _open_writable(self, path: str) -> lmdb.Environment:
        env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=4, sync=False, metasync=False)
        try:
            self._offsets = env.open_db(b"offsets")
            self._times = env.open_db(b"times")
        except lmdb.Error:
            env.close()
            raise
        return env

    def close(self) -> None:
        """Close; a writer first syncs every commit to disk (the caller then marks it clean)."""
        if not self.readonly:
            self._env.sync(True)
        self._env.close()

    def add(self, uid: int, entries: Iterable[IndexEntry]) -> None:
        with self._env.begin(write=True) as txn:
            for e in entries:
                txn.put(
                    _UID_OFF.pack(uid, e.offset),
                    _OFF_VALUE.pack(e.segment_base, e.position, e.timestamp),
                    db=self._offsets,
                )
                txn.put(
                    _TIME_KEY.pack(uid, e.timestamp, e.offset),
                    _TIME_VALUE.pack(e.segment_base, e.position),
                    db=self._times,
                )

    def floor(self, uid: int, offset: int) -> IndexEntry | None:
        """The entry with the greatest offset <= `offset`."""
        with self._env.begin(db=self._offsets) as txn:
            cur = txn.cursor()
            key = _UID_OFF.pack(uid, offset)
            if cur.set_range(key):
                if cur.key() == key:
                    return self._entry(cur.key(), cur.value())
                if not cur.prev():
                    return None
            elif not cur.last():
                return None
            return self._entry_of(uid, cur.key(), cur.value())

    def last(self, uid: int) -> IndexEntry | None:
        return self.floor(uid, 2**64 - 1)

    def floor_time(self, uid: int, timestamp: int) -> IndexEntry | None:
        """The last entry whose timestamp is < `timestamp`."""
        if timestamp <= 0:
            return None  # stored timestamps are u64: none is below 0
        timestamp = min(timestamp, 2**64 - 1)
        with self._env.begin(db=self._times) as txn:
            cur = txn.cursor()
            if cur.set_range(_TIME_KEY.pack(uid, timestamp, 0)):
                if not cur.prev():
                    return None
            elif not cur.last():
                return None
            k_uid, ts, offset = _TIME_KEY.unpack(cur.key())
            if k_uid != uid:
                return None
            base, position = _TIME_VALUE.unpack(cur.value())
            return IndexEntry(offset, base, position, ts)

    def drop(self, uid: int, *, below: int = 0, from_offset: int | None = None) -> int:
        """Delete the entries of `uid` with offset < `below`, or >= `from_offset`; a count."""
        if from_offset is not None:
            lo, hi = from_offset, 2**64 - 1
        else:
            lo, hi = 0, below - 1 if below else 2**64 - 1
        removed = 0
        with self._env.begin(write=True) as txn:
            cur = txn.cursor(db=self._offsets)
            found = cur.set_range(_UID_OFF.pack(uid, lo))
            while found and cur.key():
                k_uid, offset = _UID_OFF.unpack(cur.key())
                if k_uid != uid or offset > hi:
                    break
                _, _, ts = _OFF_VALUE.unpack(cur.value())
                txn.delete(_TIME_KEY.pack(uid, ts, offset), db=self._times)
                removed += 1
                found = cur.delete()
        return removed

    @staticmethod
    def _entry(key: bytes, value: bytes) -> IndexEntry:
        _, offset = _UID_OFF.unpack(key)
        return IndexEntry(offset, *_OFF_VALUE.unpack(value))

    def _entry_of(self, uid: int, key: bytes, value: bytes) -> IndexEntry | None:
        k_uid, offset = _UID_OFF.unpack(key)
        return IndexEntry(offset, *_OFF_VALUE.unpack(value)) if k_uid == uid else None
