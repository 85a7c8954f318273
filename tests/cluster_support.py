"""The NATS JetStream cluster of the cluster tests: three `nats-server` processes on
loopback ports, started once per session (`nats_cluster`) and stopped by PID.

Each cluster-kind test gets a `Store` of its own namespace (`cluster_store`), so tests
never see each other's topics; `close_store` deletes what the test created.
"""

from __future__ import annotations

import itertools
import os

import pytest

from logstore import Store
from logstore_server.cluster_dev import ClusterError, DevCluster

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory):
    try:
        cluster = DevCluster(str(tmp_path_factory.mktemp("nats-cluster")))
    except ClusterError as exc:
        pytest.skip(str(exc))
    with cluster:
        yield cluster


def cluster_store(cluster: DevCluster, **options: object) -> Store:
    """A store on the cluster, in a namespace of its own."""
    query = "&".join(f"{k}={v}" for k, v in {"namespace": _namespace(), **options}.items())
    return Store(f"{cluster.url}?{query}")


def _namespace() -> str:
    return f"t{os.getpid()}x{next(_namespaces)}"


def close_store(store: Store) -> None:
    """Close a store; a cluster store's topics are deleted first."""
    if str(store.path).startswith("nats://"):
        try:
            for topic in store.topics():
                store.delete_topic(topic.id)
        except Exception:  # a test that closed its store, or broke the cluster: still close
            pass
    store.close()
