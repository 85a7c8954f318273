"""What every server system in the comparison provides, so one workload runs on all of them.

A system is a module (`compare_logstore`, `compare_redis`, `compare_nats`) with:

- `NAME`: how tables and charts call it;
- `missing() -> str | None`: why it cannot run here (binary or client absent), else None;
- `start(root, durable) -> Server`: its server on a free 127.0.0.1 port, data under `root`;
- `connect(server) -> Client`: one client connection, in the caller's event loop.

Each workload's code is written once against `Client`, so the same payloads cross the
same number of round trips on every system: only the protocol differs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Server:
    """A running server process this runner started (stopped by PID via `compare_procs`)."""

    system: str
    port: int
    pid: int
    version: str
    settings: dict[str, str] = field(default_factory=dict)
    """What a reader needs to repeat the run: durability and tuning, as verified."""
    other_pids: tuple[int, ...] = ()
    """The other processes of a server made of several (a cluster's other nodes)."""


class Client(abc.ABC):
    """One client connection. Every call waits for the server's answer to it."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_topic(self, topic: str) -> None:
        """Create an empty topic / stream named `topic`."""

    @abc.abstractmethod
    async def delete_topic(self, topic: str) -> None:
        """Delete it and its data, so a long run does not fill the memory or the disk."""

    @abc.abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None:
        """One message, one request; returns once the server acknowledged it."""

    @abc.abstractmethod
    async def publish_batch(self, topic: str, payloads: list[bytes]) -> None:
        """Many messages in one request or pipeline; returns once all are acknowledged."""

    @abc.abstractmethod
    async def replay(self, topic: str, limit: int, deadline: float) -> int:
        """Read from the first message on, in the largest pages allowed; messages read.

        Stops after `limit` messages, at the end of the topic, or at `deadline`
        (`time.perf_counter()`), whichever comes first.
        """

    @abc.abstractmethod
    async def consume(self, topic: str, group: str, limit: int, batch: int, deadline: float) -> int:
        """Create a durable consumer `group` from the first message and take messages in
        batches, acknowledging each batch before the next; messages consumed.
        """

    @abc.abstractmethod
    async def follow(self, topic: str, deliver: Callable[[bytes], None]) -> None:
        """Take every message from the first one on, waiting for new ones (long poll or
        push, whichever the system offers), and hand each payload to `deliver`, until
        cancelled. Used on a fresh topic, so it cannot miss a message published before it
        began to wait.
        """
