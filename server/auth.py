"""Bearer-token authentication and per-topic permissions, from a JSON auth file.

The file (see the README) lists tokens, each either in clear (`"token"`) or as a SHA-256
hash (`"token_hash": "sha256:<hex>"`), with what it may do: `admin` (everything),
`publish` / `subscribe` (lists of topic patterns where `*` matches any run of characters),
and `metrics` (read /metrics). Only hashes are kept in memory: a presented token is hashed
and compared with every entry by `hmac.compare_digest`, so the time an answer takes does not
tell how much of a guess was right, and an unknown token and a wrong one get the same 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ApiError

_HASH_PREFIX = "sha256:"
_ENTRY_KEYS = {"name", "token", "token_hash", "admin", "publish", "subscribe", "metrics"}


class AuthFileError(ValueError):
    """The auth file cannot be used; the message says which entry and why."""


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token: what the server keeps and compares, never the token.
    (`surrogateescape`: a header's undecodable bytes hash as themselves instead of failing.)"""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def hash_token(token: str) -> str:
    """The `token_hash` form of a token, for writing auth files (`logstore hash-token`)."""
    return _HASH_PREFIX + token_digest(token).hex()


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else re.escape(c) for c in text), re.DOTALL)


@dataclass(frozen=True)
class Grant:
    """What one token may do."""

    name: str
    admin: bool = False
    publish: tuple[re.Pattern[str], ...] = ()
    subscribe: tuple[re.Pattern[str], ...] = ()
    metrics: bool = False
    publish_globs: tuple[str, ...] = ()
    """`publish` as the auth file writes it (GET /whoami shows a token its own grant)."""
    subscribe_globs: tuple[str, ...] = ()

    def may(self, action: str, topic: str) -> bool:
        """`action` is "publish" or "subscribe"."""
        if self.admin:
            return True
        patterns = self.publish if action == "publish" else self.subscribe
        return any(p.fullmatch(topic) for p in patterns)

    def sees(self, topic: str) -> bool:
        return self.may("publish", topic) or self.may("subscribe", topic)


ANYONE = Grant(name="anyone", admin=True, metrics=True)
"""The grant of every request when the server runs without an auth file."""


def require(grant: Grant, action: str, topic: str) -> None:
    """403 unless `grant` may do `action` ("admin", "publish", "subscribe") on `topic`."""
    allowed = grant.admin if action == "admin" else grant.may(action, topic)
    if not allowed:
        what = "administer topics" if action == "admin" else f"{action} on topic {topic!r}"
        raise ApiError(403, "forbidden", f"this token may not {what}")


class Authenticator:
    """Maps `Authorization: Bearer <token>` headers to grants."""

    def __init__(self, entries: Iterable[tuple[bytes, Grant]]):
        self._entries = list(entries)

    @classmethod
    def from_file(cls, path: str) -> Authenticator:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise AuthFileError(f"cannot read auth file {path}: {exc}") from None
        return cls.from_document(doc)

    @classmethod
    def from_document(cls, doc: object) -> Authenticator:
        if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
            raise AuthFileError('the auth file must be a JSON object {"tokens": [...]}')
        entries = []
        for i, item in enumerate(doc["tokens"]):
            entries.append(_parse_entry(i, item))
        digests = [d for d, _ in entries]
        if len(set(digests)) != len(digests):
            raise AuthFileError("the auth file lists the same token twice")
        return cls(entries)

    def authenticate(self, header: str | None) -> Grant:
        """The grant of this Authorization header; 401, always the same one, otherwise."""
        token = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
        digest = token_digest(token)
        found = None
        for known, grant in self._entries:  # no early exit: every entry costs the same
            if hmac.compare_digest(known, digest):
                found = grant
        if found is None or not token:
            raise ApiError(
                401,
                "unauthorized",
                "a valid token is required: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="logstore"'},
            )
        return found


def _parse_entry(i: int, item: object) -> tuple[bytes, Grant]:
    where = f"auth file entry {i}"
    if not isinstance(item, dict):
        raise AuthFileError(f"{where} must be an object")
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise AuthFileError(f"{where} has unknown fields {sorted(unknown)}")
    if ("token" in item) == ("token_hash" in item):
        raise AuthFileError(f'{where} needs exactly one of "token" and "token_hash"')
    if "token" in item:
        token = item["token"]
        if not isinstance(token, str) or not token:
            raise AuthFileError(f'{where}: "token" must be a non-empty string')
        digest = token_digest(token)
    else:
        text = item["token_hash"]
        hexdigest = text.removeprefix(_HASH_PREFIX) if isinstance(text, str) else ""
        if text == hexdigest or not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
            raise AuthFileError(f'{where}: "token_hash" must be "sha256:" and 64 hex digits')
        digest = bytes.fromhex(hexdigest)
    for flag in ("admin", "metrics"):
        if not isinstance(item.get(flag, False), bool):
            raise AuthFileError(f'{where}: "{flag}" must be true or false')
    lists = {}
    for action in ("publish", "subscribe"):
        patterns = item.get(action, [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise AuthFileError(f'{where}: "{action}" must be a list of topic patterns')
        lists[action] = tuple(_pattern(p) for p in patterns)
        lists[f"{action}_globs"] = tuple(patterns)
    grant = Grant(
        name=str(item.get("name", f"token {i}")),
        admin=item.get("admin", False),
        metrics=item.get("metrics", False),
        **lists,
    )
    return digest, grant
