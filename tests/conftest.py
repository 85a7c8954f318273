"""Shared fixtures: a fresh store directory per test, and a store opened on it.

In the behaviour-test modules `store` is also a `Client` and an `AsyncClient` on a live
server over that store (`conformance.py`)."""

from __future__ import annotations

import pytest
from cluster_support import close_store, cluster_store, nats_cluster
from conformance import CLUSTER_KINDS, pytest_configure, pytest_generate_tests, remote_store

from logstore import Store

__all__ = ["nats_cluster", "pytest_configure", "pytest_generate_tests"]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(request, data_dir):
    kind = getattr(request, "param", "store")
    if kind in CLUSTER_KINDS:
        s = cluster_store(request.getfixturevalue("nats_cluster"))
        kind = "store" if kind == "cluster" else "client"
    else:
        s = Store(data_dir, fsync="never")
    if kind == "store":
        yield s
    else:
        with remote_store(s, kind) as remote:
            yield remote
    close_store(s)
