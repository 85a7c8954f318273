"""The NATS connection of a cluster store, on a private event loop thread.

nats-py is asyncio only, and the `Store` is synchronous and used from any thread, so the
connection lives on a loop of its own (`logstore-nats`): synchronous methods submit a
coroutine there and wait for it (`run`), asyncio callers await it from their own loop
(`run_async`, which never blocks theirs). nats-py reconnects by itself; while it is
disconnected requests fail, and the engine's bounded retries ride that out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ...errors import StoreClosed
from .options import ClusterOptions

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_SECONDS = 10.0


class Connection:
    """One NATS connection and the loop thread it runs on. Thread-safe."""

    def __init__(self, options: ClusterOptions):
        import nats  # only a cluster store needs nats-py

        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="logstore-nats", daemon=True
        )
        self.thread.start()
        self.reconnects = 0
        self.disconnects = 0
        self._closed = False
        self._calls: set[concurrent.futures.Future] = set()
        try:
            self.nc = self.run(self._connect(nats), CONNECT_SECONDS * 2)
        except BaseException:
            self._stop_loop()
            raise

    async def _connect(self, nats: Any) -> Any:
        async def disconnected() -> None:
            self.disconnects += 1
            if not self._closed:
                log.warning("disconnected from the NATS cluster %s", self.options.url)

        async def reconnected() -> None:
            self.reconnects += 1
            log.info("reconnected to the NATS cluster at %s", self.nc.connected_url.netloc)

        async def error(exc: Exception) -> None:
            log.warning("NATS connection: %s", exc)

        try:
            return await nats.connect(
                list(self.options.servers),
                name="logstore",
                connect_timeout=CONNECT_SECONDS / 4,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:
            raise ConnectionError(
                f"cannot connect to the NATS cluster at {self.options.url}: {exc}"
            ) from None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the connection's loop and wait for its result (any thread but
        that loop's own). `StoreClosed` once the store closes, also for calls waiting."""
        future = self._submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            if self._closed:
                raise StoreClosed() from None
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the connection's loop from another event loop; cancelling the
        awaiting task cancels it there."""
        future = self._submit(coro)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                raise StoreClosed() from None
            raise

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
        if self._closed:
            coro.close()
            raise StoreClosed()
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        return future

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    @property
    def connected_server(self) -> str | None:
        url = self.nc.connected_url
        return f"{url.scheme}://{url.hostname}:{url.port}" if url and self.connected else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel the calls in progress (their callers get `StoreClosed`), drain the
        connection and stop the loop."""
        if self._closed:
            return
        self._closed = True
        for call in list(self._calls):
            call.cancel()
        try:
            asyncio.run_coroutine_threadsafe(self.nc.drain(), self.loop).result(CONNECT_SECONDS)
        except Exception as exc:  # closing anyway: nothing acknowledged depends on it
            log.info("draining the NATS connection: %s", exc)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.nc.close(), self.loop).result(2.0)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CONNECT_SECONDS)
        if not self.thread.is_alive():
            self.loop.close()
