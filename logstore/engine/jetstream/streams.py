"""Topics as streams: one replicated stream per topic.

A stream keeps limits retention with `discard: old` (`max_age`, `max_bytes` move only its
first sequence, so offsets stay dense), allows atomic batches and Direct Get, refuses
deleting single messages (`deny_delete`: no holes), and republishes each batch's last
message, headers only, on the topic's notification subject (`names`). What logstore keeps
that JetStream has no field for is in the stream's metadata: the topic id, its display
name, its namespace and `segment_bytes` (kept, not used: the server sizes its own blocks).
"""

from __future__ import annotations

import time
from typing import Any

from ...errors import TopicExists, TopicNotFound
from ...types import TopicInfo
from ..base import TopicSettings
from . import api, codec, names

ID = "logstore.id"
NAME = "logstore.name"
NAMESPACE = "logstore.namespace"
SEGMENT_BYTES = "logstore.segment_bytes"
NS = 1_000_000  # nanoseconds per millisecond


def stream_config(
    stream: str,
    topic_id: str,
    settings: TopicSettings,
    namespace: str | None,
    replicas: int,
    window_seconds: float,
) -> dict[str, Any]:
    window = int(window_seconds * 1e9)
    if settings.retention_ms is not None:
        window = min(window, settings.retention_ms * NS)  # the server caps it so
    metadata = {ID: topic_id, NAME: settings.name, SEGMENT_BYTES: str(settings.segment_bytes)}
    if namespace is not None:
        metadata[NAMESPACE] = namespace
    return {
        "name": stream,
        "subjects": [names.subjects(stream)],
        "retention": "limits",
        "storage": "file",
        "num_replicas": replicas,
        "discard": "old",
        "max_age": (settings.retention_ms or 0) * NS,
        "max_bytes": settings.retention_bytes or -1,
        "duplicate_window": window,
        "allow_direct": True,
        "allow_atomic": True,
        "deny_delete": True,
        "republish": {
            "src": names.commit_filter(stream),
            "dest": names.notify_subject(stream),
            "headers_only": True,
        },
        "metadata": metadata,
    }


def settings_of(config: dict[str, Any]) -> TopicSettings:
    metadata = config.get("metadata") or {}
    max_age = config.get("max_age") or 0
    max_bytes = config.get("max_bytes", -1)
    return TopicSettings(
        metadata.get(NAME, metadata.get(ID, config["name"])),
        max_age // NS if max_age > 0 else None,
        max_bytes if max_bytes > 0 else None,
        int(metadata.get(SEGMENT_BYTES, 0)),
    )


def topic_info(answer: dict[str, Any]) -> TopicInfo:
    """TopicInfo of a STREAM.INFO (or create, or list entry) answer."""
    config, state = answer["config"], answer["state"]
    settings = settings_of(config)
    first, last = state["first_seq"], state["last_seq"]
    return TopicInfo(
        id=config["metadata"][ID],
        name=settings.name,
        start_offset=first - 1 if first else last,
        end_offset=last,
        size_bytes=state["bytes"],
        segments=None,
        created_at=codec.timestamp_ms(answer["created"]),
        retention_ms=settings.retention_ms,
        retention_bytes=settings.retention_bytes,
        segment_bytes=settings.segment_bytes,
    )


class Streams:
    """Create, describe, list and delete the streams of one namespace."""

    def __init__(
        self,
        nc: Any,
        namespace: str | None,
        replicas: int,
        window_seconds: float,
        timeout: float,
        retry_seconds: float,
    ):
        self.nc = nc
        self.namespace = namespace
        self.replicas = replicas
        self.window_seconds = window_seconds
        self.timeout = timeout
        self.retry_seconds = retry_seconds

    def stream(self, topic_id: str) -> str:
        return names.stream_name(self.namespace, topic_id)

    async def _call(self, verb: str, topic_id: str, doc: object = None) -> dict[str, Any]:
        subject = f"$JS.API.STREAM.{verb}.{self.stream(topic_id)}"
        deadline = time.monotonic() + self.retry_seconds
        return await api.call(self.nc, subject, doc, topic_id, self.timeout, deadline)

    async def info(self, topic_id: str) -> dict[str, Any]:
        """The raw STREAM.INFO answer (`TopicNotFound` if there is no such topic)."""
        return await self._call("INFO", topic_id)

    async def topic(self, topic_id: str) -> TopicInfo:
        return topic_info(await self.info(topic_id))

    async def create(self, topic_id: str, settings: TopicSettings, exist_ok: bool) -> TopicInfo:
        try:
            existing = await self.info(topic_id)
        except TopicNotFound:
            existing = None
        if existing is not None:
            return self._existing(topic_id, settings, existing, exist_ok)
        config = stream_config(
            self.stream(topic_id),
            topic_id,
            settings,
            self.namespace,
            self.replicas,
            self.window_seconds,
        )
        try:
            return topic_info(await self._call("CREATE", topic_id, config))
        except api.ApiError as exc:
            if exc.err_code != api.STREAM_NAME_IN_USE:
                raise
        return self._existing(topic_id, settings, await self.info(topic_id), exist_ok)

    def _existing(
        self, topic_id: str, settings: TopicSettings, answer: dict[str, Any], exist_ok: bool
    ) -> TopicInfo:
        if not exist_ok:
            raise TopicExists(topic_id)
        existing = settings_of(answer["config"])
        if existing != settings:
            differ = [
                f"{field}={getattr(existing, field)!r}, not {getattr(settings, field)!r}"
                for field in ("name", "retention_ms", "retention_bytes", "segment_bytes")
                if getattr(existing, field) != getattr(settings, field)
            ]
            raise TopicExists(
                topic_id,
                " with different settings (" + "; ".join(differ) + "); delete it first to "
                "change them",
            )
        return topic_info(answer)

    async def delete(self, topic_id: str) -> None:
        await self._call("DELETE", topic_id)

    async def topics(self) -> list[TopicInfo]:
        found: list[TopicInfo] = []
        offset = 0
        deadline = time.monotonic() + self.retry_seconds
        while True:
            answer = await api.call(
                self.nc, "$JS.API.STREAM.LIST", {"offset": offset}, "*", self.timeout, deadline
            )
            page = answer.get("streams") or []
            for entry in page:
                config = entry["config"]
                metadata = config.get("metadata") or {}
                if ID in metadata and metadata.get(NAMESPACE) == self.namespace:
                    found.append(topic_info(entry))
            offset += len(page)
            if not page or offset >= answer.get("total", 0):
                return sorted(found, key=lambda t: t.id)
