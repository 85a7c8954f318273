"""Every failure becomes `{"error": code, "message": sentence}` with the SPEC's status.

Handlers raise `ApiError` for bad requests, or let the library's `LogstoreError`s propagate;
`error_response` (called by the app's middleware) turns both into JSON answers. Anything
else is a bug: it is logged with its traceback and answered as a bare 500 `internal_error`,
so no stack trace, file system path or internal detail ever reaches a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web

from logstore import errors as lse

from .keys import READ_OFFSET

log = logging.getLogger("logstore_server")


class ApiError(Exception):
    """An answer other than success, with the status, code and message the client sees."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = {"error": self.code, "message": self.message, **self.extra}
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=self.headers,
        )


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def from_logstore(exc: lse.LogstoreError, request: web.Request) -> ApiError:
    """The HTTP face of a library error. Messages naming files are rewritten without them."""
    topic = request.match_info.get("topic", "")
    match exc:
        case lse.InvalidName():
            return ApiError(400, "invalid_name", str(exc))
        case lse.InvalidArgument():
            return ApiError(400, "invalid_request", str(exc))
        case lse.TopicNotFound():
            return ApiError(404, "topic_not_found", str(exc))
        case lse.SubscriptionNotFound():
            return ApiError(404, "subscription_not_found", str(exc))
        case lse.TopicExists():
            return ApiError(409, "topic_exists", str(exc))
        case lse.SubscriptionExists():
            return ApiError(409, "subscription_exists", str(exc))
        case lse.OffsetOutOfRange():
            return ApiError(
                416,
                "offset_out_of_range",
                str(exc),
                extra={"start_offset": exc.start_offset, "end_offset": exc.end_offset},
            )
        case lse.MessageTooLarge():
            return ApiError(413, "payload_too_large", str(exc))
        case lse.StoreClosed():
            return ApiError(503, "shutting_down", "the server is shutting down; retry elsewhere")
        case lse.Corruption():
            log.error("corrupt data (topic %r): %s", topic, exc)
            where = request.get(READ_OFFSET)
            at = f" at offset {where}" if where is not None else ""
            return ApiError(
                500,
                "corrupt_data",
                f"corrupt data{at} of topic {topic!r}; the operator should run `logstore check`",
            )
        case lse.StorageFull():
            log.error("storage full: %s", exc)
            return ApiError(
                507, "storage_full", f"no space left to write to topic {exc.topic!r}; retry later"
            )
        case lse.StorageError():
            # The disk failed (an I/O error, a failed fsync): nothing was acknowledged, reads
            # go on, and writes to the topic may be refused until the operator reopens it.
            log.error("storage error: %s", exc)
            return ApiError(
                503,
                "storage_unavailable",
                f"the storage could not write topic {exc.topic!r}; nothing was stored; "
                "retry later (the server log has the cause)",
                headers={"Retry-After": "5"},
            )
    log.error("unmapped logstore error: %r", exc)
    return ApiError(500, "internal_error", "internal error; the server log has the details")


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(exc: Exception, request: web.Request) -> web.Response:
    """The JSON answer for an exception a handler raised (HTTP redirects are re-raised)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, lse.LogstoreError):
        return from_logstore(exc, request).response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(exc, request).response()
    log.error("internal error answering %s %s", request.method, request.path, exc_info=exc)
    return ApiError(
        500, "internal_error", "internal error; the server log has the details"
    ).response()


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    code = _HTTP_CODES.get(exc.status, "invalid_request" if exc.status < 500 else "internal_error")
    headers = {}
    if exc.status == 404:
        message = f"no such endpoint: {request.method} {request.path}; see /openapi.json"
    elif exc.status == 405:
        headers["Allow"] = exc.headers.get("Allow", "")
        message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    elif exc.status == 413:
        message = "the request body is over the server's size limit"
    else:
        message = exc.reason
    return ApiError(exc.status, code, message, headers=headers)
