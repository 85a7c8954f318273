"""`Store.write_batches_now`: the event loop's write, which never waits, and the server's
publishes through it surviving a SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_server_support import ServeProcess

from logstore import MessageTooLarge, Store, TopicNotFound


def _topic_log(store: Store, topic: str):
    """The topic's log inside the local engine (white box: its locks are what is tested)."""
    return store._engine._logs[topic]


@pytest.mark.parametrize("fsync", ["interval", "never"])
def test_writes_at_once_and_readers_see_it(tmp_path, fsync):
    with Store(tmp_path / "d", fsync=fsync) as store:
        store.create_topic("t")
        store.write("t", b"opened")  # the topic's log is loaded by a normal write first
        assert store.write_batches_now("t", [[b"a", b"b"], [b"c"]]) == [1, 3]
        assert [m.value for m in store.read("t", 0)] == [b"opened", b"a", b"b", b"c"]
    with Store(tmp_path / "d") as store:
        assert [m.value for m in store.read("t", 0)] == [b"opened", b"a", b"b", b"c"]


def test_never_under_fsync_always(tmp_path):
    with Store(tmp_path / "d", fsync="always") as store:
        store.create_topic("t")
        store.write("t", b"x")
        assert store.write_batches_now("t", [[b"y"]]) is None
        assert store.topic("t").end_offset == 1


def test_not_while_another_thread_holds_the_files_and_nothing_is_written(tmp_path):
    """An interval fsync or a write in flight holds the topic's file lock: the loop must not
    wait for it, so the call gives up at once and writes nothing."""
    with Store(tmp_path / "d", fsync="interval") as store:
        store.create_topic("t")
        store.write("t", b"x")
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with _topic_log(store, "t")._io_lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        try:
            started = time.monotonic()
            assert store.write_batches_now("t", [[b"y"]]) is None
            assert time.monotonic() - started < 1  # gave up, did not wait the 10 s
            assert store.topic("t").end_offset == 1
        finally:
            release.set()
            holder.join()
        assert store.write_batches_now("t", [[b"y"]]) == [1]


def test_not_when_the_write_would_start_a_segment(tmp_path):
    with Store(tmp_path / "d", fsync="interval") as store:
        store.create_topic("t", segment_bytes=4096)
        store.write("t", b"x" * 3000)
        assert store.write_batches_now("t", [[b"y" * 3000]]) is None  # a roll: the thread's
        store.write("t", b"y" * 3000)
        assert store.topic("t").segments == 2
        assert store.write_batches_now("t", [[b"z"]]) == [2]


def test_not_before_the_topic_is_loaded_from_disk(tmp_path):
    with Store(tmp_path / "d", fsync="interval") as store:
        store.create_topic("t")
        store.write("t", b"x")
    with Store(tmp_path / "d", fsync="interval") as store:
        assert store.write_batches_now("t", [[b"y"]]) is None  # recovery reads the disk
        store.read("t", 0)
        assert store.write_batches_now("t", [[b"y"]]) == [1]


def test_bad_input_raises_as_write_batches_does(tmp_path):
    with Store(tmp_path / "d", fsync="interval", max_message_bytes=10) as store:
        store.create_topic("t")
        store.write("t", b"x")
        with pytest.raises(MessageTooLarge):
            store.write_batches_now("t", [[b"y" * 11]])
        assert store.topic("t").end_offset == 1
        assert store.write_batches_now("nope", [[b"y"]]) is None  # not loaded: the thread's
        with pytest.raises(TopicNotFound):  # write_batches then says why
            store.write_batches("nope", [[b"y"]])


def test_wakes_a_waiter_of_the_same_event_loop(tmp_path):
    with Store(tmp_path / "d", fsync="interval") as store:
        store.create_topic("t")
        store.write("t", b"x")

        async def scenario() -> bool:
            waiter = asyncio.create_task(store.wait_async("t", 1, 5))
            await asyncio.sleep(0.05)
            assert store.write_batches_now("t", [[b"y"]]) == [1]
            return await asyncio.wait_for(waiter, 1)

        assert asyncio.run(scenario()) is True


def test_publishes_acknowledged_by_the_server_survive_its_sigkill(tmp_path):
    """Publishes written on the event loop (fsync="interval") and on the publishing thread
    (when they collide) are all in the log after a SIGKILL, each at its answered offset."""
    served = ServeProcess(tmp_path / "d", "--fsync", "interval")
    try:
        assert served.request("PUT", "/topics/t").status == 201

        def publish(worker: int) -> list[tuple[int, bytes]]:
            acked = []
            for i in range(150):
                value = b"%d-%d" % (worker, i)
                reply = served.request("POST", "/topics/t/messages", value)
                assert reply.status == 201, reply.body
                acked.append((reply.json["first_offset"], value))
            return acked

        with ThreadPoolExecutor(4) as pool:
            acked = [pair for part in pool.map(publish, range(4)) for pair in part]
        served.stop(signal.SIGKILL)
    finally:
        served.stop(signal.SIGKILL)
    with Store(tmp_path / "d") as store:
        stored = {m.offset: m.value for m in store.read("t", 0, max_messages=10_000)}
    assert sorted(stored) == list(range(600))
    assert dict(acked) == stored
