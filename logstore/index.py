"""The offset and time index: derived data in LMDB, rebuilt from the segments when in doubt.

For every topic (by its numeric `uid`, so a re-created topic never sees an old index) the
index holds sparse entries, one at the first frame of each segment and then one every
`INTERVAL_BYTES` of log. An entry maps a frame's base offset to the segment and byte
position of that frame, so any read is one B-tree lookup plus a scan of at most
`INTERVAL_BYTES` of frame headers.

    offsets: key >QQ (uid, offset)             value <QQQ (segment_base, position, timestamp)
    times:   key >QQQ (uid, timestamp, offset) value <QQ  (segment_base, position)
    state:   b"session" -> b"<boot id> open|clean"

Durability: commits do not fsync (`sync=False`), so an index update costs microseconds, not
two fsyncs. That is safe because the index is only a cache of facts in the segments:

- after a killed process the page cache still holds every commit, so the index is exact up
  to its last commit and recovery scans only the tail written after it;
- after a power loss or OS crash (the boot id changed while the session was still "open")
  nothing in the file can be trusted, so the whole index is dropped and rebuilt;
- an environment that cannot be opened at all is deleted and rebuilt.

Thread-safe: LMDB serialises write transactions; reads run in parallel.
"""

from __future__ import annotations

import logging
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import lmdb

log = logging.getLogger("logstore.index")

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


def boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip()
    except OSError:
        return b"unknown"


class OffsetIndex:
    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        self.rebuilt_reason: str | None = None
        if readonly:
            self._env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=4, readonly=True)
            self._offsets = self._env.open_db(b"offsets", create=False)
            self._times = self._env.open_db(b"times", create=False)
            return
        self._env = self._open_writable(path)
        try:
            untrusted = self._start_session()
        except lmdb.Error as exc:
            untrusted = f"index at {path} is damaged ({exc})"
        if untrusted:
            # Not one page of it can be trusted, not even to walk while dropping it.
            self.rebuilt_reason = untrusted
            log.warning("%s: deleting it; topics rebuild their index from segments", untrusted)
            self._env.close()
            shutil.rmtree(path, ignore_errors=True)
            self._env = self._open_writable(path)
            self._start_session()

    def _open_writable(self, path: str) -> lmdb.Environment:
        try:
            return lmdb.open(path, map_size=_MAP_SIZE, max_dbs=4, sync=False, metasync=False)
        except lmdb.Error as exc:
            self.rebuilt_reason = f"index at {path} could not be opened ({exc})"
            log.warning("%s: deleting it; topics rebuild their index from segments", exc)
            shutil.rmtree(path, ignore_errors=True)
            return lmdb.open(path, map_size=_MAP_SIZE, max_dbs=4, sync=False, metasync=False)

    def _start_session(self) -> str | None:
        """Open the databases and mark the session open; why the index is untrusted, if so."""
        self._offsets = self._env.open_db(b"offsets")
        self._times = self._env.open_db(b"times")
        self._state = self._env.open_db(b"state")
        me = boot_id()
        with self._env.begin(db=self._state) as txn:
            previous = txn.get(b"session")
        if previous is not None:
            prev_boot, _, status = previous.rpartition(b" ")
            if status == b"open" and prev_boot != me:
                return "the machine restarted while the store was open"
        with self._env.begin(write=True, db=self._state) as txn:
            txn.put(b"session", me + b" open")
        self._env.sync(True)
        return None

    def close(self) -> None:
        if not self.readonly:
            self._env.sync(True)
            with self._env.begin(write=True, db=self._state) as txn:
                txn.put(b"session", boot_id() + b" clean")
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
