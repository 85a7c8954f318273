"""Handlers for operators: /health, /metrics, /openapi.json, /whoami."""

from __future__ import annotations

from aiohttp import web

from . import metrics, openapi
from .codec import json_response
from .errors import ApiError
from .keys import GRANT
from .state import STATE


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.shutting_down:
        raise ApiError(503, "shutting_down", "the server is shutting down")
    storage = state.store.describe()
    if storage["engine"] == "local":
        return json_response({"status": "ok"})
    if not storage.get("connected"):  # a cluster this front end cannot reach
        raise ApiError(
            503,
            "storage_unavailable",
            f"not connected to the NATS cluster {storage.get('servers')}; it reconnects by "
            "itself: retry shortly",
            headers={"Retry-After": str(state.limits.retry_after_seconds)},
        )
    return json_response({"status": "ok", "storage": storage})


async def get_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    grant = request[GRANT]
    if not (grant.admin or grant.metrics):
        raise ApiError(403, "forbidden", "this token may not read metrics")
    traffic = state.metrics.snapshot(
        state.long_polls.active, state.sse_streams.active, state.store.idempotency_keys
    )
    text = await state.run(metrics.render, state.store, traffic, grant.sees)
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


async def whoami(request: web.Request) -> web.Response:
    """What the request's token may do, so a client (the dashboard) offers only that."""
    grant = request[GRANT]
    return json_response(
        {
            "name": grant.name,
            "auth": request.app[STATE].config.auth is not None,
            "admin": grant.admin,
            "metrics": grant.metrics,
            "publish": list(grant.publish_globs),
            "subscribe": list(grant.subscribe_globs),
        }
    )


async def get_openapi(request: web.Request) -> web.Response:
    secured = request.app[STATE].config.auth is not None
    body = openapi.DOCUMENT_BYTES if secured else openapi.OPEN_DOCUMENT_BYTES
    return web.Response(body=body, content_type="application/json")
