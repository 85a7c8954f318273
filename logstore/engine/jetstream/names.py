"""Topic ids and subscription names as JetStream stream and consumer names, and subjects.

A stream name may not hold `.` (nor `*`, `>`, whitespace, path separators) and has at most
255 characters, so names are encoded injectively: `_` becomes `__` and `.` becomes `_d`. A
namespace (the URL's `namespace=` option, which lets several stores share one cluster)
joins with `_n`, which the encoding never produces: `LS-<namespace>_n<topic>`, or
`LS-<topic>` without one. An encoded name over the limit is replaced by a hash of it.

Subjects of a stream `S`: `ls.t.S.m` holds messages, `ls.t.S.c.<tag>` the last message of
each batch (its commit: `0` for a single unkeyed message, `b<batch id>` or `k<hash of the
idempotency key>` otherwise, so a retry can find where its batch landed). The stream
republishes commits, headers only, on `ls.n.S`: the wake-up of waiting readers.
"""

from __future__ import annotations

import hashlib

STREAM_PREFIX = "LS-"
MAX_NAME = 255


def encode(name: str) -> str:
    return name.replace("_", "__").replace(".", "_d")


def _bounded(name: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    return f"{STREAM_PREFIX}h{hashlib.sha256(name.encode()).hexdigest()}"


def stream_prefix(namespace: str | None) -> str:
    """What every stream name of this namespace starts with."""
    return STREAM_PREFIX if namespace is None else f"{STREAM_PREFIX}{encode(namespace)}_n"


def stream_name(namespace: str | None, topic_id: str) -> str:
    return _bounded(stream_prefix(namespace) + encode(topic_id))


def consumer_name(subscription: str) -> str:
    return _bounded(encode(subscription))


def subjects(stream: str) -> str:
    return f"ls.t.{stream}.>"


def message_subject(stream: str) -> str:
    return f"ls.t.{stream}.m"


def commit_subject(stream: str, tag: str) -> str:
    return f"ls.t.{stream}.c.{tag}"


def commit_filter(stream: str) -> str:
    return f"ls.t.{stream}.c.*"


def notify_subject(stream: str) -> str:
    return f"ls.n.{stream}"


def key_tag(idempotency_key: str) -> str:
    """The commit tag and message id of an idempotency key (any text, so hashed)."""
    return "k" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
