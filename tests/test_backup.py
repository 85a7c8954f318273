"""`logstore backup` / `restore` (logstore.backup, logstore.restore): copies of a live store.

The load tests run a real writer process (an embedded `Store`, fsync="always", threads
publishing in a bounded loop) and record every acknowledged offset in a file as each write
returns. A backup must then hold, for each topic, a run of offsets without gaps whose every
message is one the writer acknowledged at that offset, ending no earlier than what was
acknowledged before the backup started and no later than what the source made visible.
"""

from __future__ import annotations

import glob
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import time

import pytest
from test_server_support import ServeProcess

from logstore import Client, Corruption, InvalidArgument, Store, backup, check_store, restore
from logstore_server.cli import main

WRITER = r"""
import os, sys, threading
from logstore import Store

data, acks, stop = sys.argv[1:4]
log = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
store = Store(data, fsync="always")
store.create_topic("plain", segment_bytes=64 * 1024)
store.create_topic("retained", segment_bytes=64 * 1024, retention_bytes=256 * 1024)
store.subscribe("plain", "readers")
os.write(log, b"ready\n")

def publish(topic, thread):
    for batch in range(4000):
        if batch % 20 == 0 and os.path.exists(stop):
            return
        values = [b"%s-%d-%d-%d-" % (topic.encode(), thread, batch, i) + b"x" * 80
                  for i in range(10)]
        first = store.write_many(topic, values)
        os.write(log, b"%s %d %d %d\n" % (topic.encode(), first, thread, batch))

def consume():
    while not os.path.exists(stop):
        got = store.poll("plain", "readers", max_messages=50, wait=0.1)
        if got:
            store.ack("plain", "readers", [d.offset for d in got])

threads = [threading.Thread(target=publish, args=("plain", 0)),
           threading.Thread(target=publish, args=("plain", 1)),
           threading.Thread(target=publish, args=("retained", 2)),
           threading.Thread(target=consume)]
for t in threads:
    t.start()
for t in threads:
    t.join()
store.close()
"""


class Writer:
    """The writer process and its acknowledgement log."""

    def __init__(self, tmp_path):
        self.data = str(tmp_path / "source")
        self.acks = str(tmp_path / "acks")
        self.stop_file = str(tmp_path / "stop")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, self.data, self.acks, self.stop_file],
            stderr=subprocess.PIPE,
        )

    def acknowledged(self) -> dict[str, dict[int, bytes]]:
        """Every acknowledged message so far: topic -> offset -> value."""
        acked: dict[str, dict[int, bytes]] = {"plain": {}, "retained": {}}
        with open(self.acks, "rb") as f:
            lines = f.read().splitlines()
        for line in lines[1:]:
            topic, first, thread, batch = line.split()
            for i in range(10):
                value = b"%s-%s-%s-%d-" % (topic, thread, batch, i) + b"x" * 80
                acked[topic.decode()][int(first) + i] = value
        return acked

    def wait_for(self, messages: int, timeout: float = 30) -> None:
        """Until every topic has this many acknowledged messages (the writer is running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.acks) and os.path.getsize(self.acks) > 6:
                acked = self.acknowledged()
                if all(len(offsets) >= messages for offsets in acked.values()):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.finish()
        pytest.fail(f"the writer did not acknowledge {messages} messages per topic")

    def finish(self) -> int:
        """Stop the bounded loop, wait for the process; its exit code."""
        open(self.stop_file, "w").close()
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def acked_end(acked: dict[int, bytes]) -> int:
    """The end of the run of acknowledged offsets from the lowest (what must be kept)."""
    end = min(acked) if acked else 0
    while end in acked:
        end += 1
    return end


def read_all(store: Store | Client, topic: str) -> list:
    info = store.topic(topic)
    return list(store.messages(topic, info.start_offset, follow=False))


def assert_acknowledged_run(messages, acked: dict[int, bytes], acked_before: int, topic: str):
    """No gap, each message the one acknowledged at its offset, nothing acknowledged before
    the backup started missing from its end."""
    offsets = [m.offset for m in messages]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"gap in {topic}"
    wrong = [m.offset for m in messages if acked.get(m.offset) != m.value]
    assert not wrong, f"{topic}: offsets {wrong[:5]} hold no acknowledged message"
    assert offsets[-1] + 1 >= acked_before, f"{topic} ends before what was acknowledged"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "logstore_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def loaded_backup(tmp_path_factory):
    """A backup taken by `logstore backup` while the writer publishes at full speed."""
    tmp_path = tmp_path_factory.mktemp("live")
    writer = Writer(tmp_path)
    try:
        writer.wait_for(3000)
        acked = writer.acknowledged()
        before = {t: acked_end(a) for t, a in acked.items()}
        dest = str(tmp_path / "backup")
        result = run_cli("backup", writer.data, dest)
        during = writer.acknowledged()
    finally:
        code = writer.finish()
    assert code == 0, writer.proc.stderr.read().decode()
    assert result.returncode == 0, result.stderr
    # Writes went on while the backup ran (else it proves nothing about a live store).
    assert all(len(during[t]) > len(acked[t]) for t in acked)
    return dest, before, writer.acknowledged(), result.stdout


def test_backup_under_full_speed_writes_holds_only_acknowledged_messages_in_order(
    loaded_backup,
):
    dest, before, acked, out = loaded_backup
    assert "backed up 2 topic(s)" in out
    with Store(dest, readonly=True) as store:
        for topic in ("plain", "retained"):
            messages = read_all(store, topic)
            assert_acknowledged_run(messages, acked[topic], before[topic], topic)
            assert messages[-1].offset + 1 < acked_end(acked[topic])  # the writer went on
        [sub] = store.subscriptions("plain")
        assert sub.ack_floor <= store.topic("plain").end_offset  # never ahead of its topic
    with open(os.path.join(dest, "BACKUP.json")) as f:
        manifest = json.load(f)
    assert set(manifest["topics"]) == {"plain", "retained"}
    assert not os.path.exists(os.path.join(dest, "index"))  # a cache: rebuilt on open


def test_check_passes_on_a_backup_taken_under_load(loaded_backup):
    dest = loaded_backup[0]
    result = run_cli("check", dest)
    assert result.returncode == 0, result.stdout
    assert "no damage" in result.stdout


def test_restored_backup_serves_its_messages_over_http(loaded_backup, tmp_path):
    dest, before, acked, _ = loaded_backup
    restored = str(tmp_path / "restored")
    result = run_cli("restore", dest, restored)
    assert result.returncode == 0, result.stderr
    assert "checked: no damage" in result.stdout
    served = ServeProcess(restored)
    try:
        with Client(served.url) as client:
            for topic in ("plain", "retained"):
                assert_acknowledged_run(read_all(client, topic), acked[topic], before[topic], topic)
            end = client.topic("plain").end_offset
            assert client.write("plain", b"after the restore") == end
            [last] = client.read("plain", end)
            assert last.value == b"after the restore"
    finally:
        code, err = served.stop()
    assert code == 0, err
    # The restored store appended to its own copy of the newest segment, not the backup's.
    with Store(dest, readonly=True) as store:
        assert store.topic("plain").end_offset == end


def test_backup_with_the_writer_killed_mid_copy_is_a_prefix_of_the_recovered_source(tmp_path):
    writer = Writer(tmp_path)
    killed = []

    def kill_halfway(phase: str, done: int, total: int) -> None:
        if not killed and done >= total // 2:
            writer.proc.send_signal(signal.SIGKILL)
            killed.append(done)

    try:
        writer.wait_for(3000)
        before = {t: acked_end(a) for t, a in writer.acknowledged().items()}
        dest = str(tmp_path / "backup")
        report = backup(writer.data, dest, kill_halfway)
    finally:
        writer.proc.kill()
        writer.proc.wait()
    assert killed and writer.proc.returncode == -signal.SIGKILL
    assert set(report.topics) == {"plain", "retained"}
    acked = writer.acknowledged()
    with Store(writer.data) as source, Store(dest, readonly=True) as copy:  # source recovers
        for topic in ("plain", "retained"):
            durable = {m.offset: m.value for m in read_all(source, topic)}
            messages = read_all(copy, topic)
            # Acknowledged, or made visible and durable just before the kill (the writer
            # died before recording the acknowledgement it was about to return).
            assert_acknowledged_run(messages, {**acked[topic], **durable}, before[topic], topic)
            assert messages[-1].offset < source.topic(topic).end_offset
    assert check_store(dest).damage == []


def make_store(path: str) -> None:
    with Store(path) as store:
        store.create_topic("a", segment_bytes=4096)
        store.create_topic("b")
        store.write_many("a", [b"a%d" % i for i in range(400)])
        store.write("b", b"b0")
        store.subscribe("b", "s")


COMMANDED = r"""
import sys
from logstore import Store

store = Store(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    command, topic, *target = line.split()
    if command == "delete":
        store.delete_topic(topic)
    else:  # "retain": write until retention moves the start offset to the target
        while store.topic(topic).start_offset < int(target[0]):
            store.write_many(topic, [b"z" * 100] * 10)
    print(store.topic(topic).start_offset if target else "done", flush=True)
store.close()
"""


class Commanded:
    """A writer process holding the store, changing it when told (LMDB opens a store once
    per process, so the backup under test must run in another process than its writer)."""

    def __init__(self, data: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", COMMANDED, data],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline() == "ready\n"

    def do(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            finally:
                self.proc.kill()
                self.proc.wait()


def test_a_topic_deleted_during_the_backup_is_left_out_with_its_subscriptions(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_store(src)
    writer = Commanded(src)
    answers = []

    def delete_b(phase: str, done: int, total: int) -> None:
        if not answers:  # the first call: after the metadata copy, before any topic
            answers.append(writer.do("delete b"))

    try:
        report = backup(src, dest, delete_b)
    finally:
        writer.close()
    assert answers == ["done"]
    assert report.deleted == ["b"] and list(report.topics) == ["a"]
    with Store(dest, readonly=True) as copy:
        assert [t.id for t in copy.topics()] == ["a"]
        assert [m.value for m in read_all(copy, "a")] == [b"a%d" % i for i in range(400)]
    [a_dir] = glob.glob(os.path.join(src, "topics", "*-a"))
    assert os.listdir(os.path.join(dest, "topics")) == [os.path.basename(a_dir)]
    assert not os.path.exists(os.path.join(dest, "LOCK"))
    restored = str(tmp_path / "restored")
    restore(dest, restored)
    with Store(restored) as store:  # the subscription of b went with it
        store.create_topic("b")
        assert store.subscriptions("b") == []


def test_retention_during_the_backup_drops_the_linked_older_segments_no_gap(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    with Store(src) as store:
        store.create_topic("r", segment_bytes=4096, retention_bytes=16 * 1024)
        for i in range(100):
            store.write_many("r", [b"%05d" % (i * 10 + j) + b"y" * 100 for j in range(10)])
    [directory] = glob.glob(os.path.join(src, "topics", "*-r"))
    bases = sorted(int(name[:20]) for name in os.listdir(directory) if name.endswith(".log"))
    assert len(bases) >= 4
    writer = Commanded(src)
    retained = []

    def retain_two_segments(phase: str, done: int, total: int) -> None:
        if done and not retained:  # the oldest segment is linked, the next not yet
            retained.append(int(writer.do(f"retain r {bases[1] + 1}")))

    try:
        backup(src, dest, retain_two_segments)
    finally:
        writer.close()
    assert retained == [bases[2]]
    with Store(dest, readonly=True) as copy:
        messages = read_all(copy, "r")
    assert messages[0].offset == retained[0]  # the linked oldest segment was dropped
    assert [m.offset for m in messages] == list(range(retained[0], 1000))
    assert all(m.value == b"%05d" % m.offset + b"y" * 100 for m in messages)
    assert check_store(dest).damage == []


def test_backup_stops_at_the_published_end_and_before_a_torn_tail(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    with Store(src) as store:
        for topic in ("ahead", "torn"):
            store.create_topic(topic)
            for i in range(100):
                store.write(topic, b"%s %d" % (topic.encode(), i))
    [ahead] = glob.glob(os.path.join(src, "topics", "*-ahead"))
    with open(os.path.join(ahead, "published"), "r+b") as f:
        f.write(struct.pack("<Q", 60))  # frames 60..99 written, not yet made visible
    [torn] = glob.glob(os.path.join(src, "topics", "*-torn"))
    os.unlink(os.path.join(torn, "published"))  # no bound: copied up to sound frames
    [segment] = glob.glob(os.path.join(torn, "*.log"))
    with open(segment, "rb+") as f:
        frame = f.read(100)
        f.seek(0, os.SEEK_END)
        f.write(frame[:30])  # half a frame: a write in flight
    report = backup(src, dest)
    assert (report.topics["ahead"].end_offset, report.topics["torn"].end_offset) == (60, 100)
    with Store(dest, readonly=True) as copy:
        assert [m.value for m in read_all(copy, "ahead")] == [b"ahead %d" % i for i in range(60)]
        assert len(read_all(copy, "torn")) == 100
    assert check_store(dest).damage == []


def test_backup_and_restore_refuse_a_destination_that_is_not_empty(tmp_path, capsys):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_store(src)
    os.mkdir(dest)
    open(os.path.join(dest, "keep.txt"), "w").close()
    assert main(["backup", src, dest]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert os.listdir(dest) == ["keep.txt"]
    assert not glob.glob(dest + ".partial-*")
    good = str(tmp_path / "good")
    assert main(["backup", src, good]) == 0
    assert main(["restore", good, dest]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["restore", src, str(tmp_path / "new")]) == 1  # a store, not a backup
    assert "not a logstore backup" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "new")


def test_restore_refuses_a_damaged_backup_and_creates_nothing(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_store(src)
    backup(src, dest)
    newest = sorted(glob.glob(os.path.join(dest, "topics", "*-a", "*.log")))[-1]
    with open(newest, "r+b") as f:  # the newest segment is a copy, not a link to src
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(Corruption, match="fails `logstore check`"):
        restore(dest, str(tmp_path / "restored"))
    assert not os.path.exists(tmp_path / "restored")
    with pytest.raises(InvalidArgument, match="not a logstore data directory"):
        backup(str(tmp_path / "nowhere"), str(tmp_path / "other"))


def on_a_terminal(*args: str) -> tuple[int, bytes, bytes]:
    """`logstore ARGS` with stderr on a pseudo-terminal: (exit code, stdout, what was drawn)."""
    leader, follower = pty.openpty()
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "logstore_server.cli", *args],
                stdout=subprocess.PIPE,
                stderr=follower,
                env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
            )
        finally:
            os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child exited, its side is closed
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    return proc.returncode, out, drawn


def test_progress_is_drawn_on_a_terminal_and_never_in_a_pipe(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_store(src)
    command = [sys.executable, "-m", "logstore_server.cli", "backup", src, dest]
    piped = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""
    code, out, drawn = on_a_terminal("check", dest)
    assert code == 0 and b"no damage" in out
    assert b"checking" in drawn and b"100%" not in out  # the bar, not progress lines
    code, out, drawn = on_a_terminal("read", "a", "--data", dest, "--output", "/dev/null")
    assert code == 0 and out == b""
    assert b"reading" in drawn and b"400/400" in drawn


def test_read_to_a_file_with_output(tmp_path):
    src = str(tmp_path / "src")
    make_store(src)
    out = str(tmp_path / "a.txt")
    result = run_cli("read", "a", "--data", src, "--output", out)
    assert result.returncode == 0 and result.stdout == ""
    with open(out, "rb") as f:
        assert f.read().splitlines() == [b"a%d" % i for i in range(400)]


def test_restore_refuses_a_backup_missing_a_topic_directory(tmp_path):
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    make_store(src)
    backup(src, dest)
    [b_dir] = glob.glob(os.path.join(dest, "topics", "*-b"))
    for name in os.listdir(b_dir):
        os.unlink(os.path.join(b_dir, name))
    os.rmdir(b_dir)
    with pytest.raises(Corruption, match="topic has no directory"):
        restore(dest, str(tmp_path / "restored"))
    assert not os.path.exists(tmp_path / "restored")
