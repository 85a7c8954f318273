"""Names, limits and defaults shared by the library, the server and the CLI."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from .errors import InvalidArgument, InvalidName

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")
MAX_DISPLAY_NAME = 256
FSYNC_POLICIES = ("always", "interval", "never")
DEFAULT_SEGMENT_BYTES = 64 * 2**20
MIN_SEGMENT_BYTES = 4096
DEFAULT_MAX_MESSAGE_BYTES = 2**20
MAX_BATCH_MESSAGES = 10_000
MAX_IDEMPOTENCY_KEY = 256  # characters
IDEMPOTENCY_WINDOW_SECONDS = 120.0  # how long a written batch's key answers its retries
MAX_IDEMPOTENCY_KEYS = 100_000  # per store (the local engine; oldest dropped first)


_CHECKED: set[str] = set()  # names that passed: every write checks its topic id again
_CHECKED_LIMIT = 65536


def check_name(name: object, what: str = "topic id") -> str:
    """`name` if it is a valid topic id / subscription name; `InvalidName` otherwise."""
    if type(name) is str and name in _CHECKED:
        return name
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid {what} {name!r}: use 1 to 249 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    if len(_CHECKED) >= _CHECKED_LIMIT:
        _CHECKED.clear()
    _CHECKED.add(name)
    return name


def check_display_name(name: object, default: str) -> str:
    """A topic's display name (`default` when None): text of at most MAX_DISPLAY_NAME
    characters that UTF-8 can encode (no lone surrogates), so every listing can print it."""
    if name is None:
        return default
    if isinstance(name, str) and len(name) <= MAX_DISPLAY_NAME:
        try:
            name.encode()
        except UnicodeEncodeError:
            raise InvalidArgument(
                f"topic name {name!r} is not valid Unicode text (it holds a lone surrogate)"
            ) from None
        return name
    raise InvalidArgument(f"topic name must be text of at most {MAX_DISPLAY_NAME} chars")


def check_optional_positive(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive integer or None, not {value!r}")
    return value


@dataclass
class Stats:
    """Counters a store keeps for metrics and for tests of its recovery."""

    fsyncs: int = 0
    fsync_seconds: float = 0.0
    fsync_max_seconds: float = 0.0
    truncations: int = 0
    truncated_bytes: int = 0
    index_rebuilds: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fsynced(self, seconds: float) -> None:
        with self._lock:
            self.fsyncs += 1
            self.fsync_seconds += seconds
            self.fsync_max_seconds = max(self.fsync_max_seconds, seconds)

    def rebuilt_index(self) -> None:
        with self._lock:
            self.index_rebuilds += 1

    def truncated(self, nbytes: int) -> None:
        with self._lock:
            self.truncations += 1
            self.truncated_bytes += nbytes
