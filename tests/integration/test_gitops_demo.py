"""`make gitops-demo`'s script end to end: examples/ from a loopback git server, synced by Flux's
own controllers (built from source) into a control plane of its own, every task Succeeded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_gitops_demo_syncs_every_example_to_succeeded(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    env = dict(os.environ, CLUSTER_DIR=str(cluster_dir), PY=sys.executable)
    try:
        done = subprocess.run(["bash", str(ROOT / "examples" / "gitops-demo.sh")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        table = done.stdout.split("==> done", 1)[1]
        assert "kustomization.kustomize.toolkit.fluxcd.io/agenttasks" in table, table
        examples = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))
        rows = [line for line in table.splitlines() if " Succeeded " in line]
        assert len(rows) == len(examples), table
        assert "Flux applied every AgentTask from git and reports Ready" in done.stdout
    finally:
        subprocess.run([sys.executable, "-m", "agent_operator.testing.cluster", "--state-dir",
                        str(cluster_dir), "down"], cwd=ROOT, capture_output=True, timeout=120)
