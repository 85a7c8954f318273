"""`make_app(store, config)`: the aiohttp application of SPEC §6, over one open `Store`.

The app does not own the store: whoever opened it closes it after the app's cleanup (see
`serve`). Shutdown in order: `begin_shutdown` answers waiting long polls and ends event
streams, new requests get 503, the runner waits for requests in progress, then the storage
thread pool stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from logstore import Store

from . import events, ops, pages, subscriptions, topics
from .auth import ANYONE
from .errors import ApiError, error_response
from .keys import GRANT
from .state import STATE, ServerConfig, ServerState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: list[tuple[str, str, Handler]] = [
    # aiohttp tries the /topics/... patterns in this order: the busiest come first.
    ("POST", "/topics/{topic}/messages", topics.publish),
    ("GET", "/topics/{topic}/messages", topics.read_messages),
    ("POST", "/topics/{topic}/subscriptions/{sub}/poll", subscriptions.poll),
    ("POST", "/topics/{topic}/subscriptions/{sub}/ack", subscriptions.ack),
    ("GET", "/topics/{topic}/events", events.events),
    ("PUT", "/topics/{topic}", topics.create_topic),
    ("GET", "/topics/{topic}", topics.get_topic),
    ("DELETE", "/topics/{topic}", topics.delete_topic),
    ("POST", "/topics/{topic}/subscriptions/{sub}/nack", subscriptions.nack),
    ("POST", "/topics/{topic}/subscriptions/{sub}/seek", subscriptions.seek),
    ("PUT", "/topics/{topic}/subscriptions/{sub}", subscriptions.subscribe),
    ("GET", "/topics/{topic}/subscriptions/{sub}", subscriptions.get_subscription),
    ("DELETE", "/topics/{topic}/subscriptions/{sub}", subscriptions.unsubscribe),
    ("GET", "/topics/{topic}/subscriptions", subscriptions.list_subscriptions),
    ("GET", "/topics", topics.list_topics),
    ("GET", "/health", ops.health),
    ("GET", "/metrics", ops.get_metrics),
    ("GET", "/openapi.json", ops.get_openapi),
    ("GET", "/whoami", ops.whoami),
    ("GET", "/", pages.dashboard),
    ("GET", "/docs", pages.docs),
    ("GET", "/dashboard/{file}", pages.asset),
]
"""Every endpoint; the OpenAPI document is tested against this list."""

_PUBLIC = frozenset({"/health", *pages.PUBLIC_PATHS})


def make_app(store: Store, config: ServerConfig | None = None) -> web.Application:
    config = config or ServerConfig()
    app = web.Application(
        middlewares=[_middleware],
        client_max_size=config.limits.max_body_bytes,
    )
    state = app[STATE] = ServerState(store, config)
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD: the same answer without its body
        else:
            app.router.add_route(method, path, handler)

    async def start(app: web.Application) -> None:
        await state.start()

    async def shutdown(app: web.Application) -> None:
        state.begin_shutdown()

    async def cleanup(app: web.Application) -> None:
        await state.close()

    app.on_response_prepare.append(_name_server)
    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One middleware (each layer costs every request): lifecycle, authentication, errors."""
    state = request.app[STATE]
    try:
        _refuse_content_encoding(request)  # first: no answer may leave such a body unread
        public = request.path in _PUBLIC
        if state.shutting_down and not public:
            raise ApiError(
                503,
                "shutting_down",
                "the server is shutting down; retry shortly",
                headers={"Retry-After": str(state.limits.retry_after_seconds)},
            )
        auth = state.config.auth
        if auth is None:
            request[GRANT] = ANYONE
        elif not public:
            request[GRANT] = auth.authenticate(request.headers.get("Authorization"))
        return await handler(request)
    except Exception as exc:
        return error_response(exc, request)


_IDENTITY = ("", "identity")


def _refuse_content_encoding(request: web.Request) -> None:
    """415 for a body sent with any Content-Encoding but identity (docs/HTTP.md says why:
    the body limits count bytes as they arrive, and a compressed body would escape them).

    The body is not read, and the connection closes after the answer: aiohttp decodes
    gzip and deflate as data arrives, and draining a body that does not decode would only
    log its error."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is None or encoding.strip().lower() in _IDENTITY or not request.body_exists:
        return
    request.content.feed_eof()
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Encoding {encoding!r:.40} is not supported: send the body uncompressed",
        headers={"Connection": "close"},
    )


async def _name_server(request: web.Request, response: web.StreamResponse) -> None:
    """`Server: logstore`, not aiohttp's default naming Python's and aiohttp's versions."""
    response.headers["Server"] = "logstore"
