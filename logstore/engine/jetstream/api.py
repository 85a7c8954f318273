"""Requests to the JetStream API, its error answers, and retries through elections.

A JetStream API answer is JSON; a failure carries `{"error": {"code", "err_code",
"description"}}` and becomes `ApiError`. While a stream or the cluster's metadata elects a
leader (4-9 s after a node dies), requests get no responders, time out, or answer 503:
`call` retries those, with the same request, until its deadline, then raises
`StorageError` ("the cluster did not answer"), which the server answers with 503 and
`Retry-After`. Only idempotent requests go through `call`; publishes retry in `append`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from ...errors import StorageError, TopicNotFound

log = logging.getLogger(__name__)

STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
STREAM_NAME_IN_USE = 10058
CONSUMER_EXISTS = 10148
MESSAGE_TOO_LARGE = 10054
BATCH_DUPLICATE_ID = 10201
DUPLICATE_IN_PROCESS = 10158  # the first copy is still being proposed: ask again
INSUFFICIENT_RESOURCES = (10023, 10047, 10028)
TRANSIENT = (NoRespondersError, NatsTimeout, asyncio.TimeoutError, ConnectionClosedError)
RETRY_PAUSE = 0.25


class ApiError(Exception):
    """An error answer of the JetStream API."""

    def __init__(self, code: int, err_code: int, description: str):
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"{description} (JetStream error {err_code})")

    @property
    def transient(self) -> bool:
        return self.code == 503


def check(answer: dict[str, Any]) -> dict[str, Any]:
    error = answer.get("error")
    if error:
        raise ApiError(error.get("code", 0), error.get("err_code", 0), error.get("description", ""))
    return answer


async def request(nc: Any, subject: str, doc: object, timeout: float) -> dict[str, Any]:
    """One request; its JSON answer (`ApiError` for an error answer)."""
    payload = b"" if doc is None else json.dumps(doc).encode()
    reply = await nc.request(subject, payload, timeout=timeout)
    return check(json.loads(reply.data)) if reply.data else {}


async def call(
    nc: Any, subject: str, doc: object, topic: str, timeout: float, deadline: float
) -> dict[str, Any]:
    """`request`, retried through elections until `deadline` (a `time.monotonic()`);
    `TopicNotFound(topic)` when the answer is that the topic's stream does not exist."""
    while True:
        try:
            return await request(nc, subject, doc, timeout)
        except TRANSIENT as exc:
            problem: Exception = exc
        except ApiError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                raise TopicNotFound(topic) from None
            if not exc.transient:
                raise
            problem = exc
        if time.monotonic() + RETRY_PAUSE >= deadline:
            raise unavailable(topic, problem)
        log.debug("retrying %s after %r", subject, problem)
        await asyncio.sleep(RETRY_PAUSE)


def unavailable(topic: str, problem: BaseException) -> StorageError:
    what = type(problem).__name__ if not str(problem) else str(problem)
    return StorageError(
        topic,
        f"the NATS cluster did not answer in time ({what}); a leader election may be in "
        "progress: retry shortly",
    )
