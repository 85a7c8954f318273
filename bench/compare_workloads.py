"""Rows 1-6: the measuring loops, written once against `compare_api.Client`.

Each function is one run of one workload on one system, in a fresh event loop (the caller
uses `asyncio.run`), with fresh client connections, and returns its figure. Every loop
stops at a message count or a time limit, whichever comes first, and every wait on a
server has a timeout, so a stuck peer fails its row instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from types import ModuleType

from compare_api import Client, Server

BATCH = 1000  # messages per request / pipeline (row 3), per poll (row 5), per preload call
CLIENTS = 64  # concurrent publishers (row 2)
_WARMUP = 20  # requests before the clock starts: connections open, caches warm
_LATENCY_PAUSE = 0.002  # seconds between latency samples, so the consumer waits again
_DELIVERY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does; `--quick` shrinks everything."""

    repeats: int
    seconds: float  # time limit of one publish or embedded loop
    publish_msgs: int  # message limit of a publish loop (rows 1-3)
    embedded_msgs: int  # messages put, then got, per embedded run (row 7): the same depth
    replay_msgs: int  # messages preloaded, then replayed (row 4) and consumed (row 5)
    consume_msgs: int  # message limit of one consume run (row 5)
    latency_samples: int  # messages timed per latency run (row 6)
    slow_seconds: float  # time limit of a replay, consume or latency run
    preload_seconds: float  # time limit of one preload


def payload(size: int, seq: int = 0) -> bytes:
    """ASCII bytes of `size`: a 10-digit sequence number, then filler (valid UTF-8)."""
    head = b"%010d" % seq
    return head + b"x" * (size - len(head))


async def _connected(system: ModuleType, server: Server, count: int = 1) -> list[Client]:
    return list(await asyncio.gather(*(system.connect(server) for _ in range(count))))


async def _close(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _rate(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


async def publish_one(system: ModuleType, server: Server, topic: str, size: int, s: Scale) -> float:
    """Row 1: one client, one message per request, each answered before the next; msg/s."""
    (client,) = await _connected(system, server)
    try:
        await client.create_topic(topic)
        body = payload(size)
        for _ in range(_WARMUP):
            await client.publish(topic, body)
        done, started = 0, time.perf_counter()
        deadline = started + s.seconds
        while done < s.publish_msgs and time.perf_counter() < deadline:
            await client.publish(topic, body)
            done += 1
        rate = _rate(done, started)
        await client.delete_topic(topic)
    finally:
        await _close([client])
    return rate


async def publish_concurrent(
    system: ModuleType, server: Server, topic: str, size: int, s: Scale
) -> float:
    """Row 2: CLIENTS clients, each with its own connection, publishing one at a time; msg/s."""
    clients = await _connected(system, server, CLIENTS)
    try:
        await clients[0].create_topic(topic)
        body = payload(size)
        await asyncio.gather(*(c.publish(topic, body) for c in clients))
        done, started = 0, time.perf_counter()
        deadline = started + s.seconds

        async def publisher(client: Client) -> None:
            nonlocal done
            while done < s.publish_msgs and time.perf_counter() < deadline:
                await client.publish(topic, body)
                done += 1

        await asyncio.gather(*(publisher(c) for c in clients))
        rate = _rate(done, started)
        await clients[0].delete_topic(topic)
    finally:
        await _close(clients)
    return rate


async def publish_batched(
    system: ModuleType, server: Server, topic: str, size: int, s: Scale
) -> float:
    """Row 3: one client, BATCH messages per request or pipeline; msg/s."""
    (client,) = await _connected(system, server)
    try:
        await client.create_topic(topic)
        batch = [payload(size)] * BATCH
        await client.publish_batch(topic, batch)
        done, started = 0, time.perf_counter()
        deadline = started + s.seconds
        while done < s.publish_msgs and time.perf_counter() < deadline:
            await client.publish_batch(topic, batch)
            done += BATCH
        rate = _rate(done, started)
        await client.delete_topic(topic)
    finally:
        await _close([client])
    return rate


async def preload(system: ModuleType, server: Server, topic: str, size: int, s: Scale) -> None:
    """Fill `topic` with `s.replay_msgs` messages for rows 4 and 5, BATCH at a time."""
    (client,) = await _connected(system, server)
    try:
        await client.create_topic(topic)
        deadline = time.perf_counter() + s.preload_seconds
        for first in range(0, s.replay_msgs, BATCH):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"preloading {s.replay_msgs:,} messages took too long")
            count = min(BATCH, s.replay_msgs - first)
            await client.publish_batch(topic, [payload(size, first + i) for i in range(count)])
    finally:
        await _close([client])


async def drop(system: ModuleType, server: Server, topic: str) -> None:
    (client,) = await _connected(system, server)
    try:
        await client.delete_topic(topic)
    finally:
        await _close([client])


async def replay(system: ModuleType, server: Server, topic: str, s: Scale) -> float:
    """Row 4: read the preloaded topic from its first message; msg/s."""
    (client,) = await _connected(system, server)
    try:
        started = time.perf_counter()
        count = await client.replay(topic, s.replay_msgs, started + s.slow_seconds)
        rate = _rate(count, started)
    finally:
        await _close([client])
    if count < s.replay_msgs and time.perf_counter() < started + s.slow_seconds:
        raise AssertionError(f"replay found {count:,} of {s.replay_msgs:,} messages")
    return rate


async def consume(system: ModuleType, server: Server, topic: str, group: str, s: Scale) -> float:
    """Row 5: a new durable consumer from the first message; poll BATCH, ack, repeat; msg/s."""
    (client,) = await _connected(system, server)
    try:
        started = time.perf_counter()
        count = await client.consume(topic, group, s.consume_msgs, BATCH, started + s.slow_seconds)
        rate = _rate(count, started)
    finally:
        await _close([client])
    if count == 0:
        raise AssertionError("the consumer got no message")
    return rate


async def latency(
    system: ModuleType, server: Server, topic: str, size: int, s: Scale
) -> tuple[float, float]:
    """Row 6: publish one message, time until a waiting consumer has it; (p50, p99) in ms.

    One message is in flight at a time, and the next is sent a moment after the previous
    one arrived, so the consumer is always waiting (long poll or push) when it comes.
    """
    producer, consumer = await _connected(system, server, 2)
    loop = asyncio.get_running_loop()
    arrivals: dict[int, asyncio.Future[float]] = {}

    def deliver(body: bytes) -> None:
        future = arrivals.pop(int(body[:10]), None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    follower: asyncio.Task | None = None
    try:
        await producer.create_topic(topic)
        follower = asyncio.create_task(consumer.follow(topic, deliver))
        samples: list[float] = []
        deadline = time.perf_counter() + s.slow_seconds
        for seq in range(_WARMUP + s.latency_samples):
            if time.perf_counter() > deadline:
                break
            arrived = arrivals[seq] = loop.create_future()
            sent = time.perf_counter()
            await producer.publish(topic, payload(size, seq))
            done, _ = await asyncio.wait(
                {arrived, follower}, timeout=_DELIVERY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if arrived not in done:
                if follower in done:
                    follower.result()  # raises what stopped the consumer
                raise TimeoutError(f"message {seq} was not delivered in {_DELIVERY_TIMEOUT} s")
            if seq >= _WARMUP:
                samples.append((arrived.result() - sent) * 1000)
            await asyncio.sleep(_LATENCY_PAUSE)
        await producer.delete_topic(topic)
    finally:
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        await _close([producer, consumer])
    if len(samples) < 2:
        raise AssertionError("too few latency samples")
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]
