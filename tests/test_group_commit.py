"""The one group-commit helper (`logstore.group_commit`): batching, hand-over, failures."""

from __future__ import annotations

import threading
import time

import pytest

from logstore import StorageError
from logstore.group_commit import GroupCommit


def test_concurrent_callers_share_writes_and_each_returns_after_its_own():
    written: list[list[int]] = []

    def write(items):
        time.sleep(0.005)  # a slow fsync: callers pile up behind it
        written.append(items)

    commits = GroupCommit(write, lambda failed, behind: [], name="test")
    done = []

    def caller(i):
        commits.submit([i])
        done.append(i)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == list(range(64))
    assert sorted(i for batch in written for i in batch) == list(range(64))
    assert len(written) < 32  # shared: far fewer writes than callers


def test_a_failed_write_fails_its_batch_and_the_one_behind_and_keeps_what_it_is_told():
    calls: list[list[str]] = []
    release = threading.Event()

    def write(items):
        calls.append(items)
        if items == ["first"]:
            release.wait(5)  # hold the lead while two more callers queue behind
            raise OSError("disk on fire")

    kept: list[tuple[list[str], list[str]]] = []

    def on_failure(failed, behind):
        kept.append((failed, behind))
        return ["retry-me"]

    commits = GroupCommit(write, on_failure, name="t")
    errors: dict[str, Exception] = {}

    def caller(item):
        try:
            commits.submit([item])
        except StorageError as exc:
            errors[item] = exc

    first = threading.Thread(target=caller, args=("first",))
    first.start()
    while not calls:
        time.sleep(0.001)
    behind = [threading.Thread(target=caller, args=(x,)) for x in ("a", "b")]
    for t in behind:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in [first, *behind]:
        t.join(5)
    assert set(errors) == {"first", "a", "b"}
    assert "disk on fire" in str(errors["first"])
    assert kept == [(["first"], ["a", "b"])]
    commits.flush()  # what was kept is written by the next leader
    assert calls[-1] == ["retry-me"]


def test_deferred_items_wait_for_a_flush_and_drain_takes_the_rest():
    written = []
    commits = GroupCommit(written.append, lambda failed, behind: failed + behind)
    with commits.lock:
        commits.defer_locked([1, 2])
    assert written == []
    commits.flush()
    assert written == [[1, 2]]
    with commits.lock:
        commits.defer_locked([3])
        assert commits.drain_locked() == [3]


def test_an_unexpected_exception_reaches_the_caller_as_a_storage_error():
    def write(items):
        raise ValueError("bug")

    commits = GroupCommit(write, lambda failed, behind: [], name="topic x")
    with pytest.raises(StorageError, match="bug"):
        commits.submit([1])
