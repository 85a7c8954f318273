"""docs/REFERENCE.md is what docs/gen_reference.py makes of the code as it is."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import logstore

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_matches_the_code():
    result = subprocess.run(
        [sys.executable, str(DOCS / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + "(run: python docs/gen_reference.py)"


def test_every_public_name_is_in_the_reference():
    text = _generator().render()
    for name in logstore.__all__:
        assert f"`{name}" in text or f"`logstore.{name}`" in text, name


def test_a_changed_docstring_makes_the_reference_stale(monkeypatch):
    generator = _generator()
    before = generator.render()
    monkeypatch.setattr(logstore.Store.close, "__doc__", "Changed without regenerating.")
    after = generator.render()
    assert after != before and "Changed without regenerating." in after
