"""The README's use cases, run as the scripts under examples/ against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from test_server_support import ServeProcess

from logstore import Store

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def served(tmp_path):
    process = ServeProcess(tmp_path / "leader", "--fsync", "never")
    yield process
    process.stop(signal.SIGTERM)


def example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cache_invalidation_reaches_every_worker_process(served):
    out = example("cache_invalidation.py", "--url", served.url, "--workers", "3")
    for n in range(3):
        assert f"worker {n}: evicted user:2" in out
        assert f"worker {n}: evicted user:4" in out
        assert f"worker {n}: 3 keys left: ['user:1', 'user:3', 'user:5']" in out


def test_follower_replicates_and_resumes_from_its_last_offset(served, tmp_path):
    served.request("PUT", "/topics/orders")
    batch = [{"value": f"order {i}", "key": f"k{i}", "headers": {"n": str(i)}} for i in range(5)]
    served.request("POST", "/topics/orders/messages", json_body={"messages": batch})
    served.request("POST", "/topics/orders/messages", b"\xff binary")
    replica = str(tmp_path / "replica")
    out = example("follower_replication.py", "--url", served.url, "--topic", "orders",
                  "--replica", replica, "--once")  # fmt: skip
    assert "replica of 'orders' ends at offset 6" in out
    served.request("POST", "/topics/orders/messages", b"after restart")
    out = example("follower_replication.py", "--url", served.url, "--topic", "orders",
                  "--replica", replica, "--once")  # fmt: skip
    assert "copied 1 messages" in out and "replicated offsets 6..6" in out
    leader = served.request("GET", "/topics/orders/messages?max=100").json["messages"]
    with Store(replica) as store:
        copies = store.read("orders", 0, max_messages=100)
    assert [(m.offset, m.key, dict(m.headers), m.value) for m in copies] == [
        (
            m["offset"],
            m["key"].encode() if m["key"] else None,
            m["headers"],
            m["value"].encode() if "value" in m else b"\xff binary",
        )
        for m in leader
    ]


def test_fan_out_delivers_every_order_to_every_consumer(served):
    out = example("fan_out.py", "--url", served.url)
    for name in ("billing", "shipping", "analytics"):
        assert f"{name}: order 1, order 2, order 3" in out
        assert f"{name}: lag 0, acknowledged up to offset 3" in out
    # A second run: each consumer resumes after what it acknowledged.
    out = example("fan_out.py", "--url", served.url)
    assert "billing: order 1, order 2, order 3" in out
    assert "billing: lag 0, acknowledged up to offset 6" in out
