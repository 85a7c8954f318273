"""The OpenAPI 3.1 description of the HTTP API: the one place it is written down.

Tests check it with openapi-spec-validator, compare its paths and methods with the routes
the app really serves (`app.ROUTES`), and validate real answers against its schemas.
"""

from __future__ import annotations

import json

from logstore import MAX_BATCH_MESSAGES, NAME_PATTERN

from .params import MAX_LEASE_LENGTH


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict, *errors: int, **extra: object) -> dict:
    common = (401, 403, 503)
    responses = dict(ok)
    for status in sorted(set(errors) | set(common)):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    responses["500"] = {"$ref": "#/components/responses/E500"}
    return {"summary": summary, "responses": responses, **extra}


def _param(name: str, where: str, schema: dict, description: str, required: bool = False):
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


_NAME = {"type": "string", "pattern": NAME_PATTERN.pattern}
_TOPIC = _param("topic", "path", _NAME, "Topic id")
_SUB = _param("sub", "path", _NAME, "Subscription name")
_INT0 = {"type": "integer", "minimum": 0}
_SECONDS = {"type": "number", "minimum": 0}
_MAX = _param("max", "query", {"type": "integer", "minimum": 1}, "Most messages (capped)")
_WAIT = _param("wait", "query", _SECONDS, "Seconds to wait for a message (capped, default 0)")
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 1}
_OFFSETS = {"type": "array", "items": _INT0}
_LEASES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": MAX_LEASE_LENGTH},
    "description": "Lease tokens (a delivery's lease); a token of an expired lease still "
    "acknowledges its offset, and nacks nothing",
}
_NO_BODY = {"description": "Done; no body"}
_INFO = _json(_ref("SubscriptionInfo"), "The subscription after the change")


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "Machine-readable code"},
            "message": {"type": "string", "description": "What happened and what to do"},
            "start_offset": {"type": "integer", "description": "Only with offset_out_of_range"},
            "end_offset": {"type": "integer", "description": "Only with offset_out_of_range"},
        },
    },
    "TopicInfo": {
        "type": "object",
        "required": [
            "id",
            "name",
            "start_offset",
            "end_offset",
            "size_bytes",
            "segments",
            "created_at",
            "retention_ms",
            "retention_bytes",
            "segment_bytes",
        ],
        "properties": {
            "id": _NAME,
            "name": {"type": "string", "maxLength": 256},
            "start_offset": _INT0,
            "end_offset": _INT0,
            "size_bytes": _INT0,
            "segments": _INT0,
            "created_at": {"type": "integer", "description": "ms since the epoch"},
            "retention_ms": _NULLABLE_INT,
            "retention_bytes": _NULLABLE_INT,
            "segment_bytes": {"type": "integer", "minimum": 1},
        },
    },
    "TopicSettings": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 256},
            "retention_ms": _NULLABLE_INT,
            "retention_bytes": _NULLABLE_INT,
            "segment_bytes": {"type": "integer", "minimum": 4096},
        },
    },
    "Msg": {
        "type": "object",
        "required": ["offset", "timestamp", "headers"],
        "description": "value/key are text when the bytes are UTF-8, else value_b64/key_b64",
        "properties": {
            "offset": _INT0,
            "timestamp": {"type": "integer", "description": "ms since the epoch"},
            "key": {"type": ["string", "null"]},
            "key_b64": {"type": "string", "contentEncoding": "base64"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": {"type": "string"},
            "value_b64": {"type": "string", "contentEncoding": "base64"},
        },
    },
    "Delivery": {
        "allOf": [
            _ref("Msg"),
            {
                "type": "object",
                "required": ["delivery_count", "lease"],
                "properties": {
                    "delivery_count": {"type": "integer", "minimum": 1},
                    "lease": {
                        "type": "string",
                        "description": "Opaque token of this lease: ack and nack take it "
                        "(in leases) in place of the offset",
                    },
                },
            },
        ]
    },
    "PublishMessage": {
        "type": "object",
        "additionalProperties": False,
        "description": "Exactly one of value / value_b64; at most one of key / key_b64",
        "properties": {
            "value": {"type": "string"},
            "value_b64": {"type": "string", "contentEncoding": "base64"},
            "key": {"type": "string"},
            "key_b64": {"type": "string", "contentEncoding": "base64"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "PublishBatch": {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_MESSAGES,
                "items": _ref("PublishMessage"),
            }
        },
    },
    "PublishResult": {
        "type": "object",
        "required": ["first_offset", "count"],
        "properties": {"first_offset": _INT0, "count": {"type": "integer", "minimum": 1}},
    },
    "MessagePage": {
        "type": "object",
        "required": ["messages", "next_offset", "start_offset", "end_offset"],
        "properties": {
            "messages": {"type": "array", "items": _ref("Msg")},
            "next_offset": _INT0,
            "start_offset": _INT0,
            "end_offset": _INT0,
        },
    },
    "SubscriptionInfo": {
        "type": "object",
        "required": [
            "topic",
            "name",
            "ack_floor",
            "pending",
            "lag",
            "ack_wait",
            "max_deliveries",
            "dead_letter_topic",
            "created_at",
        ],
        "properties": {
            "topic": _NAME,
            "name": _NAME,
            "ack_floor": _INT0,
            "pending": _INT0,
            "lag": _INT0,
            "ack_wait": {"type": "number"},
            "max_deliveries": _NULLABLE_INT,
            "dead_letter_topic": {"type": ["string", "null"]},
            "created_at": {"type": "integer"},
        },
    },
    "SubscriptionSettings": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "start": {
                "description": '"earliest" (default), "latest", an offset, or an ISO 8601 time',
                "oneOf": [
                    {"type": "string", "enum": ["earliest", "latest"]},
                    _INT0,
                    {"type": "string", "format": "date-time"},
                ],
            },
            "ack_wait": {"type": "number", "exclusiveMinimum": 0, "default": 30},
            "max_deliveries": _NULLABLE_INT,
            "dead_letter_topic": {"type": ["string", "null"]},
        },
    },
}

_ERROR_TEXT = {
    400: "Invalid request or name (`invalid_request`, `invalid_name`)",
    401: "Missing or unknown token (`unauthorized`)",
    403: "The token lacks the permission (`forbidden`)",
    404: "No such topic or subscription (`topic_not_found`, `subscription_not_found`)",
    408: "The request body arrived too slowly (`request_timeout`)",
    409: "Exists with different settings (`topic_exists`, `subscription_exists`)",
    413: "Body, message or batch over its limit (`payload_too_large`)",
    415: "The body must be application/json (`unsupported_media_type`)",
    416: "Offset outside [start_offset, end_offset] (`offset_out_of_range`)",
    500: "Corrupt data (`corrupt_data`) or a server fault (`internal_error`)",
    503: "Too many waiting requests (`overloaded`, Retry-After), `shutting_down`, or the "
    "storage failed to write (`storage_unavailable`, Retry-After; nothing was stored)",
    507: "No space left to write (`storage_full`)",
}

_SUBS = "/topics/{topic}/subscriptions/{sub}"

DOCUMENT: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "logstore",
        "version": "1",
        "description": (
            "A durable, log-structured message store. Every error is "
            '{"error": code, "message": text}. With an auth file, every endpoint but '
            "/health needs `Authorization: Bearer <token>`."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/health": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "Up"
                    ),
                    "503": {"$ref": "#/components/responses/E503"},
                },
            }
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (needs admin or the metrics permission)",
                {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                {"200": _json({"type": "object"}, "The OpenAPI document")},
            )
        },
        "/topics": {
            "get": _op(
                "List the topics this token may see",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["topics"],
                            "properties": {"topics": {"type": "array", "items": _ref("TopicInfo")}},
                        },
                        "Topics",
                    )
                },
            )
        },
        "/topics/{topic}": {
            "parameters": [_TOPIC],
            "put": _op(
                "Create a topic (admin)",
                {
                    "201": _json(_ref("TopicInfo"), "Created"),
                    "200": _json(_ref("TopicInfo"), "Exists with the same settings"),
                },
                400,
                408,
                409,
                413,
                415,
                requestBody=_body(_ref("TopicSettings"), required=False),
            ),
            "get": _op("Topic info", {"200": _json(_ref("TopicInfo"), "Info")}, 400, 404),
            "delete": _op(
                "Delete a topic and its subscriptions (admin)", {"204": _NO_BODY}, 400, 404
            ),
        },
        "/topics/{topic}/messages": {
            "parameters": [_TOPIC],
            "post": _op(
                "Publish: a JSON batch (atomic) or a raw body as one message",
                {
                    "201": _json(_ref("PublishResult"), "Stored (durably under fsync=always)"),
                },
                400,
                404,
                408,
                413,
                507,
                parameters=[
                    _param("key", "query", {"type": "string"}, "Key of a raw-body message"),
                    _param(
                        "Idempotency-Key",
                        "header",
                        {"type": "string", "maxLength": 256},
                        "A retry with the same key within 2 minutes answers the first result",
                    ),
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("PublishBatch")},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                        "text/plain": {"schema": {"type": "string"}},
                    },
                },
            ),
            "get": _op(
                "Replay from an offset or time; long poll at the end with wait",
                {"200": _json(_ref("MessagePage"), "Messages (empty when wait ran out)")},
                400,
                404,
                416,
                parameters=[
                    _param("offset", "query", _INT0, "First offset (default start_offset)"),
                    _param("timestamp", "query", _INT0, "Start at the first message at/after"),
                    _MAX,
                    _param("max_bytes", "query", {"type": "integer", "minimum": 1}, "Byte cap"),
                    _WAIT,
                ],
            ),
        },
        "/topics/{topic}/events": {
            "parameters": [_TOPIC],
            "get": _op(
                "Server-Sent Events: id = offset, data = Msg JSON; resumes after Last-Event-ID",
                {
                    "200": {
                        "description": "An endless event stream (default: new messages only)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                400,
                404,
                416,
                parameters=[
                    _param("offset", "query", _INT0, "First offset (default end_offset)"),
                    _param("timestamp", "query", _INT0, "Start at the first message at/after"),
                    _param(
                        "Last-Event-ID", "header", {"type": "string"}, "Resume after this offset"
                    ),
                ],
            ),
        },
        "/topics/{topic}/subscriptions": {
            "parameters": [_TOPIC],
            "get": _op(
                "List subscriptions",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["subscriptions"],
                            "properties": {
                                "subscriptions": {
                                    "type": "array",
                                    "items": _ref("SubscriptionInfo"),
                                }
                            },
                        },
                        "Subscriptions",
                    )
                },
                400,
                404,
            ),
        },
        _SUBS: {
            "parameters": [_TOPIC, _SUB],
            "put": _op(
                "Subscribe",
                {
                    "201": _json(_ref("SubscriptionInfo"), "Created"),
                    "200": _json(_ref("SubscriptionInfo"), "Exists with the same settings"),
                },
                400,
                404,
                408,
                409,
                413,
                415,
                requestBody=_body(_ref("SubscriptionSettings"), required=False),
            ),
            "get": _op("Subscription info", {"200": _INFO}, 400, 404),
            "delete": _op("Unsubscribe", {"204": _NO_BODY}, 400, 404),
        },
        _SUBS + "/poll": {
            "parameters": [_TOPIC, _SUB],
            "post": _op(
                "Lease the next messages for ack_wait seconds; long poll with wait",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["messages"],
                            "properties": {
                                "messages": {"type": "array", "items": _ref("Delivery")}
                            },
                        },
                        "Leased messages (empty when wait ran out)",
                    )
                },
                400,
                404,
                parameters=[_MAX, _WAIT],
            ),
        },
        _SUBS + "/ack": {
            "parameters": [_TOPIC, _SUB],
            "post": _op(
                "Acknowledge offsets, lease tokens and/or every offset below up_to",
                {"200": _INFO},
                400,
                404,
                408,
                413,
                415,
                requestBody=_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {
                            "offsets": _OFFSETS,
                            "leases": _LEASES,
                            "up_to": _INT0,
                        },
                    }
                ),
            ),
        },
        _SUBS + "/nack": {
            "parameters": [_TOPIC, _SUB],
            "post": _op(
                "End these leases now: deliver the messages again",
                {"200": _INFO},
                400,
                404,
                408,
                413,
                415,
                requestBody=_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {"offsets": _OFFSETS, "leases": _LEASES},
                    }
                ),
            ),
        },
        _SUBS + "/seek": {
            "parameters": [_TOPIC, _SUB],
            "post": _op(
                "Move the subscription to an offset, a time or an end (replay)",
                {"200": _INFO},
                400,
                404,
                408,
                413,
                415,
                requestBody=_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "maxProperties": 1,
                        "properties": {
                            "offset": _INT0,
                            "timestamp": _INT0,
                            "position": {"enum": ["earliest", "latest"]},
                        },
                    }
                ),
            ),
        },
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            f"E{status}": _json(_ref("Error"), text) for status, text in _ERROR_TEXT.items()
        },
    },
}

DOCUMENT_BYTES = json.dumps(DOCUMENT, indent=1).encode()
