"""Cluster mode (SPEC §9, docs/CLUSTER.md) beyond the conformance suite: several `logstore
serve` front ends on one NATS JetStream cluster, and failover.

The front ends are real `logstore serve` processes; the cluster is three real
`nats-server` processes on loopback ports (`cluster_support`, `logstore_server.cluster_dev`),
killed with SIGKILL by PID where a test says so.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import pytest
from cluster_support import cluster_store
from test_server_support import ServeProcess, http_request, wait_until

from logstore import StorageError, Store
from logstore.engine.jetstream import names
from logstore_server.cluster_dev import DevCluster

pytestmark = pytest.mark.cluster

_namespaces = itertools.count()


def _namespaced(cluster: DevCluster, **options: object) -> tuple[str, str]:
    namespace = f"fe{next(_namespaces)}x{int(time.time() * 1000) % 10**8}"
    query = "&".join(f"{k}={v}" for k, v in {"namespace": namespace, **options}.items())
    return namespace, f"{cluster.url}?{query}"


@pytest.fixture
def two_front_ends(nats_cluster):
    _, url = _namespaced(nats_cluster)
    a, b = ServeProcess(url), ServeProcess(url)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        with Store(url) as store:
            for topic in store.topics():
                store.delete_topic(topic.id)


def test_a_lease_handed_out_by_one_front_end_is_settled_by_another(two_front_ends):
    a, b = two_front_ends
    assert a.request("PUT", "/topics/t").status == 201
    assert b.request("PUT", "/topics/t").status == 200  # the same topic, seen from b
    body = {"messages": [{"value": f"m{i}"} for i in range(4)]}
    assert a.request("POST", "/topics/t/messages", json_body=body).json == {
        "first_offset": 0,
        "count": 4,
    }
    assert b.request("PUT", "/topics/t/subscriptions/s", json_body={"ack_wait": 30}).status == 201
    leased = a.request("POST", "/topics/t/subscriptions/s/poll?max=4").json["messages"]
    assert [m["offset"] for m in leased] == [0, 1, 2, 3]
    tokens = [m["lease"] for m in leased]
    info = b.request("POST", "/topics/t/subscriptions/s/ack", json_body={"leases": tokens[:2]})
    assert (info.json["ack_floor"], info.json["pending"]) == (2, 2)
    b.request("POST", "/topics/t/subscriptions/s/nack", json_body={"leases": tokens[2:3]})
    again = b.request("POST", "/topics/t/subscriptions/s/poll?max=4").json["messages"]
    assert [(m["offset"], m["delivery_count"]) for m in again] == [(2, 2)]  # 3 is still leased
    a.request("POST", "/topics/t/subscriptions/s/ack", json_body={"offsets": [2, 3]})
    assert b.request("GET", "/topics/t/subscriptions/s").json["ack_floor"] == 4


def test_a_retried_publish_with_its_idempotency_key_is_not_appended_by_another_front_end(
    two_front_ends,
):
    a, b = two_front_ends
    a.request("PUT", "/topics/t")
    batch = {"messages": [{"value": "x"}, {"value": "y"}]}
    key = {"Idempotency-Key": "order-17"}
    first = a.request("POST", "/topics/t/messages", json_body=batch, headers=key)
    again = b.request("POST", "/topics/t/messages", json_body=batch, headers=key)
    assert first.status == again.status == 201
    assert first.json == again.json == {"first_offset": 0, "count": 2}
    assert again.headers.get("Idempotent-Replayed") == "true"
    one = {"Idempotency-Key": "single-1"}
    assert b.request("POST", "/topics/t/messages", body=b"z", headers=one).json["first_offset"] == 2
    replay = a.request("POST", "/topics/t/messages", body=b"z", headers=one)
    assert (replay.json["first_offset"], replay.headers.get("Idempotent-Replayed")) == (2, "true")
    assert a.request("GET", "/topics/t").json["end_offset"] == 3


def test_a_long_poll_on_one_front_end_wakes_when_another_publishes(two_front_ends):
    a, b = two_front_ends
    a.request("PUT", "/topics/t")
    answers = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            b.request("GET", "/topics/t/messages?offset=0&wait=30", timeout=60)
        )
    )
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)  # the long poll is waiting on b (no thread, no polling)
    a.request("POST", "/topics/t/messages", body=b"news")
    waiting.join(60)
    # Woken by the notification subject, not by its 30 s deadline (generous for 2 cores).
    assert time.monotonic() - started < 15
    assert [m["value"] for m in answers[0].json["messages"]] == ["news"]


def test_health_and_metrics_report_the_cluster_connection(two_front_ends):
    a, _ = two_front_ends
    health = a.request("GET", "/health").json
    assert health["status"] == "ok"
    storage = health["storage"]
    assert (storage["engine"], storage["connected"], storage["replicas"]) == ("jetstream", True, 3)
    assert storage["connected_server"].startswith("nats://127.0.0.1:")
    assert set(storage["differences"]) >= {"fsync", "corruption", "segments", "leases"}
    metrics = a.request("GET", "/metrics").body.decode()
    assert "logstore_cluster_connected 1" in metrics
    assert a.request("PUT", "/topics/t").json["segments"] is None


# ------------------------------------------------------------------ failover


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory):
    """A cluster of its own: these tests kill its nodes."""
    with DevCluster(str(tmp_path_factory.mktemp("failover"))) as cluster:
        yield cluster


@dataclass
class Ledger:
    """What the load saw acknowledged, to check against the log afterwards."""

    published: dict[str, tuple[int, list[bytes]]] = field(default_factory=dict)
    """idempotency key -> (first offset, values) of every publish answered 201"""
    acked: dict[int, float] = field(default_factory=dict)
    """offset -> when its ack was answered 200"""
    deliveries: list[tuple[float, int]] = field(default_factory=list)
    """(when the poll that delivered it was sent, offset)"""
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Load:
    """Publishers and consumers through the front ends, until `stop()`. A publish that
    got no 201 is sent again with its key, through the next front end that answers."""

    def __init__(self, fronts: list[ServeProcess], topic: str, ledger: Ledger):
        self.fronts = fronts
        self.topic = topic
        self.ledger = ledger
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._publish, args=(i,), daemon=True) for i in range(2)
        ] + [threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(2)]
        for t in self.threads:
            t.start()

    def _request(self, i: int, method: str, path: str, **kw):
        """Through front end `i`, else the next live one; None when none answered."""
        for j in range(len(self.fronts)):
            front = self.fronts[(i + j) % len(self.fronts)]
            if front.proc.poll() is not None:
                continue
            try:
                return http_request(front.port, method, path, timeout=30, **kw)
            except OSError:
                continue
        return None

    def _publish(self, i: int) -> None:
        for n in itertools.count():
            if self.stopping.is_set():
                return
            key = f"p{i}-{n}"
            values = [f"{key}-{k}".encode() for k in range(1 + n % 3)]
            body = {"messages": [{"value": v.decode()} for v in values]}
            while not self.stopping.is_set():  # the same publish, until it is answered
                reply = self._request(
                    i,
                    "POST",
                    f"/topics/{self.topic}/messages",
                    json_body=body,
                    headers={"Idempotency-Key": key},
                )
                if reply is not None and reply.status == 201:
                    with self.ledger.lock:
                        self.ledger.published[key] = (reply.json["first_offset"], values)
                    break
                if reply is not None and reply.status != 503:
                    self.ledger.errors.append(f"publish {key}: {reply.status} {reply.body!r}")
                    return
                time.sleep(0.2)

    def _consume(self, i: int) -> None:
        path = f"/topics/{self.topic}/subscriptions/c"
        while not self.stopping.is_set():
            sent = time.monotonic()
            reply = self._request(i, "POST", f"{path}/poll?max=20&wait=1")
            if reply is None or reply.status != 200:
                time.sleep(0.2)
                continue
            got = reply.json["messages"]
            with self.ledger.lock:
                self.ledger.deliveries.extend((sent, m["offset"]) for m in got)
            if not got:
                continue
            # Settled through the other front end: the lease tokens travel.
            done = self._request(
                i + 1, "POST", f"{path}/ack", json_body={"leases": [m["lease"] for m in got]}
            )
            if done is not None and done.status == 200:
                now = time.monotonic()
                with self.ledger.lock:
                    for m in got:
                        self.ledger.acked.setdefault(m["offset"], now)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads)


def test_stream_leader_killed_twice_and_a_front_end_killed_lose_nothing_acknowledged(own_cluster):
    cluster = own_cluster
    namespace, url = _namespaced(cluster)
    stream = names.stream_name(namespace, "fo")
    fronts = [ServeProcess(url), ServeProcess(url)]
    ledger = Ledger()
    load = None
    try:
        fronts[0].request("PUT", "/topics/fo")
        fronts[1].request("PUT", "/topics/fo/subscriptions/c", json_body={"ack_wait": 5})
        load = Load(fronts, "fo", ledger)
        for _ in range(2):
            time.sleep(2)
            leader = cluster.stream_leader(stream)
            cluster.kill(leader)
            # Elections take 4-9 s; the load goes on meanwhile (503s are retried).
            time.sleep(9)
            cluster.restart(leader)
        time.sleep(2)
        fronts[0].proc.kill()  # SIGKILL mid-publish: its publishers move to the other
        fronts[0].proc.wait(10)
        published_before_drain = len(ledger.published)
        time.sleep(3)
        load.stop()
        assert not ledger.errors, ledger.errors[:5]
        assert len(ledger.published) > published_before_drain  # publishing went on
        after_restart = [o for t, o in ledger.deliveries if t > time.monotonic() - 4]
        assert after_restart, "consumers stopped after the failovers"
    finally:
        if load is not None:
            load.stopping.set()
        for front in fronts:
            front.stop()

    with Store(url) as store:
        end = store.topic("fo").end_offset
        log = {m.offset: m.value for m in _read_all(store, "fo", end)}
        # Every acknowledged publish is there, at its offset, with its bytes.
        for key, (first, values) in ledger.published.items():
            stored = [log.get(first + k) for k in range(len(values))]
            assert stored == values, f"publish {key} at {first}: {stored} != {values}"
        # No publish is stored twice (retries with the same key were answered, not appended).
        counted: dict[bytes, int] = {}
        for value in log.values():
            counted[value] = counted.get(value, 0) + 1
        assert [v for v, n in counted.items() if n > 1] == []
        # An acknowledged delivery stays acknowledged: no poll sent after an ack was
        # answered delivers that offset again.
        again = [(o, t) for t, o in ledger.deliveries if o in ledger.acked and t > ledger.acked[o]]
        assert again == []
        # Consumers continue: what is left is delivered, and then everything is acknowledged.
        deadline = time.monotonic() + 30
        while store.subscription("fo", "c").ack_floor < end and time.monotonic() < deadline:
            got = store.poll("fo", "c", max_messages=500, wait=1)
            assert not any(d.offset in ledger.acked for d in got)
            if got:
                store.ack("fo", "c", [d.lease for d in got])
        assert store.subscription("fo", "c").ack_floor == end
        for topic in store.topics():
            store.delete_topic(topic.id)


def _read_all(store: Store, topic: str, end: int) -> list:
    out, offset = [], 0
    while offset < end:
        page = store.read(topic, offset, max_messages=1000)
        out.extend(page)
        offset = page[-1].offset + 1
    return out


def test_without_a_quorum_a_publish_fails_after_its_bound_and_a_retry_lands_once(own_cluster):
    cluster = own_cluster
    namespace, url = _namespaced(cluster, publish_timeout=2, request_timeout=1)
    with Store(url) as store:
        store.create_topic("q")
        store.write("q", b"before")
        followers = [
            n
            for n in cluster.nodes
            if n is not cluster.stream_leader(names.stream_name(namespace, "q"))
        ]
        for node in followers:
            cluster.kill(node)
        try:
            started = time.monotonic()
            with pytest.raises(StorageError, match="did not answer"):
                store.write_many("q", [b"a", b"b"], idempotency_key="k1")
            # Bounded: publish_timeout (2 s) plus one last request (1 s), with room for
            # the 2-core machine.
            assert time.monotonic() - started < 10
        finally:
            for node in followers:
                cluster.restart(node)
        assert wait_until(lambda: _writable(store), timeout=30)
        first = store.write_many("q", [b"a", b"b"], idempotency_key="k1")
        assert [m.value for m in store.read("q", 0)].count(b"a") == 1
        assert store.read("q", first, max_messages=2)[0].value == b"a"
        for topic in store.topics():
            store.delete_topic(topic.id)


def _writable(store: Store) -> bool:
    try:
        store.write("q", b"probe", idempotency_key="probe")
        return True
    except StorageError:
        return False


def test_a_store_on_the_cluster_reports_no_segments_and_cluster_durability(nats_cluster):
    store = cluster_store(nats_cluster, replicas=1)
    try:
        info = store.create_topic("r1")
        assert info.segments is None
        described = store.describe()
        assert described["engine"] == "jetstream" and described["replicas"] == 1
        assert json.dumps(described)  # /health serves it as it is
    finally:
        for topic in store.topics():
            store.delete_topic(topic.id)
        store.close()
