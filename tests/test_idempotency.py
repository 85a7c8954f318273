"""Idempotency keys in the library: `Store.write*(..., idempotency_key(s)=...)`.

The policy (see `Store.write_batches`): the same key on the same topic within the window
answers the first write's first offset (a `Replayed`) without appending; a retry of a write
in flight waits for it; a failed write is forgotten; keys are per topic and go with it.
The server's Idempotency-Key header rides on this (tests/test_server_messages.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

import pytest

from logstore import (
    InvalidArgument,
    MessageTooLarge,
    Record,
    Replayed,
    StorageError,
    Store,
    TopicNotFound,
)
from logstore.engine.local.idempotency import IdempotencyTable


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data", fsync="never") as s:
        s.create_topic("t")
        yield s


def end(store, topic="t"):
    return store.topic(topic).end_offset


def test_same_key_twice_answers_the_first_offset_and_appends_once(store):
    store.write("t", b"before")
    first = store.write("t", b"a", idempotency_key="k")
    again = store.write("t", b"a", idempotency_key="k")
    assert first == again == 1
    assert not isinstance(first, Replayed) and isinstance(again, Replayed)
    assert end(store) == 2
    assert [m.value for m in store.read("t", 0)] == [b"before", b"a"]
    assert store.idempotency_keys == 1


def test_write_many_with_a_key_replays_the_whole_batch(store):
    batch = [b"a", Record(b"b", key=b"k", headers={"h": "v"})]
    assert store.write_many("t", batch, idempotency_key="order-42") == 0
    assert store.write_many("t", batch, idempotency_key="order-42") == Replayed(0)
    assert end(store) == 2
    assert store.write_many("t", batch, idempotency_key="order-43") == 2


def test_writes_without_keys_are_never_deduplicated(store):
    assert [store.write("t", b"a") for _ in range(3)] == [0, 1, 2]
    assert store.idempotency_keys == 0


def test_keys_of_different_topics_are_independent(store):
    store.create_topic("other")
    store.write("other", b"x")
    assert store.write("t", b"a", idempotency_key="k") == 0
    got = store.write("other", b"a", idempotency_key="k")
    assert got == 1 and not isinstance(got, Replayed)
    assert store.idempotency_keys == 2


def test_write_batches_takes_one_key_or_none_per_batch(store):
    firsts = store.write_batches(
        "t", [[b"a"], [b"b", b"c"], [b"d"]], idempotency_keys=["x", None, "y"]
    )
    assert firsts == [0, 1, 3]
    again = store.write_batches(
        "t", [[b"a"], [b"b", b"c"], [b"d"], [b"e"]], idempotency_keys=["x", None, "y", "z"]
    )
    assert again == [0, 4, 3, 6]
    assert [type(f) for f in again] == [Replayed, int, Replayed, int]
    assert end(store) == 7


def test_a_key_twice_in_one_call_appends_once(store):
    firsts = store.write_batches("t", [[b"a"], [b"b"], [b"a"]], idempotency_keys=["k", None, "k"])
    assert firsts == [0, 1, 0]
    assert isinstance(firsts[2], Replayed)
    assert end(store) == 2


def test_keys_are_validated(store):
    for bad in ("", "k" * 257, b"bytes", 7):
        with pytest.raises(InvalidArgument):
            store.write("t", b"a", idempotency_key=bad)
    with pytest.raises(InvalidArgument):
        store.write_batches("t", [[b"a"], [b"b"]], idempotency_keys=["k"])
    assert store.write("t", b"a", idempotency_key="k" * 256) == 0
    with pytest.raises(InvalidArgument):
        Store(store.path + "-2", idempotency_window=0)


def test_a_write_refused_as_too_large_is_forgotten(tmp_path):
    with Store(tmp_path / "data", fsync="never", max_message_bytes=10) as store:
        store.create_topic("t")
        with pytest.raises(MessageTooLarge):
            store.write("t", b"x" * 11, idempotency_key="k")
        got = store.write("t", b"fits", idempotency_key="k")
        assert got == 0 and not isinstance(got, Replayed)


def test_a_failed_write_is_forgotten_and_its_retry_really_runs(store, monkeypatch):
    real = os.pwrite

    def failing(fd, data, position):
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(StorageError):
        store.write("t", b"a", idempotency_key="k")
    monkeypatch.setattr(os, "pwrite", real)
    assert store.idempotency_keys == 0
    got = store.write("t", b"a", idempotency_key="k")
    assert got == 0 and not isinstance(got, Replayed)
    assert store.write("t", b"a", idempotency_key="k") == Replayed(0)


def test_keys_are_forgotten_when_the_topic_is_deleted(store):
    store.write("t", b"a", idempotency_key="k")
    store.delete_topic("t")
    assert store.idempotency_keys == 0
    with pytest.raises(TopicNotFound):
        store.write("t", b"a", idempotency_key="k")
    store.create_topic("t")
    got = store.write("t", b"a", idempotency_key="k")
    assert got == 0 and not isinstance(got, Replayed)
    assert end(store) == 1


def test_keys_expire_after_the_window(tmp_path):
    with Store(tmp_path / "data", fsync="never", idempotency_window=0.2) as store:
        store.create_topic("t")
        assert store.write("t", b"a", idempotency_key="k") == 0
        assert store.write("t", b"a", idempotency_key="k") == Replayed(0)
        time.sleep(0.25)
        assert store.idempotency_keys == 0
        got = store.write("t", b"a", idempotency_key="k")
        assert got == 1 and not isinstance(got, Replayed)


def test_a_restart_forgets_the_keys(tmp_path):
    with Store(tmp_path / "data", fsync="never") as store:
        store.create_topic("t")
        store.write("t", b"a", idempotency_key="k")
    with Store(tmp_path / "data", fsync="never") as store:
        assert store.write("t", b"a", idempotency_key="k") == 1


def test_concurrent_duplicates_from_threads_append_once(tmp_path):
    with Store(tmp_path / "data", fsync="always") as store:
        store.create_topic("t")
        results: list[int] = []
        start = threading.Barrier(16)

        def send(i):
            start.wait()
            results.append(store.write("t", b"once", idempotency_key="same"))
            store.write("t", b"other %d" % i)  # keyless writes share the group commits

        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == [results[0]] * 16
        assert sum(not isinstance(r, Replayed) for r in results) == 1
        values = [m.value for m in store.read("t", 0, 100)]
        assert values.count(b"once") == 1 and len(values) == 17


class GatedWrite:
    """Holds the next segment write until released, then lets it succeed or fail."""

    def __init__(self, monkeypatch):
        self.real = os.pwrite
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = False
        self.armed = True
        monkeypatch.setattr(os, "pwrite", self)

    def __call__(self, fd, data, position):
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.release.wait(10)
            if self.fail:
                raise OSError(errno.EIO, "injected")
        return self.real(fd, data, position)


def _in_thread(fn, *args, **kw):
    out: dict = {}

    def run():
        try:
            out["result"] = fn(*args, **kw)
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.parametrize("fail", [False, True])
def test_a_retry_of_a_write_in_flight_waits_for_its_outcome(store, monkeypatch, fail):
    gate = GatedWrite(monkeypatch)
    gate.fail = fail
    first, first_out = _in_thread(store.write, "t", b"a", idempotency_key="k")
    assert gate.entered.wait(10)  # the first write is being written now
    retry, retry_out = _in_thread(store.write, "t", b"a", idempotency_key="k")
    time.sleep(0.1)
    assert retry.is_alive()  # waiting for the first write, not appending
    gate.release.set()
    first.join(10)
    retry.join(10)
    if not fail:
        assert first_out["result"] == 0
        assert retry_out["result"] == Replayed(0)
    else:
        assert isinstance(first_out["error"], StorageError)
        got = retry_out["result"]  # the first failed, so the retry was appended after all
        assert got == 0 and not isinstance(got, Replayed)
    assert end(store) == 1
    assert store.write("t", b"a", idempotency_key="k") == Replayed(0)


def test_the_table_drops_the_oldest_keys_beyond_its_capacity():
    table = IdempotencyTable(window=60.0, max_keys=3)
    written = (None, 0)  # stands for a finished, successful batch's ticket
    for i in range(5):
        table.add(1, f"k{i}", i, written).settle()
    assert len(table) == 3
    assert table.find(1, "k0") is None and table.find(1, "k1") is None
    assert table.find(1, "k4").first == 4
    table.forget_topic(1)
    assert len(table) == 0


@pytest.mark.parametrize("fail", [False, True])
def test_a_caller_that_queues_nothing_waits_for_the_write_in_flight(fail):
    """The mechanism behind waiting for a key in flight (`logstore.group_commit`): a caller
    that queues nothing is handed leadership like any other (no hang with an empty queue),
    and when its wait returns the batch before it has finished."""
    from logstore.group_commit import GroupCommit, succeeded

    entered, release = threading.Event(), threading.Event()
    written: list[list[str]] = []

    def write(items):
        if items == ["first"]:
            entered.set()
            release.wait(5)
            if fail:
                raise OSError("injected")
        written.append(items)

    commits: GroupCommit[str] = GroupCommit(write, lambda failed, behind: [], name="t")
    tickets = {}

    def first():
        with commits.lock:
            tickets["first"] = commits.enqueue_locked(["first"])
        with pytest.raises(StorageError) if fail else contextlib.nullcontext():
            commits.wait(tickets["first"])

    seen = []

    def empty():
        with commits.lock:
            ticket = commits.enqueue_locked([])
        with contextlib.suppress(StorageError):
            commits.wait(ticket)
        seen.append(succeeded(tickets["first"]))

    t1 = threading.Thread(target=first)
    t1.start()
    assert entered.wait(5)
    t2 = threading.Thread(target=empty)
    t2.start()
    time.sleep(0.05)
    release.set()
    t1.join(5)
    t2.join(5)
    assert not t2.is_alive()
    assert seen == [not fail]
    assert written == ([] if fail else [["first"]])  # the empty batch wrote nothing
    commits.submit(["later"])  # leadership was handed back: the next caller leads
    assert written[-1] == ["later"]
