"""`make demo`'s script, run end to end: the README's first command must keep working.

The demo brings up its own control plane (through ``make cluster-up``'s supervisor) in a
temporary state directory, so it does not disturb the session's cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_takes_every_example_to_succeeded(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    # the sensor example waits for /tmp/agent-operator-demo/ready: the demo's default dir
    env = dict(os.environ, CLUSTER_DIR=str(cluster_dir), PY=sys.executable)
    try:
        done = subprocess.run(["bash", str(ROOT / "examples" / "demo.sh")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        table = done.stdout.split("==> done", 1)[1]
        examples = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))
        rows = [line for line in table.splitlines() if " Succeeded " in line]
        assert len(rows) == len(examples), table
        assert "Every example reached Succeeded" in done.stdout
    finally:
        subprocess.run([sys.executable, "-m", "agent_operator.testing.cluster", "--state-dir",
                        str(cluster_dir), "down"], cwd=ROOT, capture_output=True, timeout=120)
