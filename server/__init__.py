"""The HTTP front end of logstore (aiohttp), installed as `logstore_server`: SPEC §6 over an
embedded `logstore.Store`, and the `logstore` command (`cli`).

    from logstore_server import Limits, ServerConfig, make_app
    app = make_app(store, ServerConfig(limits=Limits(), auth=None))

`logstore serve` runs it (see `serve`). It uses only the public `logstore` API; the library
never imports this package. The names below load their modules (and aiohttp) on first use, so
`logstore read` and the other commands that need no server start without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import ROUTES, make_app
    from .auth import Authenticator, AuthFileError, hash_token
    from .limits import Limits
    from .serve import BindRefused, run, start
    from .state import ServerConfig

_HOMES = {
    "ROUTES": "app",
    "make_app": "app",
    "Authenticator": "auth",
    "AuthFileError": "auth",
    "hash_token": "auth",
    "Limits": "limits",
    "BindRefused": "serve",
    "run": "serve",
    "start": "serve",
    "ServerConfig": "state",
}

__all__ = [
    "ROUTES",
    "AuthFileError",
    "Authenticator",
    "BindRefused",
    "Limits",
    "ServerConfig",
    "hash_token",
    "make_app",
    "run",
    "start",
]


def __getattr__(name: str) -> object:
    """Import the module that defines `name` when it is first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
