"""API-server CPU per write of an AgentTask, by the shape of the status the object carries.

    python -m bench.api_cost [--tasks 800] [--rounds 2] [--kubeconfig FILE]

In a 10,000-task burst the API server, not the contender, is what saturates the two
cores, so what an AgentTask's status costs the API server per write decides throughput.
For each shape, ``--tasks`` fresh objects get that status, then every one is updated
twice more (a status patch, then a metadata patch, both small): the API-server CPU of
those updates (``/proc/<pid>/stat``) divided by their count.  Shapes, interleaved over
``--rounds`` rounds so that noise spreads evenly:

* ``minimal``: phase and resourceMeta only (what naive kopf writes);
* ``succeeded``: the operator's status of a succeeded task (conditions Ready, Succeeded);
* ``succeeded+false``: the same plus ``Reconciling=False`` and ``Stalled=False`` (what the
  operator wrote before those two became present only while true).

Starts its own control plane unless ``--kubeconfig`` names one started by ``make cluster-up``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent_operator.testing.controlplane import ControlPlane

from .harness import install_crd
from .kube import Kube, tasks_path
from .loadgen import create_namespace, task_manifest

NOW = "2026-11-30T16:03:29Z"


def _condition(type_: str, status: str, message: str = "done") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": "Succeeded", "message": message,
            "lastTransitionTime": NOW, "observedGeneration": 1}


def shapes() -> dict[str, dict[str, Any]]:
    """The status shapes compared."""
    meta = "v1.1." + "x" * 120
    succeeded = {
        "phase": "Succeeded", "reason": "Succeeded", "message": "done", "resourceMeta": meta, "attempt": 1,
        "agent": {"name": "Bench Instant Agent", "sync": False, "taskType": "bench-instant", "taskTypeVersion": 0},
        "startTime": NOW, "completionTime": NOW, "observedGeneration": 1,
        "conditions": [_condition("Ready", "True"), _condition("Succeeded", "True")],
    }
    with_false = dict(succeeded, conditions=succeeded["conditions"] + [
        _condition("Reconciling", "False", ""), _condition("Stalled", "False", "")])
    return {"minimal": {"phase": "Running", "resourceMeta": meta}, "succeeded": succeeded,
            "succeeded+false": with_false}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _each(n: int, call: Callable[[int], Awaitable[Any]], concurrency: int = 32) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def measure(kubeconfig: Path, apiserver_pid: int, tasks: int, rounds: int) -> dict[str, list[float]]:
    """API-server CPU ms per update, per shape, one value per round."""
    out: dict[str, list[float]] = {name: [] for name in shapes()}
    async with Kube(kubeconfig, limit=40) as kube:
        for round_ in range(rounds):
            for name, status in shapes().items():
                ns = f"api-cost-{round_}-{name.replace('+', '-')}-{int(time.time())}"
                await create_namespace(kube, ns)
                await _each(tasks, lambda i: kube.create(ns, task_manifest(f"t{i:05d}", "bench-instant")))
                await _each(tasks, lambda i: kube.merge_patch(tasks_path(ns, f"t{i:05d}", "status"),
                                                               {"status": status}))
                before = _cpu_seconds(apiserver_pid)
                await _each(tasks, lambda i: kube.merge_patch(tasks_path(ns, f"t{i:05d}", "status"),
                                                               {"status": {"message": "again"}}))
                await _each(tasks, lambda i: kube.merge_patch(tasks_path(ns, f"t{i:05d}"),
                                                               {"metadata": {"labels": {"touched": "1"}}}))
                ms = 1000 * (_cpu_seconds(apiserver_pid) - before) / (2 * tasks)
                out[name].append(round(ms, 2))
                print(f"round {round_ + 1}: {name:16s} {len(json.dumps(status)):5d} bytes of status: "
                      f"{ms:5.2f} ms API-server CPU per update", flush=True)
                await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.api_cost", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=800)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--kubeconfig", type=Path, help="a `make cluster-up` control plane (its state.json names the pid)")
    args = p.parse_args(argv)
    if args.kubeconfig:
        state = json.loads((args.kubeconfig.parent / "state.json").read_text())
        result = asyncio.run(measure(args.kubeconfig, int(state["components"]["kube-apiserver"]),
                                     args.tasks, args.rounds))
    else:
        with ControlPlane(log=lambda m: print(f"[control-plane] {m}", flush=True)) as cp:
            install_crd(cp)
            result = asyncio.run(measure(cp.kubeconfig, int(cp.pids["kube-apiserver"]), args.tasks, args.rounds))
    print(json.dumps({name: {"ms_per_update": values, "mean": round(sum(values) / len(values), 2)}
                      for name, values in result.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
