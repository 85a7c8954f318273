"""Row 7: logstore as a library against the disk queues a Python program might embed instead.

Every queue runs in the load process itself, one operation per call, as a program would
use it: a put, and a get that consumes (takes the next message and marks it done, so it is
not handed out again after a restart). Durability is the same on every side: each put and
each get reaches the operating system before the call returns (a killed process loses
nothing), and nothing is fsynced per operation. That is the default of the three queues
(SQLite in WAL mode with synchronous=NORMAL, or plain file writes) and logstore's
fsync="never". One difference, shown in the results: logstore commits acknowledgements
about once a second, so a killed process may deliver up to a second of gets again.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable
from importlib import metadata

TOPIC = "q"
SUB = "s"

SETTINGS = {
    "logstore": 'Store(fsync="never"); put = write(), get = poll(max_messages=1) + ack()',
    "persist-queue": "persistqueue.Queue (file chunks, pickle); put(), get() + task_done()",
    "litequeue": "LiteQueue (SQLite WAL, synchronous=NORMAL); put(), pop() + done()",
    "diskcache": "diskcache.Deque (SQLite WAL, synchronous=NORMAL); append(), popleft()",
}
NAMES = tuple(SETTINGS)
PEERS = NAMES[1:]


class EmbeddedQueue(abc.ABC):
    @abc.abstractmethod
    def put(self, payload: bytes) -> None: ...

    @abc.abstractmethod
    def get(self) -> bytes:
        """Take the next message and mark it consumed."""

    @abc.abstractmethod
    def close(self) -> None: ...


class _Logstore(EmbeddedQueue):
    def __init__(self, path: str):
        from logstore import Store

        self._store = Store(path, fsync="never")
        self._store.create_topic(TOPIC)
        self._store.subscribe(TOPIC, SUB)

    def put(self, payload: bytes) -> None:
        self._store.write(TOPIC, payload)

    def get(self) -> bytes:
        (delivery,) = self._store.poll(TOPIC, SUB, max_messages=1)
        self._store.ack(TOPIC, SUB, [delivery.offset])
        return delivery.value

    def close(self) -> None:
        self._store.close()


class _PersistQueue(EmbeddedQueue):
    def __init__(self, path: str):
        import persistqueue

        self._q = persistqueue.Queue(path)

    def put(self, payload: bytes) -> None:
        self._q.put(payload)

    def get(self) -> bytes:
        payload = self._q.get(block=False)
        self._q.task_done()
        return payload

    def close(self) -> None:
        del self._q  # persist-queue closes its files when the queue is collected


class _LiteQueue(EmbeddedQueue):
    def __init__(self, path: str):
        from litequeue import LiteQueue

        os.makedirs(path)
        self._q = LiteQueue(os.path.join(path, "queue.sqlite3"))

    def put(self, payload: bytes) -> None:
        self._q.put(payload.decode())  # litequeue stores text

    def get(self) -> bytes:
        message = self._q.pop()
        self._q.done(message.message_id)
        return message.data.encode()

    def close(self) -> None:
        self._q.close()


class _Diskcache(EmbeddedQueue):
    def __init__(self, path: str):
        import diskcache

        self._q = diskcache.Deque(directory=path)

    def put(self, payload: bytes) -> None:
        self._q.append(payload)

    def get(self) -> bytes:
        return self._q.popleft()

    def close(self) -> None:
        self._q.cache.close()


_OPENERS: dict[str, type[EmbeddedQueue]] = {
    "logstore": _Logstore,
    "persist-queue": _PersistQueue,
    "litequeue": _LiteQueue,
    "diskcache": _Diskcache,
}


def missing(name: str) -> str | None:
    """Why queue `name` cannot run here, or None (each is a distribution of that name)."""
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return f"{name} is not installed (pip install -e '.[bench]')"
    return None


def version(name: str) -> str:
    return f"{name} {metadata.version(name)}"


def put_get(
    name: str, path: str, payload: bytes, limit: int, seconds: float
) -> tuple[float, float]:
    """Put up to `limit` messages one by one, then get them back; (puts/s, gets/s).

    Each loop also stops after `seconds`; the gets take at most as many as were put.
    """
    queue = _OPENERS[name](path)
    try:
        puts, put_rate, _ = _timed(lambda: queue.put(payload), limit, seconds)
        _, get_rate, last = _timed(queue.get, puts, seconds)
    finally:
        queue.close()
    if last != payload:
        raise AssertionError(f"{name} gave back {last!r:.40} instead of what was put")
    return put_rate, get_rate


def _timed(step: Callable[[], object], limit: int, seconds: float) -> tuple[int, float, object]:
    """Call `step` up to `limit` times or for `seconds`: (calls, calls/s, the last result)."""
    done, last = 0, None
    start = time.perf_counter()
    deadline = start + seconds
    while done < limit and time.perf_counter() < deadline:
        last = step()
        done += 1
    return done, done / (time.perf_counter() - start), last
