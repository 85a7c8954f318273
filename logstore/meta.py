"""Durable metadata in LMDB: topics (and the subscriptions module's databases).

Unlike the offset index this is not derived data, so the environment commits with LMDB's
full synchronous commit (two fsyncs). It changes only on create/delete and on
acknowledgements (which the subscriptions module batches into one commit per group).

    topics:   key topic id (UTF-8)  value JSON {uid, name, retention_ms, retention_bytes,
                                               segment_bytes, created_at}
    counters: key b"next_uid"       value <Q   (uids are never reused, so a re-created
                                               topic never meets an old one's files or index)
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass

import lmdb

_MAP_SIZE = 1 << 34
_U64 = struct.Struct("<Q")


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


class MetaStore:
    def __init__(self, path: str, *, readonly: bool = False):
        self.readonly = readonly
        self.env = lmdb.open(path, map_size=_MAP_SIZE, max_dbs=16, readonly=readonly)
        self._topics = self.env.open_db(b"topics", create=not readonly)
        self._counters = self.env.open_db(b"counters", create=not readonly)

    def close(self) -> None:
        self.env.close()

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
