"""Shared fixtures: a fresh store directory per test, and a store opened on it."""

from __future__ import annotations

import pytest

from logstore import Store


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(data_dir):
    s = Store(data_dir, fsync="never")
    yield s
    s.close()
