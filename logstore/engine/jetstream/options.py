"""The `nats://` URL of a cluster store and its options.

    nats://h1:4222,nats://h2:4222,h3:4222?replicas=3&namespace=prod&publish_timeout=15

Options (all optional): `replicas`, copies of each new topic (default 3); `namespace`, a
name that keeps this store's topics apart from other stores on the same cluster;
`publish_timeout`, seconds a publish keeps retrying through a leader election before it
fails with `StorageError` (default 15: elections take 4-9 s); `request_timeout`, seconds
one request to the cluster may take (default 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from ...config import check_name
from ...errors import InvalidArgument

SCHEMES = ("nats://", "tls://")


def is_cluster_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    servers: tuple[str, ...]
    replicas: int = 3
    namespace: str | None = None
    publish_timeout: float = 15.0
    request_timeout: float = 5.0

    @property
    def url(self) -> str:
        """The URL without credentials, for logs, /health and errors."""
        return ",".join(_without_credentials(s) for s in self.servers)

    @classmethod
    def from_url(cls, url: str) -> ClusterOptions:
        head, _, query = url.partition("?")
        servers = tuple(s if s.startswith(SCHEMES) else f"nats://{s}" for s in head.split(",") if s)
        if not servers:
            raise InvalidArgument(f"no server in the cluster URL {url!r}")
        options: dict[str, object] = {}
        for name, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
            value = values[-1]
            if name == "replicas":
                options[name] = _number(name, value, int, 1, 5)
            elif name in ("publish_timeout", "request_timeout"):
                options[name] = _number(name, value, float, 0.1, 3600.0)
            elif name == "namespace":
                options[name] = check_name(value, "namespace")
            else:
                raise InvalidArgument(
                    f"unknown option {name!r} in the cluster URL: use replicas, namespace, "
                    "publish_timeout or request_timeout"
                )
        return cls(servers, **options)  # type: ignore[arg-type]


def _number(name: str, text: str, kind: type, low: float, high: float) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidArgument(
            f"cluster URL option {name}={text!r}: give a number from {low:g} to {high:g}"
        )
    return value


def _without_credentials(server: str) -> str:
    scheme, _, rest = server.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
