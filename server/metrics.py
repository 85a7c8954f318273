"""Prometheus text exposition (format 0.0.4) of the server and its store.

Traffic counters are kept here as requests are answered; gauges (topic sizes, subscription
lag, waiting long polls, fsync latency) are read from the store at scrape time.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable

from logstore import LogstoreError, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class Traffic:
    published: list[tuple[str, int, int]]
    """(topic, messages, bytes)"""
    delivered: list[tuple[str, str, int, int]]
    """(topic, via, messages, bytes)"""
    long_polls: int
    sse_streams: int
    idempotency_keys: int


class Metrics:
    """Per-topic traffic counters. Only the event loop thread touches them."""

    def __init__(self) -> None:
        self.published: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.delivered: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])

    def count_published(self, topic: str, messages: int, nbytes: int) -> None:
        c = self.published[topic]
        c[0] += messages
        c[1] += nbytes

    def count_delivered(self, topic: str, via: str, messages: int, nbytes: int) -> None:
        """`via` is "replay", "events" (SSE) or "poll" (subscriptions)."""
        if messages:
            c = self.delivered[(topic, via)]
            c[0] += messages
            c[1] += nbytes

    def snapshot(self, long_polls: int, sse_streams: int, idempotency_keys: int) -> Traffic:
        """A copy to render in another thread while this one keeps counting."""
        return Traffic(
            [(t, *c) for t, c in self.published.items()],
            [(t, v, *c) for (t, v), c in self.delivered.items()],
            long_polls,
            sse_streams,
            idempotency_keys,
        )

    def forget_topic(self, topic: str) -> None:
        self.published.pop(topic, None)
        for key in [k for k in self.delivered if k[0] == topic]:
            del self.delivered[key]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value, *suffix in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels)
            braces = "{" + text + "}" if text else ""
            self.lines.append(f"{name}{suffix[0] if suffix else ''}{braces} {value}")


def render(store: Store, traffic: Traffic, sees: Callable[[str], bool]) -> str:
    """The exposition text. Blocking (reads store metadata): run it in the executor.

    Series labelled with a topic (and its subscriptions) appear only when `sees(topic)`:
    a scraper's token shows the topics it may publish or subscribe to, an admin's all;
    the server-wide series always appear."""
    topics = [t for t in store.topics() if sees(t.id)]
    traffic = dataclasses.replace(
        traffic,
        published=[p for p in traffic.published if sees(p[0])],
        delivered=[d for d in traffic.delivered if sees(d[0])],
    )
    subs = []
    for t in topics:
        try:
            subs.extend(store.subscriptions(t.id))
        except LogstoreError:
            continue  # deleted since the listing
    w = _Writer()
    w.family(
        "logstore_published_messages_total",
        "counter",
        "Messages appended through this server, by topic.",
        [((("topic", t),), n) for t, n, _ in traffic.published],
    )
    w.family(
        "logstore_published_bytes_total",
        "counter",
        "Value bytes appended through this server, by topic.",
        [((("topic", t),), b) for t, _, b in traffic.published],
    )
    w.family(
        "logstore_delivered_messages_total",
        "counter",
        "Messages sent to clients, by topic and way (replay, events, poll).",
        [((("topic", t), ("via", v)), n) for t, v, n, _ in traffic.delivered],
    )
    w.family(
        "logstore_delivered_bytes_total",
        "counter",
        "Value bytes sent to clients, by topic and way (replay, events, poll).",
        [((("topic", t), ("via", v)), b) for t, v, _, b in traffic.delivered],
    )
    w.family(
        "logstore_topic_end_offset",
        "gauge",
        "The offset the next message of the topic will get.",
        [((("topic", t.id),), t.end_offset) for t in topics],
    )
    w.family(
        "logstore_topic_size_bytes",
        "gauge",
        "Bytes of the topic's retained segments.",
        [((("topic", t.id),), t.size_bytes) for t in topics],
    )
    w.family(
        "logstore_subscription_lag",
        "gauge",
        "Messages of the topic the subscription has not acknowledged.",
        [((("topic", s.topic), ("subscription", s.name)), s.lag) for s in subs],
    )
    w.family(
        "logstore_subscription_pending",
        "gauge",
        "Messages leased to consumers and not yet acknowledged.",
        [((("topic", s.topic), ("subscription", s.name)), s.pending) for s in subs],
    )
    w.family(
        "logstore_long_polls_waiting",
        "gauge",
        "Requests waiting for new messages (replay with wait, subscription polls).",
        [((), traffic.long_polls)],
    )
    w.family(
        "logstore_sse_streams",
        "gauge",
        "Open Server-Sent Events streams.",
        [((), traffic.sse_streams)],
    )
    w.family(
        "logstore_idempotency_keys",
        "gauge",
        "Idempotency keys the store remembers (2-minute window).",
        [((), traffic.idempotency_keys)],
    )
    stats = store.stats
    w.family(
        "logstore_fsync_seconds",
        "summary",
        "Time spent in fsync of segment files.",
        [((), stats.fsyncs, "_count"), ((), f"{stats.fsync_seconds:.6f}", "_sum")],
    )
    w.family(
        "logstore_fsync_max_seconds",
        "gauge",
        "Longest single fsync since the store opened.",
        [((), f"{stats.fsync_max_seconds:.6f}")],
    )
    storage = store.describe()
    if "connected" in storage:  # a cluster: its connection
        w.family(
            "logstore_cluster_connected",
            "gauge",
            "1 while this server is connected to the NATS cluster, else 0.",
            [((), int(bool(storage["connected"])))],
        )
        w.family(
            "logstore_cluster_reconnects_total",
            "counter",
            "Reconnections to the NATS cluster since the store opened.",
            [((), storage["reconnects"])],
        )
    w.family(
        "logstore_recovery_truncations_total",
        "counter",
        "Torn tails cut off at recovery since the store opened.",
        [((), stats.truncations)],
    )
    return "\n".join(w.lines) + "\n"
