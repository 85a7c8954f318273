"""A bounded cache of open segment file descriptors.

A store with 10,000 topics must not hold 10,000 descriptors. Segments are opened on demand
and kept in a least-recently-used cache of at most `capacity` descriptors. A descriptor is
pinned while a caller uses it, so eviction never closes a descriptor under a running
`pread`/`pwrite`/`fdatasync` (which could otherwise hit a reused descriptor number).

Thread-safe. Closing a descriptor loses nothing: `fdatasync` on any later descriptor of the
same file flushes every unsynced page of it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager


class _Entry:
    __slots__ = ("doomed", "fd", "pins")

    def __init__(self, fd: int):
        self.fd = fd
        self.pins = 0
        self.doomed = False


class FileHandles:
    def __init__(self, capacity: int = 256, *, writable: bool = True):
        self._capacity = capacity
        self._flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def pinned(self, path: str) -> Iterator[int]:
        """An open descriptor for `path`, kept open until the block ends."""
        entry = self.acquire(path)
        try:
            yield entry.fd
        finally:
            self.release(entry)

    def acquire(self, path: str) -> _Entry:
        """`pinned` without the context manager, for hot paths: pair with `release`."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                self._entries.move_to_end(path)
                entry.pins += 1
                return entry
        return self._open(path)

    def release(self, entry: _Entry) -> None:
        with self._lock:
            entry.pins -= 1
            close_now = entry.doomed and entry.pins == 0
        if close_now:
            os.close(entry.fd)

    def forget(self, path: str) -> None:
        """Close `path`'s descriptor (now, or when its last user is done): the file is going."""
        with self._lock:
            entry = self._entries.pop(path, None)
            if entry is None:
                return
            entry.doomed = True
            if entry.pins == 0:
                os.close(entry.fd)

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            for entry in entries:
                entry.doomed = True  # a pinned one closes when its user releases it
            idle = [entry for entry in entries if entry.pins == 0]
        for entry in idle:
            os.close(entry.fd)

    def __len__(self) -> int:
        return len(self._entries)

    def _open(self, path: str) -> _Entry:
        with self._lock:  # open and insert at once, so `forget` cannot slip in between
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(os.open(path, self._flags))
            entry.pins += 1  # pinned before evicting: never its own victim
            victims = self._evict()
        for victim in victims:
            os.close(victim.fd)
        return entry

    def _evict(self) -> list[_Entry]:
        victims = []
        excess = len(self._entries) - self._capacity
        for path in list(self._entries):
            if excess <= 0:
                break
            entry = self._entries[path]
            if entry.pins == 0:
                del self._entries[path]
                victims.append(entry)
                excess -= 1
        return victims
