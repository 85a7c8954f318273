"""Subscriptions as durable pull consumers with explicit acks; leases as tokens.

A subscription is a consumer (`ack_policy: explicit`, `ack_wait`, no `max_deliver`: the
facade dead-letters, so an exhausted message whose dead-lettering failed is delivered
again). It is created delivering everything, then reset to its start, so `seek` may move it
anywhere later (a consumer created at a start sequence refuses to go below it). Its
logstore settings are kept in the consumer's metadata.

A poll is a pull request: `no_wait` for what is deliverable now, else one request for one
message that the server holds up to `wait` (no polling), then `no_wait` for the rest. Each
delivery's lease token is `<offset>-<grant>`, the grant being the highest consumer
sequence of the poll: that is all an ack needs to be built again by any process (an ack
names the stream sequence; a nack a consumer sequence the consumer has reached), so any
front end on the cluster settles any lease. An ack of a stale token still acknowledges its
offset. A nack of a token whose lease this process knows has expired or been replaced has
no effect; another process cannot know that, and its nack ends the current lease.

`commit(up_to)` acknowledges the delivered messages below `up_to` one by one, or, when some
of them were never delivered, resets the consumer to `up_to` (there are no leases above).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from ...errors import (
    InvalidArgument,
    OffsetOutOfRange,
    SubscriptionExists,
    SubscriptionNotFound,
)
from ...types import Delivery, Grant, Message, SubscriptionInfo
from ..base import Leased, Outcome, SubscriptionSettings
from . import api, codec, names
from .replies import status

NAME = "logstore.name"
MAX_DELIVERIES = "logstore.max_deliveries"
DEAD_LETTER_TOPIC = "logstore.dead_letter_topic"
SECOND = 1_000_000_000
MAX_WAITING = 4096  # pull requests a consumer holds at once (waiting polls)
CATCH_UP_SECONDS = 2.0  # how long a poll waits for a replica to store what was acknowledged
SETTLE_CHUNK = 1000
_ACK = b"+ACK"
_NAK = b"-NAK"
_TERM = b"+TERM"
_VERBS = {"ack": _ACK, "nack": _NAK, "terminate": _TERM}
_ENDS = ("Message Size Exceeds MaxBytes", "Batch Completed", "Request Timeout", "No Messages")


class _TooBig(Exception):
    """The next message alone is over the pull's `max_bytes`."""


class Consumers:
    """Used only on the connection's loop."""

    def __init__(
        self,
        nc: Any,
        stream_of: Callable[[str], str],
        stream_info: Callable[[str], Awaitable[dict[str, Any]]],
        acked: dict[str, int],
        timeout: float,
        retry_seconds: float,
    ):
        self.nc = nc
        self.stream_of = stream_of
        self.stream_info = stream_info
        self.acked = acked  # stream -> highest sequence acknowledged here (a lower bound)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._settings: dict[tuple[str, str], SubscriptionSettings] = {}
        self._leases: dict[tuple[str, str], dict[int, tuple[int, float]]] = {}

    # ------------------------------------------------------------ management

    async def _call(self, verb: str, topic_id: str, name: str, doc: object = None) -> dict:
        stream = self.stream_of(topic_id)
        subject = f"$JS.API.CONSUMER.{verb}.{stream}.{names.consumer_name(name)}"
        deadline = time.monotonic() + self.retry_seconds
        try:
            return await api.call(self.nc, subject, doc, topic_id, self.timeout, deadline)
        except api.ApiError as exc:
            if exc.err_code == api.CONSUMER_NOT_FOUND:
                self._forget(stream, name)
                raise SubscriptionNotFound(topic_id, name) from None
            raise

    async def info(self, topic_id: str, name: str) -> dict[str, Any]:
        return await self._call("INFO", topic_id, name)

    async def subscription(self, topic_id: str, name: str) -> SubscriptionInfo:
        answer, start = await asyncio.gather(self.info(topic_id, name), self._start(topic_id))
        return _subscription_info(topic_id, answer, start)

    async def _start(self, topic_id: str) -> int:
        """The topic's start offset: a subscription behind it stands there (the server
        moves its floor only when it next delivers)."""
        state = (await self.stream_info(topic_id))["state"]
        first = state["first_seq"]
        return first - 1 if first else state["last_seq"]

    async def subscribe(
        self, topic_id: str, name: str, settings: SubscriptionSettings, start: int
    ) -> tuple[SubscriptionInfo, bool]:
        try:
            return self._existing(topic_id, name, settings, await self.info(topic_id, name))
        except SubscriptionNotFound:
            pass
        stream = self.stream_of(topic_id)
        consumer = names.consumer_name(name)
        metadata = {NAME: name}
        if settings.max_deliveries is not None:
            metadata[MAX_DELIVERIES] = str(settings.max_deliveries)
        if settings.dead_letter_topic is not None:
            metadata[DEAD_LETTER_TOPIC] = settings.dead_letter_topic
        config = {
            "durable_name": consumer,
            "ack_policy": "explicit",
            "ack_wait": int(settings.ack_wait * SECOND),
            "max_deliver": -1,
            "deliver_policy": "all",
            "max_ack_pending": -1,
            "max_waiting": MAX_WAITING,
            "metadata": metadata,
        }
        doc = {"stream_name": stream, "config": config, "action": "create"}
        try:
            await self._call("CREATE", topic_id, name, doc)
        except api.ApiError as exc:
            if exc.err_code != api.CONSUMER_EXISTS:
                raise
            return self._existing(topic_id, name, settings, await self.info(topic_id, name))
        if start > 0:
            await self._call("RESET", topic_id, name, {"seq": start + 1})
        self._settings[(stream, name)] = settings
        return await self.subscription(topic_id, name), True

    def _existing(
        self, topic_id: str, name: str, settings: SubscriptionSettings, answer: dict
    ) -> tuple[SubscriptionInfo, bool]:
        existing = _settings(answer)
        if existing != settings:
            raise SubscriptionExists(
                topic_id,
                name,
                f" with different settings (ack_wait={existing.ack_wait}, max_deliveries="
                f"{existing.max_deliveries}, dead_letter_topic={existing.dead_letter_topic!r}); "
                "unsubscribe first to change them",
            )
        return _subscription_info(topic_id, answer, 0), False

    async def unsubscribe(self, topic_id: str, name: str) -> None:
        await self._call("DELETE", topic_id, name)
        self._forget(self.stream_of(topic_id), name)

    def _forget(self, stream: str, name: str) -> None:
        self._settings.pop((stream, name), None)
        self._leases.pop((stream, name), None)

    async def subscriptions(self, topic_id: str) -> list[SubscriptionInfo]:
        stream = self.stream_of(topic_id)
        found: list[SubscriptionInfo] = []
        offset = 0
        deadline = time.monotonic() + self.retry_seconds
        while True:
            answer = await api.call(
                self.nc,
                f"$JS.API.CONSUMER.LIST.{stream}",
                {"offset": offset},
                topic_id,
                self.timeout,
                deadline,
            )
            page = answer.get("consumers") or []
            start = await self._start(topic_id) if page else 0
            found.extend(
                _subscription_info(topic_id, c, start)
                for c in page
                if NAME in (c["config"].get("metadata") or {})
            )
            offset += len(page)
            if not page or offset >= answer.get("total", 0):
                return sorted(found, key=lambda s: s.name)

    # -------------------------------------------------------------- leasing

    async def lease(
        self, topic_id: str, name: str, max_messages: int, wait: float, max_bytes: int | None
    ) -> Leased:
        stream = self.stream_of(topic_id)
        settings = self._settings.get((stream, name))
        if settings is None:
            settings = self._settings[(stream, name)] = _settings(await self.info(topic_id, name))
        now_doc: dict[str, Any] = {"batch": max_messages, "no_wait": True}
        if max_bytes is not None:
            now_doc["max_bytes"] = max_bytes
        try:
            got = await self._pull(topic_id, name, now_doc, self.timeout)
        except _TooBig:
            got = await self._pull(topic_id, name, {"batch": 1, "no_wait": True}, self.timeout)
        if not got and wait <= 0 and await self._behind_own_writes(topic_id, name, stream):
            wait = CATCH_UP_SECONDS
        if not got and wait > 0:
            doc = {"batch": 1, "expires": int(wait * SECOND)}
            got = await self._pull(topic_id, name, doc, wait + self.timeout)
            if got and max_messages > 1:
                rest: dict[str, Any] = {"batch": max_messages - 1, "no_wait": True}
                if max_bytes is not None:
                    rest["max_bytes"] = max_bytes - len(got[0][1].value) - len(got[0][1].key or b"")
                if rest.get("max_bytes", 1) > 0:
                    with contextlib.suppress(_TooBig):
                        got += await self._pull(topic_id, name, rest, self.timeout)
        return self._leased(stream, name, settings, got)

    async def _behind_own_writes(self, topic_id: str, name: str, stream: str) -> bool:
        """Whether writes acknowledged here are not delivered yet: the consumer's leader
        may be a replica that has not stored them yet (read-after-write for polls)."""
        acked = self.acked.get(stream, 0)
        if not acked:
            return False
        info = await self.info(topic_id, name)
        return info["delivered"]["stream_seq"] < acked

    async def _pull(
        self, topic_id: str, name: str, doc: dict[str, Any], timeout: float
    ) -> list[tuple[tuple[int, int, int], Message]]:
        """Deliveries of one pull request: ((delivery count, consumer sequence, stream
        sequence), message) each."""
        stream = self.stream_of(topic_id)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{names.consumer_name(name)}"
        payload = json.dumps(doc).encode()
        deadline = time.monotonic() + self.retry_seconds
        while True:
            # Deliveries carry their stream subject, not the reply subject: a subscription
            # of its own per request tells them apart.
            reply = self.nc.new_inbox()
            answers = await self.nc.subscribe(reply)
            out: list[tuple[tuple[int, int, int], Message]] = []
            try:
                await self.nc.publish(subject, payload, reply=reply)
                ends = time.monotonic() + timeout
                expected = doc["batch"]
                while len(out) < expected:
                    msg = await answers.next_msg(max(ends - time.monotonic(), 0.001))
                    code = status(msg)
                    if code is None:
                        out.append(_delivered(msg))
                        continue
                    if code == "100":
                        continue
                    description = msg.headers.get("Description", "")
                    undelivered = msg.headers.get("Nats-Pending-Messages")
                    if undelivered is not None and description in _ENDS:
                        # The status that ends a request may overtake its last deliveries:
                        # it says how many of the batch were not delivered.
                        expected = doc["batch"] - int(undelivered)
                        if expected == 0 and "MaxBytes" in description:
                            raise _TooBig()
                        ends = time.monotonic() + self.timeout
                        continue
                    if code in ("404", "408"):
                        return out
                    if code == "409" and "Deleted" in description:
                        self._forget(stream, name)
                        raise SubscriptionNotFound(topic_id, name)
                    if code == "503":
                        await self.info(topic_id, name)  # not found errors
                    problem: Exception = RuntimeError(f"pull answered {code} {description}")
                    break
                else:
                    return out
            except (TimeoutError, NatsTimeout) as exc:
                if out:
                    return out
                problem = exc
            finally:
                await answers.unsubscribe()
            if time.monotonic() + api.RETRY_PAUSE >= deadline:
                raise api.unavailable(topic_id, problem)
            await asyncio.sleep(api.RETRY_PAUSE)

    def _leased(
        self,
        stream: str,
        name: str,
        settings: SubscriptionSettings,
        got: list[tuple[tuple[int, int, int], Message]],
    ) -> Leased:
        leased = Leased(
            dead_letter_topic=settings.dead_letter_topic, max_deliveries=settings.max_deliveries
        )
        if not got:
            return leased
        got.sort(key=lambda delivered: delivered[1].offset)  # redeliveries come in any order
        grant = Grant(max(cseq for (_, cseq, _), _ in got), {})
        counts: dict[int, int] = {}
        known = self._leases.setdefault((stream, name), {})
        if len(known) > 100_000:
            known.clear()
        expires = time.monotonic() + settings.ack_wait
        limit = settings.max_deliveries
        for (count, _, _), message in got:
            known[message.offset] = (grant.number, expires)
            if limit is not None and count > limit:
                leased.exhausted.append(message)
                leased.exhausted_offsets.append(message.offset)
                continue
            if count != 1:
                counts[message.offset] = count
            message.__class__ = Delivery
            message._grant = grant
            leased.deliveries.append(message)  # type: ignore[arg-type]
        grant.counts = counts
        return leased

    # ------------------------------------------------------------- settling

    async def settle(
        self, topic_id: str, name: str, items: Iterable[int | str], outcome: Outcome
    ) -> SubscriptionInfo:
        stream = self.stream_of(topic_id)
        pairs = _parse(items)
        if pairs:
            await self._check_below_end(topic_id, stream, max(o for o, _ in pairs))
        known = self._leases.get((stream, name), {})
        if outcome == "ack" and all(offset in known for offset, _ in pairs):
            delivered = {"stream_seq": max(o for o, _ in pairs) + 1}  # leased here: delivered
        else:
            delivered = (await self.info(topic_id, name))["delivered"]
        now = time.monotonic()
        targets: list[tuple[int, int]] = []
        for offset, grant in pairs:
            if offset >= delivered["stream_seq"]:
                continue  # never delivered: JetStream acknowledges only deliveries
            held = known.get(offset)
            if outcome == "nack":
                if grant is not None and held is not None and (held[0] != grant or held[1] < now):
                    continue  # a stale token: that lease expired or was replaced
                if grant is None:
                    grant = held[0] if held is not None else delivered["consumer_seq"]
            targets.append((offset, grant or 1))
            known.pop(offset, None)
        await self._send(topic_id, name, targets, _VERBS[outcome])
        return await self.subscription(topic_id, name)

    async def _check_below_end(self, topic_id: str, stream: str, highest: int) -> None:
        if highest < self.acked.get(stream, 0):
            return
        info = await self.stream_info(topic_id)
        state = info["state"]
        end = state["last_seq"]
        if highest >= end:
            first = state["first_seq"]
            raise OffsetOutOfRange(topic_id, highest, first - 1 if first else end, end)

    async def _send(
        self, topic_id: str, name: str, targets: list[tuple[int, int]], verb: bytes
    ) -> None:
        """Send each settlement as a request; the server answers once it is applied (an ack
        once it is replicated)."""
        prefix = f"$JS.ACK.{self.stream_of(topic_id)}.{names.consumer_name(name)}"
        for start in range(0, len(targets), SETTLE_CHUNK):
            chunk = targets[start : start + SETTLE_CHUNK]
            results = await asyncio.gather(
                *(
                    self.nc.request(
                        f"{prefix}.1.{offset + 1}.{grant}.0.0", verb, timeout=self.timeout
                    )
                    for offset, grant in chunk
                ),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                await self.info(topic_id, name)  # SubscriptionNotFound / TopicNotFound
                raise api.unavailable(topic_id, failed[0])

    async def commit(self, topic_id: str, name: str, up_to: int) -> SubscriptionInfo:
        stream = self.stream_of(topic_id)
        if up_to > 0:
            await self._check_below_end(topic_id, stream, up_to - 1)
        info = await self.info(topic_id, name)
        floor = info["ack_floor"]["stream_seq"]
        if up_to <= floor:
            return await self.subscription(topic_id, name)
        if info["delivered"]["stream_seq"] >= up_to:
            await self._send(topic_id, name, [(o, 1) for o in range(floor, up_to)], _ACK)
            known = self._leases.get((stream, name), {})
            for offset in range(floor, up_to):
                known.pop(offset, None)
            return await self.subscription(topic_id, name)
        return await self.seek(topic_id, name, up_to)

    async def seek(self, topic_id: str, name: str, offset: int) -> SubscriptionInfo:
        await self._call("RESET", topic_id, name, {"seq": offset + 1})
        self._leases.pop((self.stream_of(topic_id), name), None)
        return await self.subscription(topic_id, name)


def _delivered(msg: Any) -> tuple[tuple[int, int, int], Message]:
    tokens = msg.reply.split(".")
    at = 4 if len(tokens) == 9 else 6  # $JS.ACK.<stream>.<consumer>... or with domain, account
    count, sequence, consumer_sequence = int(tokens[at]), int(tokens[at + 1]), int(tokens[at + 2])
    timestamp = int(tokens[at + 3]) // 1_000_000
    headers = msg.headers or {}
    return (count, consumer_sequence, sequence), codec.message(
        headers, msg.data, sequence, timestamp
    )


def _settings(answer: dict[str, Any]) -> SubscriptionSettings:
    config = answer["config"]
    metadata = config.get("metadata") or {}
    limit = metadata.get(MAX_DELIVERIES)
    return SubscriptionSettings(
        config["ack_wait"] / SECOND,
        int(limit) if limit is not None else None,
        metadata.get(DEAD_LETTER_TOPIC),
    )


def _subscription_info(topic_id: str, answer: dict[str, Any], start: int) -> SubscriptionInfo:
    settings = _settings(answer)
    metadata = answer["config"].get("metadata") or {}
    pending = answer.get("num_ack_pending", 0)
    return SubscriptionInfo(
        topic=topic_id,
        name=metadata.get(NAME, answer.get("name", "")),
        ack_floor=max(answer["ack_floor"]["stream_seq"], start),
        pending=pending,
        lag=answer.get("num_pending", 0) + pending,
        ack_wait=settings.ack_wait,
        max_deliveries=settings.max_deliveries,
        dead_letter_topic=settings.dead_letter_topic,
        created_at=codec.timestamp_ms(answer["created"]),
    )


def _parse(items: Iterable[int | str]) -> list[tuple[int, int | None]]:
    """(offset, grant or None) of each offset or lease token."""
    if isinstance(items, int | str | bytes):
        raise InvalidArgument(f"offsets must be an iterable of ints or lease tokens, not {items!r}")
    out: list[tuple[int, int | None]] = []
    for item in items:
        if type(item) is int:
            if item < 0:
                raise InvalidArgument(f"offsets must not be negative, not {item}")
            out.append((item, None))
        elif type(item) is str:
            offset, _, grant = item.partition("-")
            if not (offset.isdigit() and grant.isdigit()):
                raise InvalidArgument(
                    f"{item!r} is not a lease token (tokens come with deliveries)"
                )
            out.append((int(offset), int(grant)))
        else:
            raise InvalidArgument(f"offsets must be ints or lease tokens, not {item!r}")
    return out
