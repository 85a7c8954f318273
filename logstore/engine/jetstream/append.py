"""Appends: each batch atomic, every publish safe to retry.

A batch of one message is a plain JetStream publish; a longer one an atomic batch
(`Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit` on its last message, which the
server stores whole or not at all, after any crash). The batches of one call are sent in
order without waiting, then their acknowledgements are awaited: one round trip for all.

Every publish carries a message id (`Nats-Msg-Id`): the idempotency key's hash when the
caller gave one, else a fresh id. So a publish whose answer was lost (a timeout, a leader
that died) is sent again, with the same id, until `publish_timeout`: a copy the cluster
already stored is then answered from it, never stored twice. A single message's duplicate
answers its sequence; a batch's is refused (error 10201), so each batch's last message
goes on a subject of its own (`names.commit_subject`) where the first copy is found
(with its count in `LS-N`). Past the deadline the publish fails with `StorageError`: what
was not acknowledged may or may not be stored, and a retry with the same key settles it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from nats.errors import MaxPayloadError

from ... import frames
from ...errors import MessageTooLarge, StorageError, StorageFull
from ...types import Record, Replayed
from ..base import Batch
from . import api, codec, names
from .replies import Replies, status

log = logging.getLogger(__name__)

COUNT = "LS-N"
MSG_ID = "Nats-Msg-Id"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
PIPELINE = 32  # batches in flight per call (the server allows 50 per stream)


class _Retry(Exception):
    """The publish may not have reached a leader: send it again."""


class Appender:
    def __init__(
        self,
        nc: Any,
        replies: Replies,
        stream_of: Callable[[str], str],
        exists: Callable[[str], Any],
        stored: Callable[[str, int], None],
        publish_timeout: float,
        request_timeout: float,
    ):
        self.nc = nc
        self.replies = replies
        self.stream_of = stream_of
        self.exists = exists  # coroutine: TopicNotFound unless the topic exists
        self.stored = stored  # (stream, last sequence) of every acknowledged write
        self.publish_timeout = publish_timeout
        self.request_timeout = request_timeout

    async def append(
        self, topic_id: str, batches: Sequence[Batch], keys: Sequence[str | None] | None
    ) -> list[int]:
        await self.replies.open()
        stream = self.stream_of(topic_id)
        deadline = time.monotonic() + self.publish_timeout
        out: list[int] = []
        for start in range(0, len(batches), PIPELINE):
            chunk = batches[start : start + PIPELINE]
            chunk_keys = keys[start : start + PIPELINE] if keys is not None else [None] * len(chunk)
            publishes = [
                _Publish(stream, _messages(b), k, topic_id)
                for b, k in zip(chunk, chunk_keys, strict=True)
            ]
            for p in publishes:
                await self._send(p)
            for p in publishes:
                out.append(await self._settle(p, deadline))
        return out

    async def _send(self, p: _Publish) -> None:
        p.reply, p.answers = self.replies.new()
        batch_id = uuid.uuid4().hex
        messages, last = p.messages, len(p.messages) - 1
        try:
            if last == 0:
                value, headers = messages[0]
                headers = {**headers, MSG_ID: p.tag}
                subject = names.commit_subject(p.stream, p.tag if p.keyed else "0")
                await self.nc.publish(subject, value, reply=p.reply, headers=headers)
                return
            body = names.message_subject(p.stream)
            for i, (value, headers) in enumerate(messages):
                headers = {**headers, BATCH_ID: batch_id, BATCH_SEQUENCE: str(i + 1)}
                if i == last:
                    headers[BATCH_COMMIT] = "1"
                    headers[MSG_ID] = p.tag
                    headers[COUNT] = str(len(messages))
                    subject = names.commit_subject(p.stream, p.tag)
                    await self.nc.publish(subject, value, reply=p.reply, headers=headers)
                else:
                    reply = p.reply if i == 0 else ""
                    await self.nc.publish(body, value, reply=reply, headers=headers)
        except MaxPayloadError:
            self.replies.done(p.reply)
            size = max(len(v) for v, _ in messages)
            raise MessageTooLarge(p.topic, size, self.nc.max_payload) from None

    async def _settle(self, p: _Publish, deadline: float) -> int:
        """The first offset of an acknowledged publish, sending it again while its fate is
        unknown, until `deadline`."""
        while True:
            try:
                return await self._acknowledged(p)
            except _Retry as exc:
                problem = exc.__cause__ or exc
            finally:
                self.replies.done(p.reply)
            await self.exists(p.topic)  # TopicNotFound rather than waiting for nothing
            if time.monotonic() + api.RETRY_PAUSE >= deadline:
                raise api.unavailable(p.topic, problem)
            log.info("publish to topic %r: %s; sending it again", p.topic, problem)
            await asyncio.sleep(api.RETRY_PAUSE)
            await self._send(p)

    async def _acknowledged(self, p: _Publish) -> int:
        expected = 1 if len(p.messages) == 1 else 2  # a batch: its first's answer, its commit's
        ack: dict[str, Any] = {}
        for _ in range(expected):
            try:
                msg = await asyncio.wait_for(p.answers.get(), self.request_timeout)
            except TimeoutError as exc:
                raise _Retry("no answer in time") from exc
            code = status(msg)
            if code is not None:
                raise _Retry(f"status {code}") from None
            if msg.data:
                ack = json.loads(msg.data)
                if ack.get("error"):
                    return await self._refused(p, ack)
                if "seq" in ack:
                    break
        sequence = ack["seq"]
        first = sequence - len(p.messages)
        if ack.get("duplicate"):
            return Replayed(first)
        self.stored(p.stream, sequence)
        return first

    async def _refused(self, p: _Publish, ack: dict[str, Any]) -> int:
        try:
            api.check(ack)
        except api.ApiError as exc:
            if exc.err_code == api.BATCH_DUPLICATE_ID:
                return await self._first_copy(p)
            if exc.err_code == api.MESSAGE_TOO_LARGE:
                size = max(len(v) for v, _ in p.messages)
                raise MessageTooLarge(p.topic, size, self.nc.max_payload) from None
            if exc.err_code in api.INSUFFICIENT_RESOURCES:
                raise StorageFull(p.topic, f"the cluster refused the write: {exc}") from None
            if exc.transient or exc.err_code == api.DUPLICATE_IN_PROCESS:
                raise _Retry(str(exc)) from None
            raise StorageError(p.topic, f"the cluster refused the write: {exc}") from None
        raise AssertionError("unreachable")

    async def _first_copy(self, p: _Publish) -> int:
        """Where the batch with this message id was stored (it is being committed when not
        found yet: wait for it)."""
        request = {"last_by_subj": names.commit_subject(p.stream, p.tag)}
        subject = f"$JS.API.STREAM.MSG.GET.{p.stream}"
        for _ in range(int(self.publish_timeout / api.RETRY_PAUSE) + 1):
            try:
                answer = await api.request(self.nc, subject, request, self.request_timeout)
            except api.ApiError as exc:
                if exc.code != 404:
                    raise _Retry(str(exc)) from None
                await asyncio.sleep(api.RETRY_PAUSE)
                continue
            except api.TRANSIENT as exc:
                raise _Retry(str(exc)) from None
            found = answer["message"]
            count = _header(found.get("hdrs"), COUNT)
            return Replayed(found["seq"] - int(count or 1))
        raise StorageError(
            p.topic,
            "a retried batch was refused as a duplicate of a batch "
            "that never appeared; retry with the same idempotency key",
        )


class _Publish:
    """One batch being published: its encoded messages and the state of its answer."""

    __slots__ = ("answers", "keyed", "messages", "reply", "stream", "tag", "topic")

    def __init__(
        self,
        stream: str,
        messages: list[tuple[bytes, dict[str, str]]],
        key: str | None,
        topic: str,
    ):
        self.stream = stream
        self.messages = messages
        self.keyed = key is not None
        self.tag = names.key_tag(key) if key is not None else "b" + uuid.uuid4().hex
        self.topic = topic
        self.reply = ""
        self.answers: asyncio.Queue = asyncio.Queue()


def _messages(batch: Batch) -> list[tuple[bytes, dict[str, str]]]:
    """(payload, headers) of each message of a batch."""
    if batch.plain:
        return [(value, {}) for value in batch.records]  # type: ignore[misc]
    if batch.frame is not None:
        header = frames.parse_header(batch.frame, 0)
        records = frames.decode(batch.frame, 0, header, header.base_offset, header.count)
        return [(m.value, codec.record_headers(Record(m.value, m.key, m.headers))) for m in records]
    return [(r.value, codec.record_headers(r)) for r in batch.records]  # type: ignore[union-attr]


def _header(encoded: str | None, name: str) -> str | None:
    """A header of a STREAM.MSG.GET answer's base64 `hdrs` block."""
    if not encoded:
        return None
    for line in base64.b64decode(encoded).split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().decode("ascii", "replace") == name:
            return value.strip().decode()
    return None
