"""``python -m bench.run --scenarios steady`` end to end: each contender's steady load runs on a
control plane started for it alone, and its report says so (the figures themselves are by hand:
latency on a shared machine is not something a test can assert)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_contenders_steady_load_runs_on_a_control_plane_of_its_own(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scenarios", "steady", "--contenders", "ceiling,operator",
         "--steady-rate", "5", "--steady-seconds", "2", "--out", str(tmp_path), "--tag", "t"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one control plane per contender and none besides (nothing else was asked for)
    assert proc.stdout.count("[control-plane] control plane ready at") == 2, proc.stdout[-3000:]
    result = json.loads(next(tmp_path.glob("*-t.json")).read_text())
    assert list(result["steady"]) == ["ceiling", "operator"]
    for contender, row in result["steady"].items():
        assert "error" not in row, (contender, row.get("error"))
        assert row["control_plane"] == "fresh"
        assert row["completed"] == row["tasks"] == 10
        assert row["apply_to_create"]["n"] == 10 and row["apiserver_cpu_ms_per_task"] is not None
        assert row["apiserver_runtime"]["heap_live_mb_before"] > 0
    assert "Each contender ran on a control plane of its own" in next(tmp_path.glob("*-t.md")).read_text()
