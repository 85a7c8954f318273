"""Subscription benchmarks (pytest-benchmark): poll+ack throughput and ack-state size.

    pytest bench/bench_subscriptions.py            # under half a minute

- poll+ack, one consumer and four competing consumer threads: batches of 100 messages of
  100 bytes, fsync="never". Before each timed round, the untimed setup replays the same
  messages with `store.read` (batches of 100): the baseline. Baseline and subscription
  rounds alternate, so a noisy neighbour slows both and the ratio of their medians stays
  meaningful on a shared machine. Targets (issue #10): one consumer >= 300,000 msg/s and
  >= 50% of the replay rate of the same run; four competing consumers >= 200,000 msg/s.
- ack-state size: 10,000,000 in-order acks through `Store.ack` (100,000 offsets a call,
  committed to LMDB every 1,000,000), then the bytes LMDB uses and the stored record.

Each test prints its figures and stores them in the benchmark's `extra_info` (in
--benchmark-json); the table's rows are seconds per round of 100,000 messages. Nothing here
asserts a speed: the machine decides.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

from logstore import Store

MESSAGES = 100_000
BATCH = 100
VALUE = b"x" * 100
ROUNDS = 7
STATE_ACKS = 10_000_000
STATE_CALL = 100_000
STATE_FLUSH_EVERY = 1_000_000
ONE_CONSUMER_TARGET = 300_000  # msg/s, issue #10
COMPETING_CONSUMERS_TARGET = 200_000  # msg/s, 4 threads, issue #10
SHARE_OF_REPLAY_TARGET = 0.5  # one consumer's rate over the replay rate of the same run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with Store(tmp_path_factory.mktemp("subs") / "data", fsync="never") as s:
        s.create_topic("t")
        for _ in range(MESSAGES // BATCH):
            s.write_many("t", [VALUE] * BATCH)
        yield s


def replay(store: Store) -> None:
    offset = 0
    while offset < MESSAGES:
        offset = store.read("t", offset, max_messages=BATCH)[-1].offset + 1


def consume(store: Store, name: str) -> int:
    """Poll and ack until the subscription is drained; how many messages this caller got."""
    got = 0
    while True:
        deliveries = store.poll("t", name, max_messages=BATCH)
        if not deliveries:
            return got
        store.ack("t", name, [d.offset for d in deliveries])
        got += len(deliveries)


def consume_in_threads(store: Store, name: str, threads: int) -> None:
    counts = [0] * threads

    def run(i: int) -> None:
        counts[i] = consume(store, name)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(counts) == MESSAGES, counts


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(text)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def measure(
    benchmark, capsys, store: Store, threads: int, target: int, share_target: float | None
) -> None:
    replay_seconds: list[float] = []
    rounds = iter(range(ROUNDS))

    def setup():
        started = time.perf_counter()
        replay(store)
        replay_seconds.append(time.perf_counter() - started)
        name = f"t{threads}-{next(rounds)}"
        store.subscribe("t", name)
        return (store, name, threads), {}

    benchmark.pedantic(consume_in_threads, setup=setup, rounds=ROUNDS, iterations=1)
    rate = MESSAGES / benchmark.stats.stats.median
    replay_rate = MESSAGES / statistics.median(replay_seconds)
    share = rate / replay_rate
    benchmark.extra_info.update(
        messages_per_second=round(rate),
        replay_messages_per_second=round(replay_rate),
        ratio_to_replay=round(share, 3),
    )
    targets = f"  target >= {target:,} msg/s: {verdict(rate >= target)}"
    if share_target is not None:
        targets += f"; target >= {share_target:.0%} of replay: {verdict(share >= share_target)}"
    report(
        capsys,
        f"\npoll+ack, {threads} consumer thread(s): {rate:,.0f} msg/s acknowledged; "
        f"replay {replay_rate:,.0f} msg/s; ratio {share:.2f} "
        f"(medians of {ROUNDS} alternating rounds)\n{targets}",
    )
    info = store.subscription("t", f"t{threads}-0")
    assert (info.ack_floor, info.pending, info.lag) == (MESSAGES, 0, 0)


def test_replay_baseline(benchmark, store):
    benchmark.pedantic(replay, args=(store,), rounds=ROUNDS, iterations=1)


def test_poll_ack_one_consumer(benchmark, capsys, store):
    measure(benchmark, capsys, store, 1, ONE_CONSUMER_TARGET, SHARE_OF_REPLAY_TARGET)


def test_poll_ack_four_competing_consumers(benchmark, capsys, store):
    measure(benchmark, capsys, store, 4, COMPETING_CONSUMERS_TARGET, None)


def test_ack_state_stays_bounded_after_ten_million_acks(benchmark, capsys, tmp_path):
    data_dir = tmp_path / "data"
    with Store(data_dir, fsync="never") as s:
        s.create_topic("big")
        for _ in range(STATE_ACKS // 10_000):
            s.write_many("big", [b""] * 10_000)
        s.subscribe("big", "s")
        env = s._engine._meta.env
        s._engine._subs.maintain()  # the maintenance thread's commit, run now for a clean baseline
        before = _lmdb_bytes(env)

        def ack_everything():
            for first in range(0, STATE_ACKS, STATE_CALL):
                s.ack("big", "s", range(first, first + STATE_CALL))
                if (first + STATE_CALL) % STATE_FLUSH_EVERY == 0:
                    s._engine._subs.maintain()

        benchmark.pedantic(ack_everything, rounds=1, iterations=1)
        after = _lmdb_bytes(env)
        with env.begin(db=s._engine._subs._acks_db) as txn:
            record = txn.get(b"big\0s")
        assert s.subscription("big", "s").ack_floor == STATE_ACKS
    file_bytes = os.path.getsize(data_dir / "meta" / "data.mdb")
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(
        acks_per_second=round(STATE_ACKS / seconds),
        lmdb_bytes_before=before,
        lmdb_bytes_after=after,
        ack_record_bytes=len(record),
        meta_file_bytes=file_bytes,
    )
    report(
        capsys,
        f"\n{STATE_ACKS:,} in-order acks in {seconds:.1f} s ({STATE_ACKS / seconds:,.0f}/s): "
        f"LMDB in use {before:,} -> {after:,} bytes, ack record {len(record)} bytes, "
        f"meta data.mdb {file_bytes:,} bytes",
    )
    assert len(record) == 8  # just the floor
    assert after - before <= 64 * 1024


def _lmdb_bytes(env) -> int:
    """Bytes of the LMDB map in use (pages up to the last one used)."""
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]
