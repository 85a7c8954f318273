"""GET /metrics: Prometheus text with traffic, topic, waiting and fsync figures."""

from __future__ import annotations

import re
import threading

from test_server_support import LiveServer, wait_until

from logstore import Store

pytest_plugins = ["test_server_support"]

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? (-?[0-9.e+]+)$')


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ ", line), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text: {line!r}"
        out[line.rsplit(" ", 1)[0]] = float(match.group(5))
    return out


def test_metrics_count_traffic_per_topic(live):
    live.request("PUT", "/topics/t")
    live.request("POST", "/topics/t/messages", b"12345")
    live.request("POST", "/topics/t/messages", json_body={"messages": [{"value": "ab"}] * 3})
    live.request("GET", "/topics/t/messages?offset=0")
    reply = live.request("GET", "/metrics")
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(reply.body.decode())
    assert samples['logstore_published_messages_total{topic="t"}'] == 4
    assert samples['logstore_published_bytes_total{topic="t"}'] == 11
    assert samples['logstore_delivered_messages_total{topic="t",via="replay"}'] == 4
    assert samples['logstore_delivered_bytes_total{topic="t",via="replay"}'] == 11
    assert samples['logstore_topic_end_offset{topic="t"}'] == 4
    assert samples["logstore_long_polls_waiting"] == 0
    assert "logstore_fsync_seconds_count" in samples and "logstore_fsync_max_seconds" in samples


def test_metrics_show_waiting_long_polls_and_fsyncs(data_dir):
    with Store(data_dir, fsync="always") as store:
        server = LiveServer(store)
        try:
            server.request("PUT", "/topics/t")
            server.request("POST", "/topics/t/messages", b"durable")
            waiter = threading.Thread(
                target=server.request, args=("GET", "/topics/t/messages?offset=1&wait=5")
            )
            waiter.start()
            assert wait_until(lambda: server.state.long_polls.active == 1)
            samples = _samples(server.request("GET", "/metrics").body.decode())
            assert samples["logstore_long_polls_waiting"] == 1
            assert samples["logstore_fsync_seconds_count"] >= 1
            assert samples["logstore_fsync_seconds_sum"] > 0
            server.request("POST", "/topics/t/messages", b"wake")
            waiter.join(10)
        finally:
            server.stop()


def test_deleted_topic_leaves_the_metrics(live):
    live.request("PUT", "/topics/gone")
    live.request("POST", "/topics/gone/messages", b"x")
    live.request("DELETE", "/topics/gone")
    assert 'topic="gone"' not in live.request("GET", "/metrics").body.decode()
