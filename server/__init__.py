"""The HTTP front end of logstore (aiohttp): SPEC §6 over an embedded `logstore.Store`.

    from server import make_app, ServerConfig
    app = make_app(store, ServerConfig(limits=Limits(), auth=None))

`logstore serve` runs it (see `serve`). The library (`logstore`) never imports this package.
"""

from .app import ROUTES, make_app
from .auth import Authenticator, AuthFileError, hash_token
from .limits import Limits
from .serve import BindRefused, run, start
from .state import ServerConfig

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
