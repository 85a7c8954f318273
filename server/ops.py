"""Handlers for operators: /health, /metrics, /openapi.json."""

from __future__ import annotations

from aiohttp import web

from . import metrics, openapi
from .codec import json_response
from .errors import ApiError
from .keys import GRANT
from .state import STATE


async def health(request: web.Request) -> web.Response:
    if request.app[STATE].shutting_down:
        raise ApiError(503, "shutting_down", "the server is shutting down")
    return json_response({"status": "ok"})


async def get_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    grant = request[GRANT]
    if not (grant.admin or grant.metrics):
        raise ApiError(403, "forbidden", "this token may not read metrics")
    traffic = state.metrics.snapshot(
        state.long_polls.active, state.sse_streams.active, state.store.idempotency_keys
    )
    text = await state.run(metrics.render, state.store, traffic)
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi.DOCUMENT_BYTES, content_type="application/json")
