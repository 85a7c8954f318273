"""Subscriptions (SPEC §4): fan-out, leases, acks, redelivery, dead letters, replay, durability."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import lmdb
import pytest

from logstore import (
    Corruption,
    InvalidArgument,
    InvalidName,
    Message,
    OffsetOutOfRange,
    Record,
    Store,
    SubscriptionExists,
    SubscriptionNotFound,
    TopicNotFound,
)


def offsets(deliveries) -> list[int]:
    return [d.offset for d in deliveries]


def fill(store: Store, count: int, topic: str = "t") -> None:
    store.create_topic(topic)
    store.write_many(topic, [b"m%d" % i for i in range(count)])


def acks_record(data_dir, topic: str, name: str) -> bytes:
    """The stored ack state, read straight from LMDB (the store must be closed)."""
    env = lmdb.open(os.path.join(data_dir, "meta"), max_dbs=16, readonly=True, lock=False)
    try:
        with env.begin(db=env.open_db(b"acks", create=False)) as txn:
            return txn.get(f"{topic}\0{name}".encode())
    finally:
        env.close()


# ------------------------------------------------------------------ delivery


def test_two_subscriptions_each_receive_every_message(store):
    fill(store, 50)
    store.subscribe("t", "billing")
    store.subscribe("t", "audit")
    for name in ("billing", "audit"):
        got = store.poll("t", name, max_messages=100)
        assert offsets(got) == list(range(50))
        assert [d.value for d in got[:2]] == [b"m0", b"m1"]
        assert {d.delivery_count for d in got} == {1}
        store.ack("t", name, offsets(got))
    assert [i.ack_floor for i in store.subscriptions("t")] == [50, 50]
    assert store.read("t", 0, max_messages=1000)[-1].offset == 49  # one copy on disk


def test_eight_threads_competing_on_one_subscription_get_every_message_exactly_once(store):
    """Many small polls, with the interpreter told to switch threads every microsecond (it
    switches every 5 ms by default), so that threads are preempted inside a lease's
    bookkeeping: a lease taken without the subscription's lock failed here in every one of
    40 runs (a message delivered twice, or under another message's offset)."""
    total = 6000
    fill(store, total)
    store.subscribe("t", "workers", ack_wait=60)  # no lease expires: any repeat is a bug
    received = Counter()
    held: set[int] = set()
    lock = threading.Lock()
    errors = []
    failed = threading.Event()

    def consume():
        try:
            while not failed.is_set():
                got = store.poll("t", "workers", max_messages=3, wait=0.05)
                if not got:
                    if store.subscription("t", "workers").ack_floor == total:
                        return
                    continue
                with lock:
                    for d in got:
                        assert d.offset not in held, f"offset {d.offset} held twice"
                        assert d.value == b"m%d" % d.offset, d
                        held.add(d.offset)
                        received[d.offset] += 1
                store.ack("t", "workers", offsets(got))
                with lock:
                    held.difference_update(offsets(got))
        except Exception as exc:  # surfaced below: a failing thread must fail the test
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=consume) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert sorted(received) == list(range(total))
    assert set(received.values()) == {1}
    info = store.subscription("t", "workers")
    assert (info.ack_floor, info.pending, info.lag) == (total, 0, 0)


@pytest.mark.local_only("JetStream acknowledges only delivered messages (no ack ahead of delivery)")
def test_expired_lease_is_redelivered_with_delivery_count_2(store):
    fill(store, 3)
    store.subscribe("t", "s", ack_wait=0.3)
    store.ack("t", "s", [1])  # acknowledged ahead of delivery: never delivered
    first = store.poll("t", "s")
    assert [(d.offset, d.delivery_count) for d in first] == [(0, 1), (2, 1)]
    assert store.poll("t", "s") == []  # everything leased or acknowledged
    started = time.monotonic()
    again = store.poll("t", "s", wait=10)  # wakes when the nearest lease expires
    assert time.monotonic() - started < 5
    assert [(d.offset, d.delivery_count) for d in again] == [(0, 2), (2, 2)]
    assert again[0].value == b"m0"


@pytest.mark.local_only("pending also counts nacked messages until they are delivered again")
def test_nack_redelivers_at_once(store):
    fill(store, 5)
    store.subscribe("t", "s", ack_wait=60)
    got = store.poll("t", "s", max_messages=3)
    info = store.nack("t", "s", [1, 2])
    assert info.pending == 1
    again = store.poll("t", "s", max_messages=3)
    assert [(d.offset, d.delivery_count) for d in again] == [(1, 2), (2, 2), (3, 1)]
    store.ack("t", "s", offsets(got) + offsets(again))
    assert store.subscription("t", "s").ack_floor == 4


def test_nack_wakes_a_poller_waiting_in_another_thread(store):
    fill(store, 1)
    store.subscribe("t", "s", ack_wait=60)
    store.poll("t", "s")
    result = []
    waiter = threading.Thread(target=lambda: result.extend(store.poll("t", "s", wait=10)))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    store.nack("t", "s", [0])
    waiter.join(timeout=10)
    assert time.monotonic() - started < 5
    assert [(d.offset, d.delivery_count) for d in result] == [(0, 2)]


def test_long_poll_wakes_when_a_message_is_written(store):
    store.create_topic("t")
    store.subscribe("t", "s")
    timer = threading.Timer(0.1, store.write, ("t", b"late"))
    timer.start()
    started = time.monotonic()
    got = store.poll("t", "s", wait=10)
    assert time.monotonic() - started < 5
    assert [d.value for d in got] == [b"late"]
    timer.join()
    assert store.poll("t", "s", wait=0.05) == []


@pytest.mark.store_only("Store's poll_async; AsyncClient is the client's asyncio form")
def test_poll_async_waits_without_blocking_the_event_loop(store):
    store.create_topic("t")
    store.subscribe("t", "s")

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: threading.Thread(target=store.write, args=("t", b"x")).start())
        got = await store.poll_async("t", "s", wait=10)
        empty = await store.poll_async("t", "s", wait=0.05)
        tick_task.cancel()
        return got, empty, ticks

    got, empty, ticks = asyncio.run(main())
    assert [d.value for d in got] == [b"x"] and empty == []
    assert ticks >= 5  # the loop kept running while the poll waited


def test_waiting_poll_ends_when_its_subscription_or_topic_or_store_goes(data_dir):
    store = Store(data_dir, fsync="never")
    store.create_topic("t")
    for name in ("a", "b", "c"):
        store.subscribe("t", name)
    outcomes = {}

    def wait_in_poll(name):
        try:
            store.poll("t", name, wait=30)
        except Exception as exc:
            outcomes[name] = type(exc).__name__

    def run(name, action):
        waiter = threading.Thread(target=wait_in_poll, args=(name,))
        waiter.start()
        time.sleep(0.1)
        action()
        waiter.join(timeout=10)
        assert not waiter.is_alive()

    run("a", lambda: store.unsubscribe("t", "a"))
    run("b", store.close)
    assert outcomes == {"a": "SubscriptionNotFound", "b": "StoreClosed"}
    store = Store(data_dir, fsync="never")
    run("c", lambda: store.delete_topic("t"))
    store.close()
    assert outcomes["c"] == "TopicNotFound"


# ------------------------------------------------------------ acknowledgement


def test_commit_up_to_and_individual_acks_with_gaps(store):
    fill(store, 10)
    store.subscribe("t", "s")
    store.poll("t", "s", max_messages=10)
    info = store.ack("t", "s", [0, 1, 2, 5, 7])
    assert (info.ack_floor, info.lag, info.pending) == (3, 5, 5)
    info = store.commit("t", "s", 6)
    assert (info.ack_floor, info.lag, info.pending) == (6, 3, 3)  # 7 was acked already
    info = store.ack("t", "s", [6])
    assert (info.ack_floor, info.lag) == (8, 2)
    store.nack("t", "s", [8, 9])
    assert offsets(store.poll("t", "s")) == [8, 9]
    info = store.commit("t", "s", 10)
    assert (info.ack_floor, info.lag, info.pending) == (10, 0, 0)
    assert store.commit("t", "s", 4).ack_floor == 10  # commit never moves back


@pytest.mark.local_only("JetStream acknowledges only delivered messages (no ack ahead of delivery)")
def test_messages_acknowledged_ahead_of_delivery_are_skipped(store):
    fill(store, 2000)
    store.subscribe("t", "s")
    assert offsets(store.poll("t", "s", max_messages=1)) == [0]
    store.ack("t", "s", range(1, 1500))
    store.ack("t", "s", [1600])
    got = store.poll("t", "s", max_messages=200)
    assert offsets(got) == [o for o in range(1500, 1701) if o != 1600]
    info = store.subscription("t", "s")
    assert (info.ack_floor, info.pending, info.lag) == (0, 201, 2000 - 1500)


def test_a_poll_that_cannot_read_leases_nothing(data_dir):
    with Store(data_dir, fsync="never") as store:
        fill(store, 3)  # one frame: header (32 bytes), 3 value lengths, then b"m0" ...
        for _ in range(100):  # later frames (and index entries) keep recovery off frame 0
            store.write("t", b"." * 100)
        store.subscribe("t", "s")
    [segment] = [
        os.path.join(root, f)
        for root, _, files in os.walk(data_dir / "topics")
        for f in files
        if f.endswith(".log")
    ]
    with open(segment, "r+b") as f:
        f.seek(32 + 12)
        f.write(b"X")  # b"m0" becomes b"X0": the frame's CRC fails
    with Store(data_dir, fsync="never") as store:
        with pytest.raises(Corruption):
            store.poll("t", "s")
        info = store.subscription("t", "s")
        assert (info.pending, info.lag) == (0, 103)


def test_ack_state_stays_small_gaps_not_acks(data_dir):
    with Store(data_dir, fsync="never") as store:
        fill(store, 10_000)
        store.subscribe("t", "s")
        store.ack("t", "s", range(1, 10_000, 2))  # 5,000 acks, 5,000 gaps
    assert len(acks_record(data_dir, "t", "s")) == 8 + 16 * 5000
    with Store(data_dir, fsync="never") as store:
        store.ack("t", "s", range(0, 10_000, 2))  # the gaps close: only the floor is left
    assert len(acks_record(data_dir, "t", "s")) == 8


def test_concurrent_acks_share_commits_under_fsync_always(data_dir):
    with Store(data_dir, fsync="always") as store:
        fill(store, 400)
        store.subscribe("t", "s")
        env = store._engine._meta.env
        before = env.info()["last_txnid"]

        def ack_range(first):
            for o in range(first, first + 50):
                store.ack("t", "s", [o])

        threads = [threading.Thread(target=ack_range, args=(i * 50,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commits = env.info()["last_txnid"] - before
        assert store.subscription("t", "s").ack_floor == 400
    assert 0 < commits < 400  # 400 acks, fewer commits: they were grouped


# ------------------------------------------------------------------ replay


def test_seek_back_replays_acknowledged_history(store):
    fill(store, 20)
    store.subscribe("t", "s")
    store.ack("t", "s", offsets(store.poll("t", "s", max_messages=20)))
    assert store.poll("t", "s") == []
    info = store.seek("t", "s", 5)
    assert (info.ack_floor, info.lag) == (5, 15)
    assert offsets(store.poll("t", "s", max_messages=100)) == list(range(5, 20))
    assert store.seek("t", "s", position="earliest").ack_floor == 0
    assert store.seek("t", "s", position="latest").lag == 0
    assert store.poll("t", "s") == []
    first_ts = store.read("t", 0, max_messages=1)[0].timestamp
    assert store.seek("t", "s", timestamp=first_ts).ack_floor == 0
    stamp = datetime.fromtimestamp(first_ts / 1000 + 3600, tz=UTC)
    assert store.seek("t", "s", timestamp=stamp).ack_floor == 20


def test_subscribe_starts_at_earliest_latest_offset_or_time(store):
    fill(store, 10)
    assert store.subscribe("t", "early").ack_floor == 0
    assert store.subscribe("t", "late", start="latest").ack_floor == 10
    assert store.subscribe("t", "mid", start=4).lag == 6
    future = datetime.now(tz=UTC).replace(year=datetime.now().year + 1)
    assert store.subscribe("t", "future", start=future).ack_floor == 10
    assert store.subscribe("t", "ms", start_time=0).ack_floor == 0
    store.write("t", b"new")
    assert offsets(store.poll("t", "late")) == [10]
    assert offsets(store.poll("t", "mid", max_messages=2)) == [4, 5]


@pytest.mark.local_only("JetStream acknowledges only delivered messages (no ack ahead of delivery)")
def test_resubscribe_with_same_settings_is_a_noop_and_different_settings_an_error(store):
    fill(store, 10)
    store.subscribe("t", "s", ack_wait=5)
    store.ack("t", "s", [0, 1])
    again = store.subscribe("t", "s", start="latest", ack_wait=5.0)  # resumes, start ignored
    assert again.ack_floor == 2
    with pytest.raises(SubscriptionExists, match="different settings"):
        store.subscribe("t", "s", ack_wait=6)


def test_unsubscribe_removes_the_subscription_and_its_state(data_dir):
    with Store(data_dir, fsync="always") as store:
        fill(store, 5)
        store.subscribe("t", "s")
        store.ack("t", "s", [0, 1])
        store.unsubscribe("t", "s")
        with pytest.raises(SubscriptionNotFound):
            store.poll("t", "s")
        assert store.subscribe("t", "s").ack_floor == 0  # a new one, from the start
        store.unsubscribe("t", "s")
    with Store(data_dir) as store:
        assert store.subscriptions("t") == []
    assert acks_record(data_dir, "t", "s") is None


def test_deleting_a_topic_removes_its_subscriptions(data_dir):
    with Store(data_dir, fsync="never") as store:
        fill(store, 5)
        store.subscribe("t", "s")
        store.ack("t", "s", [0])
        store.delete_topic("t")
        with pytest.raises(TopicNotFound):
            store.subscriptions("t")
        store.create_topic("t")
        assert store.subscriptions("t") == []
        store.subscribe("t", "s")
    with Store(data_dir) as store:
        assert store.subscription("t", "s").ack_floor == 0


# --------------------------------------------------------------- dead letters


def test_message_goes_to_dead_letter_topic_after_max_deliveries(store):
    store.create_topic("t")
    store.create_topic("dead")
    store.write("t", b"poison", key=b"k", headers={"h": "v"})
    store.write("t", b"fine")
    store.subscribe("t", "s", ack_wait=60, max_deliveries=2, dead_letter_topic="dead")
    assert [d.delivery_count for d in store.poll("t", "s", max_messages=1)] == [1]
    store.nack("t", "s", [0])
    assert [d.delivery_count for d in store.poll("t", "s", max_messages=1)] == [2]
    store.nack("t", "s", [0])
    assert offsets(store.poll("t", "s")) == [1]  # 0 went to the dead letters instead
    [dead] = store.read("dead", 0)
    assert (dead.value, dead.key) == (b"poison", b"k")
    assert dict(dead.headers) == {
        "h": "v",
        "x-logstore-source-topic": "t",
        "x-logstore-source-offset": "0",
        "x-logstore-subscription": "s",
        "x-logstore-delivery-count": "2",
    }
    info = store.subscription("t", "s")
    assert (info.ack_floor, info.pending, info.lag) == (1, 1, 1)  # 0 counts as acknowledged


def test_dead_letter_topic_missing_keeps_the_message_and_says_so(store):
    fill(store, 1)
    store.create_topic("dead")
    store.subscribe("t", "s", ack_wait=0.05, max_deliveries=1, dead_letter_topic="dead")
    store.poll("t", "s")
    store.delete_topic("dead")
    time.sleep(0.1)
    with pytest.raises(TopicNotFound, match="dead"):
        store.poll("t", "s")
    store.create_topic("dead")
    assert store.poll("t", "s") == []
    assert [m.value for m in store.read("dead", 0)] == [b"m0"]


# ----------------------------------------------------------------- durability


def test_ack_state_survives_close_and_reopen_but_leases_do_not(data_dir):
    with Store(data_dir, fsync="never") as store:
        fill(store, 10)
        store.subscribe("t", "s", ack_wait=60)
        store.poll("t", "s", max_messages=10)
        store.commit("t", "s", 3)
        store.ack("t", "s", [5, 8])
    with Store(data_dir, fsync="never") as store:
        info = store.subscription("t", "s")
        assert (info.ack_floor, info.pending, info.lag, info.ack_wait) == (3, 0, 5, 60.0)
        got = store.poll("t", "s", max_messages=10)
        assert offsets(got) == [3, 4, 6, 7, 9]
        assert {d.delivery_count for d in got} == {1}  # counts restart with the process


_ACK_FLOOR_WATCHER = textwrap.dedent(
    """
    import sys, time
    from logstore import Store, SubscriptionNotFound, TopicNotFound
    store = Store(sys.argv[1], readonly=True)
    deadline = time.monotonic() + 20
    ready = False
    while time.monotonic() < deadline:
        try:
            floor = store.subscription("t", "s").ack_floor
        except (SubscriptionNotFound, TopicNotFound):
            continue
        if floor == 7:
            print("seen", time.monotonic(), flush=True)
            break
        if not ready:
            print("ready", floor, flush=True)
            ready = True
        time.sleep(0.001)
    """
)


def test_interval_policy_commits_acks_in_the_background_within_a_few_intervals(data_dir):
    """The ack is committed by the maintenance thread, not by close. A read-only store in
    another process (LMDB allows one open per process) watches the stored ack floor.

    With a 0.1 s interval the floor showed up 6-101 ms after `commit` was called (20 runs
    on 2 cores, half of them with both cores kept busy by other processes). The bound, five
    intervals, leaves room for a loaded machine and still fails a commit that waits for
    close or for a one-second period. `time.monotonic` is one clock for every process."""
    interval = 0.1
    with Store(data_dir, fsync="interval", fsync_interval=interval) as store:
        fill(store, 10)
        store.subscribe("t", "s")
        watcher = subprocess.Popen(
            [sys.executable, "-c", _ACK_FLOOR_WATCHER, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert select.select([watcher.stdout], [], [], 30)[0], "the watcher said nothing"
            assert watcher.stdout.readline().split() == ["ready", "0"]
            committed = time.monotonic()
            store.commit("t", "s", 7)
            out, err = watcher.communicate(timeout=30)
        finally:
            watcher.kill()
            watcher.wait()
        assert out.split()[:1] == ["seen"], err
        assert float(out.split()[1]) - committed < 5 * interval


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from logstore import Store
    store = Store(sys.argv[1], fsync="always")
    store.create_topic("t")
    store.write_many("t", [b"m%d" % i for i in range(100)])
    store.subscribe("t", "s", ack_wait=60)
    store.poll("t", "s", max_messages=100)
    store.commit("t", "s", 10)
    store.ack("t", "s", [20, 21, 50])
    print("acked", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.slow
def test_ack_survives_sigkill_right_after_it_returned(data_dir):
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "acked"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    with Store(data_dir) as store:
        info = store.subscription("t", "s")
        assert (info.ack_floor, info.pending, info.lag) == (10, 0, 87)
        got = store.poll("t", "s", max_messages=100)
        assert offsets(got) == [o for o in range(10, 100) if o not in (20, 21, 50)]
        assert {d.delivery_count for d in got} == {1}


def test_subscription_behind_retention_continues_at_start_offset(store):
    store.create_topic("t", segment_bytes=4096, retention_bytes=3 * 4096)
    store.subscribe("t", "s")
    store.write("t", b"first")
    assert offsets(store.poll("t", "s")) == [0]  # leased, then deleted by retention
    for i in range(1, 1000):
        store.write("t", b"%04d" % i + b"." * 60)
    start = store.topic("t").start_offset
    assert start > 1
    info = store.subscription("t", "s")
    assert (info.ack_floor, info.pending, info.lag) == (start, 0, 1000 - start)
    got = store.poll("t", "s", max_messages=5)
    assert offsets(got) == list(range(start, start + 5))
    store.ack("t", "s", [0])  # an ack for a message retention removed is harmless


def test_ten_thousand_subscriptions_on_one_store_open_quickly(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t")
        store.create_topic("other")
        for i in range(10_000):
            store.subscribe("t" if i % 2 else "other", f"s{i}")
    started = time.monotonic()
    with Store(data_dir, fsync="never") as store:
        assert store.subscription("t", "s9999").ack_floor == 0
        assert len(store.subscriptions("other")) == 5000
        elapsed = time.monotonic() - started
    assert elapsed < 5  # loose: about 0.1 s on a developer machine


# --------------------------------------------------------------------- errors


def test_bad_calls_get_the_spec_errors(store):
    fill(store, 3)
    store.subscribe("t", "s")
    with pytest.raises(SubscriptionNotFound, match="'nope'"):
        store.poll("t", "nope")
    with pytest.raises(SubscriptionNotFound):
        store.ack("t", "nope", [0])
    with pytest.raises(InvalidName):
        store.subscribe("t", "bad/name")
    with pytest.raises(InvalidName):
        store.subscription("t", "")
    with pytest.raises(TopicNotFound):
        store.subscribe("missing", "s")
    with pytest.raises(OffsetOutOfRange) as caught:
        store.ack("t", "s", [1, 3])
    assert (caught.value.offset, caught.value.end_offset) == (3, 3)
    with pytest.raises(OffsetOutOfRange):
        store.commit("t", "s", 4)
    with pytest.raises(InvalidArgument):
        store.ack("t", "s", [-1])
    with pytest.raises(InvalidArgument):
        store.ack("t", "s", 1)
    with pytest.raises(InvalidArgument):
        store.ack("t", "s", ["1"])
    with pytest.raises(InvalidArgument):
        store.poll("t", "s", max_messages=0)
    with pytest.raises(InvalidArgument):
        store.poll("t", "s", wait=-1)
    with pytest.raises(InvalidArgument):
        store.seek("t", "s")
    with pytest.raises(OffsetOutOfRange):
        store.seek("t", "s", 4)
    with pytest.raises(InvalidArgument):
        store.subscribe("t", "x", ack_wait=0)
    with pytest.raises(InvalidArgument):
        store.subscribe("t", "x", start="middle")
    with pytest.raises(TopicNotFound):
        store.subscribe("t", "x", max_deliveries=3, dead_letter_topic="missing")
    with pytest.raises(InvalidArgument):
        store.subscribe("t", "x", max_deliveries=3, dead_letter_topic="t")
    assert [i.name for i in store.subscriptions("t")] == ["s"]  # nothing half-made


def test_acks_of_records_with_keys_and_headers_round_trip(store):
    store.create_topic("t")
    store.write_many("t", [Record(b"v", key=b"k", headers={"a": "b"}), b"plain"])
    store.subscribe("t", "s")
    first, second = store.poll("t", "s")
    assert (first.key, dict(first.headers), first.value) == (b"k", {"a": "b"}, b"v")
    assert (second.key, second.value, second.offset) == (None, b"plain", 1)
    assert isinstance(first, Message) and "delivery_count=1" in repr(first)


# --------------------------------------------------------------- lease tokens


def test_ack_and_nack_by_lease_token(store):
    fill(store, 4)
    store.subscribe("t", "s", ack_wait=30)
    first = store.poll("t", "s", max_messages=2)
    leases = [d.lease for d in first]
    assert all(isinstance(t, str) for t in leases) and len(set(leases)) == 2
    store.ack("t", "s", [leases[0]])
    store.nack("t", "s", [leases[1]])
    again = store.poll("t", "s", max_messages=10)
    assert offsets(again) == [1, 2, 3]
    assert again[0].delivery_count == 2 and again[0].lease != leases[1]
    store.ack("t", "s", [d.lease for d in again])
    info = store.subscription("t", "s")
    assert (info.ack_floor, info.pending, info.lag) == (4, 0, 0)


def test_token_of_an_expired_lease_acks_its_offset_but_cannot_nack_the_new_lease(store):
    fill(store, 1)
    store.subscribe("t", "s", ack_wait=0.05)
    [old] = store.poll("t", "s")
    time.sleep(0.1)
    [new] = store.poll("t", "s")  # the expired lease was replaced by a new one
    assert (new.offset, new.delivery_count) == (0, 2) and new.lease != old.lease
    store.nack("t", "s", [old.lease])  # no effect: it is not the current lease
    assert store.subscription("t", "s").pending == 1
    store.ack("t", "s", [old.lease])  # documented: acknowledges the offset all the same
    info = store.subscription("t", "s")
    assert (info.ack_floor, info.pending) == (1, 0)


def test_mixed_offsets_and_tokens_and_bad_tokens(store):
    fill(store, 3)
    store.subscribe("t", "s")
    deliveries = store.poll("t", "s")
    store.ack("t", "s", [0, deliveries[1].lease])
    assert store.subscription("t", "s").ack_floor == 2
    for bad in ["", "x-1", "1-", "1.5", "-1-2"]:
        with pytest.raises(InvalidArgument):
            store.ack("t", "s", [bad])
    with pytest.raises(OffsetOutOfRange):
        store.ack("t", "s", ["99-1"])
    assert store.subscription("t", "s").ack_floor == 2


def test_poll_max_bytes_leases_only_what_fits_and_delivers_the_rest_next(store):
    store.create_topic("t")
    store.write_many("t", [bytes([65 + i]) * 1000 for i in range(10)])
    store.subscribe("t", "s")
    first = store.poll("t", "s", max_messages=10, max_bytes=2500)
    assert offsets(first) == [0, 1]
    assert store.subscription("t", "s").pending == 2  # the rest was given back, not leased
    second = store.poll("t", "s", max_messages=10, max_bytes=2500)
    assert offsets(second) == [2, 3]
    assert [d.delivery_count for d in second] == [1, 1]
    store.nack("t", "s", [0, 1, 2, 3])
    again = store.poll("t", "s", max_messages=10, max_bytes=2500)
    assert offsets(again) == [0, 1]
    assert [d.delivery_count for d in again] == [2, 2]
    rest = store.poll("t", "s", max_messages=10)
    assert offsets(rest) == list(range(2, 10))
    assert [d.delivery_count for d in rest] == [2, 2] + [1] * 6


@pytest.mark.store_only("Store's poll_async")
def test_poll_max_bytes_always_delivers_one_message_larger_than_it(store):
    store.create_topic("t")
    store.write_many("t", [b"x" * 5000, b"y"])
    store.subscribe("t", "s")
    assert offsets(store.poll("t", "s", max_messages=10, max_bytes=100)) == [0]
    assert offsets(asyncio.run(store.poll_async("t", "s", 10, 0.0, max_bytes=100))) == [1]
    with pytest.raises(InvalidArgument):
        store.poll("t", "s", max_bytes=0)
