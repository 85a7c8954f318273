"""Crash soak over HTTP: `logstore serve` (fsync=always) is SIGKILLed and restarted again and
again while a publisher and a subscriber work through it.

Each round starts the server, lets a publisher thread (JSON batches of 1 to 3 messages, every
value unique) and a subscriber thread (poll, then ack most of what it got) run for 0.08-0.2 s,
and SIGKILLs the server while their requests are in flight. Afterwards the server is started
once more and the test checks what the clients were told against what the store holds:

- every publish answered 201 is present, once, at the offsets it was given, with its bytes,
  and the log holds nothing but values that were sent, each at most once;
- every message a poll delivered during the soak is in the log at that offset with that
  value (under fsync=always a reader only sees durable messages, so a crash cannot take a
  delivered message back);
- no offset whose ack was answered 200 is ever delivered again, during the soak or after it;
- every offset whose ack was never attempted (or never sent), is delivered again at the end.

Rounds: 50 by default (45-60 s on two cores); `LOGSTORE_SOAK_ROUNDS=500` runs a longer soak
(see docs/FAULTS.md).
"""

from __future__ import annotations

import os
import random
import threading
import time
from http.client import HTTPException

import pytest
from faults import Server, read_all, request

ROUNDS = int(os.environ.get("LOGSTORE_SOAK_ROUNDS", "50"))
_CUT = (ConnectionError, HTTPException, TimeoutError, OSError)


class Soak:
    """What the clients were told, over every round."""

    def __init__(self) -> None:
        self.published: dict[int, list[str]] = {}  # first_offset -> values, from a 201
        self.sent: set[str] = set()  # every value ever sent
        self.acked: set[int] = set()  # offsets whose ack was answered 200
        self.ack_unknown: set[int] = set()  # ack sent, answer lost to the kill
        self.delivered: dict[int, str] = {}  # offset -> value, from polls
        self.redelivered_after_ack: list[tuple[int, int]] = []  # (round, offset)
        self.unexpected: list[tuple[str, int, object]] = []  # (what, status, body)
        self.cut_requests = 0  # requests the SIGKILL cut off


def publisher(port: int, round_no: int, soak: Soak, stop: threading.Event, rnd: random.Random):
    n = 0
    while not stop.is_set():
        values = [
            f"r{round_no}-p{n}-{i}-" + "x" * rnd.randint(0, 200) for i in range(rnd.randint(1, 3))
        ]
        n += 1
        soak.sent.update(values)
        body = {"messages": [{"value": v} for v in values]}
        try:
            status, answer = request(port, "POST", "/topics/t/messages", body, timeout=5)
        except _CUT:
            soak.cut_requests += 1
            return
        if status == 201 and answer["count"] == len(values):
            soak.published[answer["first_offset"]] = values
        else:
            soak.unexpected.append(("publish", status, answer))


def subscriber(port: int, round_no: int, soak: Soak, stop: threading.Event, rnd: random.Random):
    while not stop.is_set():
        try:
            status, answer = request(
                port, "POST", "/topics/t/subscriptions/s/poll?max=50", timeout=5
            )
        except _CUT:
            soak.cut_requests += 1
            return
        if status != 200:
            soak.unexpected.append(("poll", status, answer))
            continue
        offsets = []
        for m in answer["messages"]:
            if m["offset"] in soak.acked:
                soak.redelivered_after_ack.append((round_no, m["offset"]))
            soak.delivered.setdefault(m["offset"], m["value"])
            if soak.delivered[m["offset"]] != m["value"]:
                soak.unexpected.append(("two values at one offset", m["offset"], m["value"]))
            if rnd.random() < 0.75:  # leave some unacknowledged: they must come back
                offsets.append(m["offset"])
        if not offsets:
            time.sleep(0.005)
            continue
        try:
            status, answer = request(
                port, "POST", "/topics/t/subscriptions/s/ack", {"offsets": offsets}, timeout=5
            )
        except _CUT:
            soak.cut_requests += 1
            soak.ack_unknown.update(offsets)
            return
        if status == 200:
            soak.acked.update(offsets)
        else:
            soak.unexpected.append(("ack", status, answer))


def guarded(fn, *args) -> None:
    """Run a client thread; anything it did not expect fails the test (not just the thread)."""
    soak = args[2]
    try:
        fn(*args)
    except BaseException as exc:
        soak.unexpected.append((fn.__name__, 0, repr(exc)))


@pytest.mark.slow
def test_sigkilled_server_under_publish_and_subscribe_load_keeps_every_acknowledgement(tmp_path):
    data = tmp_path / "data"
    server = Server(data, tmp_path / "serve.log", traceable=False)
    soak = Soak()
    rnd = random.Random(11)
    try:
        server.start()
        assert server.request("PUT", "/topics/t", {})[0] == 201
        status, answer = server.request("PUT", "/topics/t/subscriptions/s", {"ack_wait": 600})
        assert status == 201, answer
        for round_no in range(ROUNDS):
            if round_no:
                server.start()
            stop = threading.Event()
            threads = [
                threading.Thread(target=guarded, args=(fn, server.port, round_no, soak, stop, rnd))
                for fn in (publisher, subscriber)
            ]
            for t in threads:
                t.start()
            time.sleep(rnd.uniform(0.08, 0.2))
            server.kill()  # SIGKILL while both threads have requests in flight
            stop.set()
            for t in threads:
                t.join(20)
                assert not t.is_alive(), "a client thread hung after the kill"

        server.start()
        log = read_all(server.port, "t")
        final: list[list] = []
        for _ in range(10_000):
            status, answer = server.request("POST", "/topics/t/subscriptions/s/poll?max=1000")
            assert status == 200, answer
            if not answer["messages"]:
                break
            final += [[m["offset"], m["value"]] for m in answer["messages"]]
    finally:
        server.kill()

    print(
        f"soak: {ROUNDS} rounds, {len(soak.published)} publishes acknowledged, "
        f"{len(soak.acked)} offsets acked, {soak.cut_requests} requests cut by SIGKILL, "
        f"{len(final)} delivered again at the end, log of {len(log)} messages"
    )
    assert not soak.unexpected, soak.unexpected[:10]
    assert soak.published and soak.acked, "the soak acknowledged nothing: it proved nothing"
    assert soak.cut_requests >= ROUNDS // 2, "the kills rarely landed during requests"

    # The log: contiguous offsets, only values that were sent, each at most once.
    offsets = [m["offset"] for m in log]
    assert offsets == list(range(len(log)))
    values = [m["value"] for m in log]
    assert len(set(values)) == len(values), "a value is in the log twice"
    assert set(values) <= soak.sent
    # Every acknowledged publish, at its offsets, with its bytes.
    for first, sent_values in soak.published.items():
        assert values[first : first + len(sent_values)] == sent_values, f"publish at {first}"
    # Every delivered message was durable: still there, same offset, same value.
    for offset, value in soak.delivered.items():
        assert offset < len(values) and values[offset] == value, f"delivered {offset} changed"

    # The subscription: acknowledged never again, the rest again.
    assert not soak.redelivered_after_ack, soak.redelivered_after_ack[:10]
    again = {offset for offset, _ in final}
    assert not again & soak.acked, sorted(again & soak.acked)[:10]
    must_come_back = set(range(len(log))) - soak.acked - soak.ack_unknown
    assert must_come_back <= again, sorted(must_come_back - again)[:10]
    for offset, value in final:
        assert values[offset] == value
