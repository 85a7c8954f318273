"""The OpenAPI 3.1 description of the HTTP API: the one place it is written down.

Tests check it with openapi-spec-validator, compare its paths and methods with the routes
the app really serves (`app.ROUTES`), and validate real answers against its schemas.
"""

from __future__ import annotations

import json

from logstore import MAX_BATCH_MESSAGES, MAX_IDEMPOTENCY_KEY, NAME_PATTERN, binary

from .pages import ASSETS
from .params import LEASE_PATTERN, MAX_QUERY_INT


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FRAMES = {"schema": {"type": "string", "format": "binary"}}
"""The binary form (docs/FORMAT.md): stored frames, sent with `Accept` of its media type."""


def _or_frames(response: dict, headers: dict | None = None) -> dict:
    """`response` with the binary form as a second media type (and its headers)."""
    content = {**response["content"], binary.CONTENT_TYPE: _FRAMES}
    out = {**response, "content": content}
    if headers:
        out["headers"] = headers
    return out


def _offset_header(what: str) -> dict:
    return {"description": what + " (binary form only)", "schema": _INT0}


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
_QUERY_INT0 = {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT}
_SECONDS = {"type": "number", "minimum": 0}
_MAX = _param(
    "max",
    "query",
    {"type": "integer", "minimum": 1},
    "Most messages; any larger value is lowered to the server's cap (default 10,000)",
)
_WAIT = _param("wait", "query", _SECONDS, "Seconds to wait for a message (capped, default 0)")
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 1}
_OFFSETS = {"type": "array", "items": _INT0}
_LEASE = {
    "type": "string",
    "pattern": f"^{LEASE_PATTERN.pattern}$",
    "description": "Opaque token of one lease: ack and nack take it (in leases) in place of "
    "the offset",
}
_LEASES = {
    "type": "array",
    "items": _LEASE,
    "description": "Lease tokens (a delivery's lease); a token of an expired lease still "
    "acknowledges its offset, and nacks nothing",
}
_BASE64 = {
    "type": "string",
    "contentEncoding": "base64",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}
_START = _param(
    "start",
    "query",
    {
        "type": "object",
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {"offset": _QUERY_INT0, "timestamp": _QUERY_INT0},
    },
    "offset=N (first offset) or timestamp=ms (the first message at or after it), not both",
)
_START["style"], _START["explode"] = "form", True
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
        "description": "null or absent: the default",
        "properties": {
            "name": {"type": ["string", "null"], "maxLength": 256, "description": "Any text"},
            "retention_ms": _NULLABLE_INT,
            "retention_bytes": _NULLABLE_INT,
            "segment_bytes": {"type": ["integer", "null"], "minimum": 4096},
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
                    "lease": _LEASE,
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
            "value_b64": _BASE64,
            "key": {"type": ["string", "null"], "description": "null: no key"},
            "key_b64": _BASE64,
            "headers": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string"},
                "description": "null: no headers",
            },
        },
        "oneOf": [{"required": ["value"]}, {"required": ["value_b64"]}],
        "not": {"required": ["key", "key_b64"]},
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
            "dead_letter_topic": {
                "type": ["string", "null"],
                "pattern": NAME_PATTERN.pattern,
                "description": "A topic id other than the subscription's: messages delivered "
                "max_deliveries times are published there (so it needs max_deliveries)",
            },
        },
        "if": {"required": ["dead_letter_topic"], "properties": {"dead_letter_topic": _NAME}},
        "then": {"required": ["max_deliveries"], "properties": {"max_deliveries": _INT0}},
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
    415: "The body must be application/json, with no Content-Encoding (`unsupported_media_type`)",
    416: "Offset outside [start_offset, end_offset] (`offset_out_of_range`)",
    500: "Corrupt data (`corrupt_data`) or a server fault (`internal_error`)",
    503: "Too many waiting requests (`overloaded`, Retry-After), `shutting_down`, or the "
    "storage failed to write (`storage_unavailable`, Retry-After; nothing was stored)",
    507: "No space left to write (`storage_full`)",
}

_SUBS = "/topics/{topic}/subscriptions/{sub}"
_EVENT = {
    "type": "object",
    "description": "One event of the stream: id = the offset, data = the Msg JSON; an error "
    "ends the stream as an event named error whose data is an Error",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string", "enum": ["message", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}

_GRANT = {
    "type": "object",
    "required": ["name", "auth", "admin", "metrics", "publish", "subscribe"],
    "properties": {
        "name": {"type": "string", "description": "The token's name in the auth file"},
        "auth": {"type": "boolean", "description": "false: no auth file, every request may all"},
        "admin": {"type": "boolean", "description": "Everything, whatever the lists say"},
        "metrics": {"type": "boolean", "description": "May read /metrics"},
        "publish": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Topic patterns it may publish to (* matches any run of characters)",
        },
        "subscribe": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Topic patterns it may read, subscribe to and seek",
        },
    },
}
_ASSET_TYPES = sorted({content_type for _, content_type in ASSETS.values()})


def _page(summary: str, *content_types: str) -> dict:
    """A static part of the pages for people: no token needed, even with an auth file."""
    return {
        "summary": summary,
        "security": [],
        "responses": {
            "200": {
                "description": "The file",
                "content": {t: {"schema": {"type": "string"}} for t in content_types},
            },
            "404": {"$ref": "#/components/responses/E404"},
        },
    }


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
                        {
                            "type": "object",
                            "properties": {
                                "status": {"const": "ok"},
                                "storage": {
                                    "type": "object",
                                    "description": "Cluster mode only: the NATS cluster "
                                    "connection and how cluster mode differs "
                                    "(docs/CLUSTER.md)",
                                },
                            },
                        },
                        "Up",
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
        "/whoami": {
            "get": _op(
                "What this token may do: the dashboard offers only that",
                {"200": _json(_GRANT, "The token's permissions")},
            )
        },
        "/": {"get": _page("The dashboard (docs/DASHBOARD.md)", "text/html")},
        "/docs": {"get": _page("This document as a page for people", "text/html")},
        "/dashboard/{file}": {
            "get": {
                **_page("A file of the pages: script, style sheet or icon", *_ASSET_TYPES),
                "parameters": [
                    _param("file", "path", {"type": "string", "enum": sorted(ASSETS)}, "File")
                ],
            }
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
                415,
                507,
                parameters=[
                    _param("key", "query", {"type": "string"}, "Key of a raw-body message"),
                    _param(
                        "Idempotency-Key",
                        "header",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                        "A retry with the same key within 2 minutes answers the first result",
                    ),
                ],
                requestBody={
                    "required": False,
                    "description": (
                        "A JSON batch; one frame of the binary form (docs/FORMAT.md), checked "
                        "and appended as one batch; or no body or any other content type: "
                        "one message"
                    ),
                    "content": {
                        "application/json": {"schema": _ref("PublishBatch")},
                        binary.CONTENT_TYPE: _FRAMES,
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                        "text/plain": {"schema": {"type": "string"}},
                    },
                },
            ),
            "get": _op(
                "Replay from an offset or time; long poll at the end with wait",
                {
                    "200": _or_frames(
                        _json(_ref("MessagePage"), "Messages (empty when wait ran out)"),
                        {
                            binary.NEXT_OFFSET: _offset_header("next_offset"),
                            binary.START_OFFSET: _offset_header("start_offset"),
                            binary.END_OFFSET: _offset_header("end_offset"),
                        },
                    )
                },
                400,
                404,
                416,
                parameters=[
                    _START,
                    _MAX,
                    _param(
                        "max_bytes",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_INT},
                        "Byte cap",
                    ),
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
                        "content": {"text/event-stream": {"schema": _EVENT}},
                    }
                },
                400,
                404,
                416,
                parameters=[
                    _START,
                    _param(
                        "Last-Event-ID",
                        "header",
                        {"type": "string", "pattern": "^\\s*([0-9]{1,19}\\s*)?$"},
                        "Resume after this offset (the id of the last event received)",
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
                416,
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
                    "200": _or_frames(
                        _json(
                            {
                                "type": "object",
                                "required": ["messages"],
                                "properties": {
                                    "messages": {"type": "array", "items": _ref("Delivery")}
                                },
                            },
                            "Leased messages (empty when wait ran out)",
                        )
                    )
                },
                400,
                404,
                parameters=[
                    _MAX,
                    _WAIT,
                    _param(
                        "max_bytes",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_INT},
                        "Lease at most about this many bytes of values and keys (always one "
                        "message); lowers the server's page, never raises it",
                    ),
                ],
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
                416,
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
                416,
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
                416,
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

_OPERATION_IDS = {
    ("get", "/health"): "health",
    ("get", "/metrics"): "metrics",
    ("get", "/openapi.json"): "openapi",
    ("get", "/whoami"): "whoami",
    ("get", "/"): "dashboard",
    ("get", "/docs"): "docsPage",
    ("get", "/dashboard/{file}"): "dashboardFile",
    ("get", "/topics"): "listTopics",
    ("put", "/topics/{topic}"): "createTopic",
    ("get", "/topics/{topic}"): "getTopic",
    ("delete", "/topics/{topic}"): "deleteTopic",
    ("post", "/topics/{topic}/messages"): "publish",
    ("get", "/topics/{topic}/messages"): "readMessages",
    ("get", "/topics/{topic}/events"): "events",
    ("get", "/topics/{topic}/subscriptions"): "listSubscriptions",
    ("put", _SUBS): "subscribe",
    ("get", _SUBS): "getSubscription",
    ("delete", _SUBS): "unsubscribe",
    ("post", _SUBS + "/poll"): "poll",
    ("post", _SUBS + "/ack"): "ack",
    ("post", _SUBS + "/nack"): "nack",
    ("post", _SUBS + "/seek"): "seek",
}


def _links(targets: tuple[str, ...], parameters: dict[str, str]) -> dict:
    """Links from an answer to the operations that can use what it names (schemathesis
    follows them in its stateful phase)."""
    return {
        f"To{t[0].upper()}{t[1:]}": {"operationId": t, "parameters": parameters} for t in targets
    }


_TOPIC_USERS = (
    "getTopic",
    "deleteTopic",
    "publish",
    "readMessages",
    "listSubscriptions",
    "subscribe",
)
_SUB_USERS = ("getSubscription", "unsubscribe", "poll", "ack", "nack", "seek")
_LINKS = {
    ("put", "/topics/{topic}"): _links(_TOPIC_USERS, {"topic": "$response.body#/id"}),
    ("post", "/topics/{topic}/messages"): _links(
        ("readMessages", "subscribe"), {"topic": "$request.path.topic"}
    ),
    ("put", _SUBS): _links(
        _SUB_USERS, {"topic": "$response.body#/topic", "sub": "$response.body#/name"}
    ),
    ("post", _SUBS + "/poll"): _links(
        ("ack", "nack", "seek"), {"topic": "$request.path.topic", "sub": "$request.path.sub"}
    ),
}


def _name_and_link(document: dict) -> None:
    """Give every operation its id, and the success answers of some their links."""
    for (method, path), operation_id in _OPERATION_IDS.items():
        operation = document["paths"][path][method]
        operation["operationId"] = operation_id
        links = _LINKS.get((method, path))
        for status, response in operation["responses"].items():
            if links and status.startswith("2"):
                operation["responses"][status] = {**response, "links": links}


def _without_auth(document: dict) -> dict:
    """The document of a server started without an auth file: no endpoint needs a token."""
    open_document = json.loads(json.dumps(document))
    del open_document["security"], open_document["components"]["securitySchemes"]
    for item in open_document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    open_document["info"]["description"] = (
        'A durable, log-structured message store. Every error is {"error": code, "message": '
        "text}. This server runs without an auth file: no endpoint needs a token."
    )
    return open_document


_name_and_link(DOCUMENT)
DOCUMENT_BYTES = json.dumps(DOCUMENT, indent=1).encode()
"""What /openapi.json serves when the server has an auth file."""
OPEN_DOCUMENT = _without_auth(DOCUMENT)
OPEN_DOCUMENT_BYTES = json.dumps(OPEN_DOCUMENT, indent=1).encode()
"""What /openapi.json serves when it has none."""
