"""Durable metadata in LMDB: topics (and the subscriptions module's databases).

Unlike the offset index this is not derived data, so the environment commits with LMDB's
full synchronous commit (two fsyncs). It changes only on create/delete, on acknowledgements
(which the subscriptions module batches into one commit per group), and twice per session
for the index marker.

    topics:   key topic id (UTF-8)  value JSON {uid, name, retention_ms, retention_bytes,
                                               segment_bytes, created_at}
    counters: key b"next_uid"       value <Q   (uids are never reused, so a re-created
                                               topic never meets an old one's files or index)
    state:    key b"index"          value b"<boot id> open|clean": how the offset index was
                                               last left (see `index`); kept here, outside
                                               the index, so deciding whether to trust the
                                               index never maps it

Creation is atomic: a new environment is built in `meta.new/`, its files and directory are
fsynced, and it is renamed to `meta/` (then the parent is fsynced). A crash at any instant
leaves no `meta/` (the next open removes a leftover `meta.new/`, logged, and creates it
again) or a whole one. An environment LMDB refuses, in a directory with no topic directory
yet, is the unfinished creation of an older version: it is cleared and created again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from dataclasses import asdict, dataclass

import lmdb

from .segment import fsync_directory

log = logging.getLogger(__name__)

_MAP_SIZE = 1 << 34
_MAX_DBS = 16
_U64 = struct.Struct("<Q")
_INDEX_KEY = b"index"


@dataclass(slots=True, frozen=True)
class TopicMeta:
    uid: int
    name: str
    retention_ms: int | None
    retention_bytes: int | None
    segment_bytes: int
    created_at: int

    def settings(self) -> tuple:
        return (self.name, self.retention_ms, self.retention_bytes, self.segment_bytes)


@dataclass(slots=True, frozen=True)
class IndexSession:
    """How the offset index was last left: by which boot, and whether closed cleanly."""

    boot: bytes
    clean: bool


class MetaStore:
    def __init__(self, path: str, *, readonly: bool = False, fresh_ok: bool = False):
        """Open the metadata environment at `path`; a writer creates it (atomically) if absent.

        `fresh_ok`: the store holds no topic directory yet, so an environment LMDB refuses
        is an unfinished creation to clear, not data to protect."""
        self.readonly = readonly
        if not readonly:
            _create_if_absent(path)
        try:
            self.env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=_MAX_DBS, readonly=readonly)
        except lmdb.InvalidError as exc:
            if readonly or not fresh_ok:
                raise
            log.warning("%s is an unfinished creation (%s): creating it again", path, exc)
            shutil.rmtree(path)
            _create_if_absent(path)
            self.env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=_MAX_DBS)
        self._topics = self.env.open_db(b"topics", create=not readonly)
        self._counters = self.env.open_db(b"counters", create=not readonly)
        try:
            self._state = self.env.open_db(b"state", create=not readonly)
        except lmdb.NotFoundError:  # a read-only view of a store an older version wrote
            self._state = None

    def close(self) -> None:
        self.env.close()

    def index_session(self) -> IndexSession | None:
        """How the index was last left, or None when no session was ever recorded here."""
        if self._state is None:
            return None
        with self.env.begin(db=self._state) as txn:
            raw = txn.get(_INDEX_KEY)
        if raw is None:
            return None
        boot, _, status = bytes(raw).rpartition(b" ")
        return IndexSession(boot, status == b"clean")

    def record_index_session(self, boot: bytes, *, clean: bool) -> None:
        """Durably record the index as open (before any write to it) or cleanly closed."""
        with self.env.begin(write=True, db=self._state) as txn:
            txn.put(_INDEX_KEY, boot + (b" clean" if clean else b" open"))

    def topic(self, topic_id: str) -> TopicMeta | None:
        with self.env.begin(db=self._topics) as txn:
            raw = txn.get(topic_id.encode())
        return TopicMeta(**json.loads(raw)) if raw is not None else None

    def topics(self) -> dict[str, TopicMeta]:
        with self.env.begin(db=self._topics) as txn:
            return {k.decode(): TopicMeta(**json.loads(v)) for k, v in txn.cursor()}

    def next_uid(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(b"next_uid", db=self._counters)
        uid = _U64.unpack(raw)[0] if raw else 1
        txn.put(b"next_uid", _U64.pack(uid + 1), db=self._counters)
        return uid

    def put_topic(self, txn: lmdb.Transaction, topic_id: str, meta: TopicMeta) -> None:
        txn.put(topic_id.encode(), json.dumps(asdict(meta)).encode(), db=self._topics)

    def delete_topic(self, txn: lmdb.Transaction, topic_id: str) -> None:
        txn.delete(topic_id.encode(), db=self._topics)


def _create_if_absent(path: str) -> None:
    """Build the environment in `<path>.new`, make it durable, then rename it into place."""
    if os.path.isdir(path):
        return
    staging = path + ".new"
    if os.path.exists(staging):
        log.warning("removing %s: an interrupted creation; creating it again", staging)
        shutil.rmtree(staging)
    os.mkdir(staging)
    env = lmdb.open(staging, map_size=_MAP_SIZE, max_dbs=_MAX_DBS)
    try:
        for name in (b"topics", b"counters", b"state"):
            env.open_db(name)
        env.sync(True)
    finally:
        env.close()
    for name in os.listdir(staging):
        fd = os.open(os.path.join(staging, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_directory(staging)
    os.rename(staging, path)
    fsync_directory(os.path.dirname(path))
