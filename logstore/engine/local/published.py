"""The end offset a writer has made visible, shared with read-only followers in memory.

A follower in another process finds new messages by reading the segment files, and a frame
lands in the file (`pwrite`) before it is durable. Under fsync="always" a follower must not
see a message before the writer's fsync returned, so the writer publishes its visible end
offset in a small file of the topic's directory, `published`, mapped into memory by the
writer and its followers: a store into the mapping is seen at once by every process (the
page cache is shared) and costs no system call. A follower reads no frame past it.

Layout: one little-endian u64, stored and loaded whole (an aligned 8-byte access is atomic
on the processors CPython runs on). The mapping is made with the C library's `mmap` through
ctypes, which keeps no descriptor open (Python's `mmap` module keeps a duplicate of one per
mapping, and a store of 10,000 topics must run under a small descriptor limit). The file is
never fsynced: it only serves live processes, and a writer republishes it at open. A
directory without it (written by an older version) sets no limit.
"""

from __future__ import annotations

import ctypes
import mmap
import os

NAME = "published"
_SIZE = 8
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_FAILED = ctypes.c_void_p(-1).value


class _Mapping:
    """One shared mapping of the file's first 8 bytes, as a u64 (no descriptor kept)."""

    def __init__(self, path: str, *, writable: bool):
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            if writable:
                os.ftruncate(fd, _SIZE)
            elif os.fstat(fd).st_size < _SIZE:
                raise FileNotFoundError(path)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            address = _libc.mmap(None, _SIZE, prot, mmap.MAP_SHARED, fd, 0)
            if address in (None, _FAILED):
                code = ctypes.get_errno()
                raise OSError(code, f"mmap of {path}: {os.strerror(code)}")
        finally:
            os.close(fd)
        self._address = address
        self.value = ctypes.c_uint64.from_address(address)

    def close(self) -> None:
        if self._address is not None:
            _libc.munmap(self._address, _SIZE)
            self._address = self.value = None


class Publisher:
    """The writer's side: `publish(end)` each time more of the log becomes visible."""

    def __init__(self, directory: str, end: int):
        self._map = _Mapping(os.path.join(directory, NAME), writable=True)
        self.publish(end)

    def publish(self, end: int) -> None:
        self._map.value.value = end

    def close(self) -> None:
        self._map.close()


class Subscriber:
    """A follower's side: `end()` is the writer's published end offset (None: no limit)."""

    def __init__(self, directory: str):
        try:
            self._map: _Mapping | None = _Mapping(os.path.join(directory, NAME), writable=False)
        except FileNotFoundError:
            self._map = None

    def end(self) -> int | None:
        return None if self._map is None else self._map.value.value

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
