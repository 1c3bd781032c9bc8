"""docs/benchmarks.md shows ``python -m bench.api_cost``: it runs against its own real control
plane and reports every status shape (the figures themselves are by hand: CPU per update on
a shared machine is not something a test can assert)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from operator_fixtures import crd  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def test_api_cost_reports_the_api_server_cpu_per_update_of_every_status_shape() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.api_cost", "--tasks", "20", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"minimal", "succeeded", "succeeded+false"}
    for shape in result.values():
        assert len(shape["ms_per_update"]) == 1 and shape["mean"] > 0
    assert "bytes of status" in proc.stdout


def test_api_cost_lifecycles_replays_every_write_sequence() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.api_cost", "--lifecycles", "--block", "5", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"kopf floor", "operator", "operator without the Event", "operator, instant task (burst)"} <= set(result)
    for sequence in result.values():
        assert len(sequence["apiserver_ms"]) == 1 and sequence["apiserver_median"] > 0
        assert len(sequence["alloc_kb"]) == 1 and sequence["alloc_kb_median"] > 0


@pytest.mark.cluster
def test_a_measured_runs_namespace_is_removed_with_its_finalized_tasks(crd: str, kubeconfig: str, tmp_path: Path) -> None:
    """The benchmark deletes each run's namespace once measured (the next run must not pay for
    its objects); tasks still holding a contender's finalizer must not keep it alive."""
    import asyncio

    from bench.kube import ApiError, Kube
    from bench.loadgen import create_all, create_namespace, task_manifest
    from bench.scenarios import Ctx, remove_namespace

    async def scenario() -> None:
        async with Kube(kubeconfig) as kube:
            ns = f"bench-cleanup-{int(time.time())}"
            await create_namespace(kube, ns)
            manifests = [task_manifest(f"t{i}", "bench-instant") for i in range(3)]
            for m in manifests:
                m["metadata"]["finalizers"] = ["flyteagents.dev/agent-cleanup"]
            await create_all(kube, ns, manifests)
            await remove_namespace(Ctx(kube, Path(kubeconfig), tmp_path, 4), ns, timeout=120)
            try:
                await kube.request("GET", f"/api/v1/namespaces/{ns}")
            except ApiError as e:
                assert e.status == 404
            else:
                raise AssertionError(f"namespace {ns} still exists")

    asyncio.run(scenario())
