"""docs/architecture.md shows ``python -m bench.parse_cost --rounds N``: it runs, and every
path it measures goes through the typed model (its own assertion: an unchanged poll writes
no status)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_parse_cost_benchmark_runs_and_reports_every_path(tmp_path: Path) -> None:
    out = tmp_path / "parse.json"
    proc = subprocess.run([sys.executable, "-m", "bench.parse_cost", "--rounds", "20", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    paths = {"same_rv", "new_rv", "new_rv_new_status", "poll"}
    assert set(result["seconds"]) == paths and set(result["ratio_to_reference"]) == paths
    assert all(v > 0 for v in result["seconds"].values()) and result["reference_seconds"] > 0
