"""The library's public behaviour: topics, writes, reads, waiting, errors (SPEC §2, §3)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from logstore import (
    InvalidArgument,
    InvalidName,
    MessageTooLarge,
    OffsetOutOfRange,
    ReadOnlyStore,
    Record,
    Store,
    StoreClosed,
    TopicExists,
    TopicNotFound,
)
from logstore.errors import LogstoreError


@pytest.mark.local_only("segments: a cluster reports null (its servers keep their own blocks)")
def test_create_list_info_delete(store):
    info = store.create_topic("orders", name="Orders ✓", retention_ms=1000, segment_bytes=8192)
    assert (info.id, info.name, info.start_offset, info.end_offset) == ("orders", "Orders ✓", 0, 0)
    assert (info.retention_ms, info.retention_bytes, info.segment_bytes) == (1000, None, 8192)
    assert info.segments == 1 and info.created_at > 0
    store.create_topic("audit")
    assert [t.id for t in store.topics()] == ["audit", "orders"]
    store.delete_topic("orders")
    assert [t.id for t in store.topics()] == ["audit"]
    with pytest.raises(TopicNotFound):
        store.topic("orders")
    with pytest.raises(TopicNotFound):
        store.delete_topic("orders")


def test_create_existing_topic_is_an_error_unless_same_settings_and_exist_ok(store):
    store.create_topic("t", name="T")
    with pytest.raises(TopicExists):
        store.create_topic("t", name="T")
    assert store.create_topic("t", name="T", exist_ok=True).id == "t"
    with pytest.raises(TopicExists, match="different settings"):
        store.create_topic("t", name="other", exist_ok=True)


def test_topic_exists_says_which_setting_differs(store):
    store.create_topic("t", retention_ms=60_000)
    with pytest.raises(TopicExists) as caught:
        store.create_topic("t", retention_ms=3_600_000, exist_ok=True)
    assert "retention_ms=60000, not 3600000" in str(caught.value)
    assert "name" not in str(caught.value).split("(")[1]


def test_delete_then_recreate_starts_a_fresh_topic_at_offset_zero(store):
    store.create_topic("t")
    store.write_many("t", [b"a", b"b", b"c"])
    store.delete_topic("t")
    store.create_topic("t")
    assert store.topic("t").end_offset == 0
    assert store.write("t", b"new") == 0
    assert [m.value for m in store.read("t", 0)] == [b"new"]


def test_delete_then_recreate_survives_reopen(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t")
        store.write_many("t", [b"old"] * 5)
        store.delete_topic("t")
        store.create_topic("t")
        store.write("t", b"new")
    with Store(data_dir) as store:
        assert [(m.offset, m.value) for m in store.read("t", 0)] == [(0, b"new")]


@pytest.mark.parametrize(
    "bad", ["", "-x", ".hidden", "a/b", "..", "a" * 250, "sp ace", "ü", "a\x00b", None, 5]
)
def test_invalid_topic_names_are_refused_before_the_file_system(store, bad):
    with pytest.raises(InvalidName):
        store.create_topic(bad)
    with pytest.raises(InvalidName):
        store.read(bad)


def test_valid_names_use_the_whole_alphabet(store):
    for name in ["a", "A.b_c-9", "9" * 249]:
        store.create_topic(name)
    assert len(store.topics()) == 3


def test_offsets_are_dense_and_timestamps_never_decrease(store):
    store.create_topic("t")
    offsets = [store.write("t", bytes([i])) for i in range(50)]
    offsets.append(store.write_many("t", [b"x"] * 10))
    assert offsets[:50] == list(range(50)) and offsets[50] == 50
    messages = store.read("t", 0, max_messages=1000)
    assert [m.offset for m in messages] == list(range(60))
    stamps = [m.timestamp for m in messages]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - time.time() * 1000) < 60_000


def test_keys_headers_and_empty_values_round_trip(store):
    store.create_topic("t")
    store.write("t", b"", key=b"k1", headers={"content-type": "text/plain", "ü": "✓"})
    store.write_many("t", [b"plain", Record(b"v", key=b""), Record(b"w", headers={"a": "b"})])
    m = store.read("t", 0)
    assert (m[0].value, m[0].key, dict(m[0].headers)) == (
        b"",
        b"k1",
        {"content-type": "text/plain", "ü": "✓"},
    )
    assert (m[1].value, m[1].key, dict(m[1].headers)) == (b"plain", None, {})
    assert (m[2].value, m[2].key) == (b"v", b"")
    assert (m[3].value, m[3].key, dict(m[3].headers)) == (b"w", None, {"a": "b"})


def test_read_from_the_middle_of_a_batch_and_limits(store):
    store.create_topic("t")
    store.write_many("t", [str(i).encode() for i in range(1000)])
    assert [m.offset for m in store.read("t", 500, max_messages=3)] == [500, 501, 502]
    assert store.read("t", 999)[0].value == b"999"
    assert store.read("t", 1000) == []
    by_bytes = store.read("t", 0, max_messages=1000, max_bytes=10)
    assert [m.value for m in by_bytes] == [str(i).encode() for i in range(10)]


def test_max_bytes_always_returns_at_least_one_message(store):
    store.create_topic("t")
    store.write("t", b"x" * 100)
    assert len(store.read("t", 0, max_bytes=1)) == 1


@pytest.mark.local_only("segments: a cluster reports null (its servers keep their own blocks)")
def test_reads_span_segments(store):
    store.create_topic("t", segment_bytes=4096)
    for i in range(200):
        store.write("t", b"%03d" % i + b"." * 100)
    assert store.topic("t").segments > 3
    values = [m.value[:3] for m in store.read("t", 0, max_messages=500)]
    assert values == [b"%03d" % i for i in range(200)]
    assert store.read("t", 137, max_messages=1)[0].value[:3] == b"137"


def test_out_of_range_offsets_carry_both_bounds(store):
    store.create_topic("t")
    store.write_many("t", [b"a", b"b"])
    with pytest.raises(OffsetOutOfRange) as err:
        store.read("t", 3)
    assert (err.value.start_offset, err.value.end_offset, err.value.offset) == (0, 2, 3)
    with pytest.raises(OffsetOutOfRange):
        store.read("t", -1)


def test_bad_arguments_are_clear_errors(store):
    store.create_topic("t")
    with pytest.raises(InvalidArgument):
        store.write("t", "text is not bytes")
    with pytest.raises(InvalidArgument):
        store.write("t", b"v", key="str key")
    with pytest.raises(InvalidArgument):
        store.write("t", b"v", headers={"a": 1})
    with pytest.raises(InvalidArgument):
        store.write_many("t", [])
    with pytest.raises(InvalidArgument):
        store.read("t", 0, max_messages=0)
    with pytest.raises(InvalidArgument):
        store.read("t", 0, wait=-1)
    with pytest.raises(InvalidArgument):
        store.create_topic("u", segment_bytes=10)
    with pytest.raises(InvalidArgument):
        Store("/nonexistent-never", fsync="sometimes")
    assert store.topic("t").end_offset == 0


def test_message_too_large_is_refused_and_nothing_is_written(data_dir):
    with Store(data_dir, fsync="never", max_message_bytes=1000) as store:
        store.create_topic("t")
        with pytest.raises(MessageTooLarge) as err:
            store.write("t", b"x" * 1001)
        assert err.value.limit == 1000
        with pytest.raises(MessageTooLarge):
            store.write_many("t", [b"ok", b"x" * 1001])
        assert store.topic("t").end_offset == 0
        store.write("t", b"x" * 1000)


def test_all_errors_share_one_base_class():
    from logstore import errors

    for name in [
        "TopicNotFound",
        "TopicExists",
        "SubscriptionNotFound",
        "InvalidName",
        "OffsetOutOfRange",
        "MessageTooLarge",
        "StoreLocked",
        "StoreClosed",
        "Corruption",
        "StorageFull",
    ]:
        assert issubclass(getattr(errors, name), LogstoreError)


def test_offset_for_time_finds_the_first_message_at_or_after(store):
    store.create_topic("t")
    store.write("t", b"a")
    time.sleep(0.02)
    middle = int(time.time() * 1000)
    time.sleep(0.02)
    store.write_many("t", [b"b", b"c"])
    assert store.offset_for_time("t", 0) == 0
    assert store.offset_for_time("t", middle) == 1
    assert store.offset_for_time("t", datetime.fromtimestamp(middle / 1000, UTC)) == 1
    assert store.offset_for_time("t", int(time.time() * 1000) + 10_000) == 3


def test_offset_for_time_over_many_index_entries(data_dir):
    with Store(data_dir, fsync="never") as store:
        store.create_topic("t", segment_bytes=64 * 1024)
        stamps = []
        for i in range(300):
            store.write_many("t", [b"x" * 200] * 5)
            stamps.append(store.read("t", i * 5, max_messages=1)[0].timestamp)
            if i % 50 == 0:
                time.sleep(0.003)
    with Store(data_dir) as store:
        for i in range(0, 300, 7):
            expected = next(j for j, ts in enumerate(stamps) if ts >= stamps[i]) * 5
            assert store.offset_for_time("t", stamps[i]) == expected


def test_read_wait_blocks_until_a_write_arrives(store):
    store.create_topic("t")
    threading.Timer(0.1, store.write, args=("t", b"late")).start()
    started = time.monotonic()
    messages = store.read("t", 0, wait=5.0)
    assert [m.value for m in messages] == [b"late"]
    assert time.monotonic() - started < 4.0


def test_read_wait_times_out_with_nothing(store):
    store.create_topic("t")
    started = time.monotonic()
    assert store.read("t", 0, wait=0.2) == []
    assert 0.15 < time.monotonic() - started < 3.0


@pytest.mark.store_only("Store's *_async methods; AsyncClient is the client's asyncio form")
def test_wait_async_does_not_block_the_event_loop(store):
    store.create_topic("t")

    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(
            0.2, lambda: threading.Thread(target=store.write, args=("t", b"x")).start()
        )
        got = await store.read_async("t", 0, wait=5.0)
        tick_task.cancel()
        return got, ticks

    got, ticks = asyncio.run(scenario())
    assert [m.value for m in got] == [b"x"]
    assert ticks >= 5


@pytest.mark.store_only("Store's *_async methods; AsyncClient is the client's asyncio form")
def test_wait_async_times_out(store):
    store.create_topic("t")
    assert asyncio.run(store.wait_async("t", 0, 0.05)) is False


def test_many_threads_write_and_every_offset_is_unique(data_dir):
    with Store(data_dir, fsync="always") as store:
        store.create_topic("t")
        results: list[int] = []
        lock = threading.Lock()

        def writer(n):
            for i in range(25):
                off = store.write("t", b"%d-%d" % (n, i))
                with lock:
                    results.append(off)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == list(range(400))
        values = {m.offset: m.value for m in store.read("t", 0, max_messages=1000)}
        assert len(values) == 400 and len(set(values.values())) == 400
        assert store.stats.fsyncs < 400


def test_closed_store_refuses_calls_and_wakes_waiters(data_dir):
    store = Store(data_dir, fsync="never")
    store.create_topic("t")
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait("t", 0, 10.0)))
    waiter.start()
    time.sleep(0.05)
    store.close()
    waiter.join(5)
    assert woke == [False]
    with pytest.raises(StoreClosed):
        store.write("t", b"x")
    with pytest.raises(StoreClosed):
        store.topics()


def test_readonly_store_refuses_writes(data_dir):
    with Store(data_dir) as store:
        store.create_topic("t")
    with Store(data_dir, readonly=True) as reader:
        with pytest.raises(ReadOnlyStore):
            reader.write("t", b"x")
        with pytest.raises(ReadOnlyStore):
            reader.create_topic("u")


def test_open_file_handles_stay_bounded_with_many_topics(data_dir):
    with Store(data_dir, fsync="never", max_open_files=32) as store:
        for i in range(300):
            store.create_topic(f"t{i}")
            store.write(f"t{i}", b"x")
        for i in range(300):
            assert store.read(f"t{i}", 0)[0].value == b"x"
        assert len(store._engine._ctx.handles) <= 32


def test_write_batches_appends_each_batch_atomically_with_one_fsync(data_dir):
    with Store(data_dir, fsync="always") as store:
        store.create_topic("t")
        store.write("t", b"first")
        before = store.stats.fsyncs
        firsts = store.write_batches("t", [[b"a", b"b"], [Record(b"c", key=b"k")], [b"d"]])
        assert firsts == [1, 3, 4]
        assert store.stats.fsyncs == before + 1
        assert [m.value for m in store.read("t", 0)] == [b"first", b"a", b"b", b"c", b"d"]


def test_write_batches_checks_every_batch_before_writing_any(data_dir):
    with Store(data_dir, fsync="never", max_message_bytes=10) as store:
        store.create_topic("t")
        with pytest.raises(MessageTooLarge):
            store.write_batches("t", [[b"ok"], [b"x" * 11]])
        with pytest.raises(InvalidArgument):
            store.write_batches("t", [[b"ok"], []])
        assert store.topic("t").end_offset == 0


def test_a_store_closes_in_the_thread_an_interrupt_left_holding_a_wait_lock(data_dir):
    """Ctrl-C can land between taking a watermark's lock and entering its `with` block
    (CPython 3.11), leaving the lock held by the main thread; closing the store in that
    thread must still finish (it hung `logstore read -f --data` once)."""
    code = (
        "import sys; from logstore import Store\n"
        "store = Store(sys.argv[1], fsync='never'); store.create_topic('t')\n"
        "store._engine._log('t').visible._cond.acquire()\n"
        "store.close(); print('closed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, timeout=20
    )
    assert done.stdout.strip() == "closed", done.stderr
