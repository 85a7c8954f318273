"""Durability across processes: SIGKILLed writers, a second writer, read-only followers, a
full disk. Each test runs the store in real child processes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from logstore import Store, StoreLocked

WRITER = textwrap.dedent(
    """
    import sys
    from logstore import Store
    path, seed = sys.argv[1], int(sys.argv[2])
    import random
    rnd = random.Random(seed)
    store = Store(path, fsync="always")
    store.create_topic("t", segment_bytes=16384, exist_ok=True)
    batch_id = 0
    while True:
        batch_id += 1
        size = rnd.choice([1, 1, 1, 3, 20])
        values = [b"%d:%d:%d:%d" % (seed, batch_id, i, size) + b"." * rnd.randint(0, 300)
                  for i in range(size)]
        if size == 1:
            first = store.write("t", values[0])
        else:
            first = store.write_many("t", values)
        print(first, seed, batch_id, size, flush=True)
    """
)


def run_writer_and_kill(path, seed, after):
    """Run WRITER until `after` seconds past its first acknowledged write (however slow its
    start-up on a loaded machine), SIGKILL it; the writes it reported as returned."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    started = time.monotonic()
    while not lines and proc.poll() is None and time.monotonic() - started < 60:
        time.sleep(0.01)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    return [tuple(map(int, line.split())) for line in lines if line.endswith("\n")]


@pytest.mark.slow
def test_sigkilled_writer_loses_no_acknowledged_write(tmp_path):
    rounds = 12
    rnd = random.Random(1234)
    acknowledged = {}
    for round_no in range(rounds):
        acked = run_writer_and_kill(tmp_path, round_no, rnd.uniform(0.1, 0.5))
        for first, seed, batch, size in acked:
            for i in range(size):
                acknowledged[first + i] = (seed, batch, i, size)
        with Store(tmp_path) as store:
            info = store.topic("t")
            messages = store.read("t", 0, max_messages=10**6)
            assert [m.offset for m in messages] == list(range(info.end_offset))
            seen_batches = {}
            for m in messages:
                seed, batch, i, size = map(int, m.value.split(b".")[0].split(b":"))
                seen_batches.setdefault((seed, batch), []).append((m.offset, i, size))
            for parts in seen_batches.values():
                size = parts[0][2]
                assert [i for _, i, _ in parts] == list(range(size)), "torn batch"
                assert [o for o, _, _ in parts] == list(range(parts[0][0], parts[0][0] + size))
            for offset, (seed, batch, i, size) in acknowledged.items():
                assert offset < info.end_offset, f"acknowledged offset {offset} lost"
                value = messages[offset].value.split(b".")[0]
                assert value == b"%d:%d:%d:%d" % (seed, batch, i, size)
    assert len(acknowledged) > 100


def test_second_writer_process_gets_store_locked(tmp_path):
    with Store(tmp_path):
        code = textwrap.dedent(
            """
            import sys
            from logstore import Store, StoreLocked
            try:
                Store(sys.argv[1])
            except StoreLocked as exc:
                print("locked:", exc)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.startswith("locked:"), out.stderr
        assert str(tmp_path) in out.stdout
        with pytest.raises(StoreLocked):
            Store(tmp_path)


def test_readonly_reader_process_sees_new_messages_as_they_are_written(tmp_path):
    with Store(tmp_path, fsync="always") as store:
        store.create_topic("t", segment_bytes=4096)
        store.write("t", b"before")
        code = textwrap.dedent(
            """
            import sys
            from logstore import Store
            with Store(sys.argv[1], readonly=True) as r:
                offset = 0
                while offset < 300:
                    for m in r.read("t", offset, max_messages=1000, wait=10):
                        print(m.offset, m.value.decode(), flush=True)
                        offset = m.offset + 1
            """
        )
        reader = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        try:
            time.sleep(0.3)
            for i in range(1, 300):
                store.write("t", b"v%d" % i + b"." * 50)
            out, _ = reader.communicate(timeout=60)
        finally:
            reader.kill()
    lines = out.splitlines()
    assert lines[0] == "0 before"
    assert [int(line.split()[0]) for line in lines] == list(range(300))
    assert lines[-1].startswith("299 v299")


DISK_FULL = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from logstore import Store, StorageFull
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    path = sys.argv[1]
    store = Store(path, fsync="always")
    store.create_topic("t", segment_bytes=2**30)
    for i in range(10):
        store.write("t", b"before-%d" % i)
    segment = [os.path.join(dp, f) for dp, _, fs in os.walk(path) for f in fs
               if f.endswith(".log")][0]
    good_size = os.path.getsize(segment)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (good_size + 5000, hard))
    result = {"acked": 10, "errors": 0}
    for i in range(1000):
        try:
            store.write("t", b"fill-%04d" % i + b"x" * 100)
            result["acked"] += 1
        except StorageFull as exc:
            result["errors"] += 1
            result["message"] = str(exc)
            break
    result["size_after_error"] = os.path.getsize(segment)
    result["read_back"] = len(store.read("t", 0, max_messages=10**6))
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    result["offset_after_space_returned"] = store.write("t", b"after")
    store.close()
    result["final_size"] = os.path.getsize(segment)
    print(json.dumps(result))
    """
)


def test_full_disk_fails_writes_cleanly_and_they_resume_when_space_returns(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["errors"] == 1 and "free space" in result["message"]
    assert result["read_back"] == result["acked"]
    assert result["offset_after_space_returned"] == result["acked"]
    with Store(tmp_path) as store:
        messages = store.read("t", 0, max_messages=10**6)
        assert [m.offset for m in messages] == list(range(result["acked"] + 1))
        assert messages[-1].value == b"after"
        assert store.stats.truncations == 0


MANY_TOPICS = textwrap.dedent(
    """
    import resource, sys
    from logstore import Store
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    path = sys.argv[1]
    with Store(path, fsync="never", max_open_files=100) as store:
        for i in range(10_000):
            store.create_topic(f"t{i}")
            store.write(f"t{i}", b"%d" % i)
    with Store(path, max_open_files=100) as store:
        assert len(store.topics()) == 10_000
        for i in range(10_000):
            assert store.read(f"t{i}", 0)[0].value == b"%d" % i
        assert len(store._engine._ctx.handles) <= 100
    print("ok")
    """
)


@pytest.mark.slow
def test_ten_thousand_topics_run_within_a_small_descriptor_limit(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", MANY_TOPICS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
