"""GET /, /docs and /dashboard/{file}: the dashboard and the HTTP reference page, for people
(docs/DASHBOARD.md).

The pages are plain HTML, CSS and JavaScript in `dashboard/` beside this module (package
data: no build step), read once at import and served from memory. They hold no data, so they
need no token even with an auth file: the page asks the person for one and sends it with
every API call it makes. Every answer carries a Content-Security-Policy that lets the page
load and fetch only from this server, so nothing can come from another origin.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .state import STATE

_FOLDER = resources.files(__package__).joinpath("dashboard")
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_AUTH_MARK = b'data-auth="off"'
"""Each HTML page names in its <body> whether the server wants a token, so the page asks
for one before its first API call instead of learning it from a 401."""


def _suffix(name: str) -> str:
    return name[name.rfind(".") :]


def _read_files() -> dict[str, bytes]:
    return {
        item.name: item.read_bytes()
        for item in _FOLDER.iterdir()
        if item.is_file() and _suffix(item.name) in _TYPES
    }


_FILES = _read_files()
ASSETS: dict[str, tuple[bytes, str]] = {
    name: (body, _TYPES[_suffix(name)])
    for name, body in sorted(_FILES.items())
    if _suffix(name) != ".html"
}
"""What /dashboard/{file} serves: file name -> (bytes, content type)."""

_PAGES = {
    page: {False: _FILES[page], True: _FILES[page].replace(_AUTH_MARK, b'data-auth="on"')}
    for page in ("index.html", "docs.html")
}

PUBLIC_PATHS = frozenset({"/", "/docs", *(f"/dashboard/{name}" for name in ASSETS)})
"""The paths that need no token even with an auth file."""


async def dashboard(request: web.Request) -> web.Response:
    return _page(request, "index.html")


async def docs(request: web.Request) -> web.Response:
    return _page(request, "docs.html")


async def asset(request: web.Request) -> web.Response:
    found = ASSETS.get(request.match_info["file"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    charset = "utf-8" if content_type.startswith("text/") else None
    return web.Response(body=body, content_type=content_type, charset=charset, headers=_HEADERS)


def _page(request: web.Request, page: str) -> web.Response:
    secured = request.app[STATE].config.auth is not None
    return web.Response(
        body=_PAGES[page][secured], content_type="text/html", charset="utf-8", headers=_HEADERS
    )
