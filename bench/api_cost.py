"""API-server CPU per write of an AgentTask, by the shape of the status the object carries.

    python -m bench.api_cost [--tasks 800] [--rounds 2] [--kubeconfig FILE]
    python -m bench.api_cost --lifecycles [--block 150] [--rounds 8] [--kubeconfig FILE]

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

``--lifecycles`` replays whole write sequences instead: the kopf floor's (the ceiling's
finalizer patch and two small status patches) and the operator's (finalizer + create-pending
patch guarded by resourceVersion, the Running status, the terminal status as the difference
the operator sends, the final Event), each status and Event built by the operator's own code,
and the operator's without one part (the Event, the conditions, ``status.agent``, the
conditions' ``observedGeneration``).  Each round creates ``--block`` fresh objects per
sequence (not measured), then replays the sequence on them with two watches open (a
contender's and an observer's, as in the scenarios) and reads the API server's and etcd's
CPU and what the API server allocated (its Go runtime's counter: how often its garbage
collector runs follows it); sequences alternate order round by round.  On a long-lived
control plane the API server's heap grows with every object kept and its garbage collector
makes blocks bimodal: use a fresh one (the default).

Starts its own control plane unless ``--kubeconfig`` names one started by ``make cluster-up``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent_operator.controller.api import event_body
from agent_operator.controller.backend import status_write
from agent_operator.core import conditions as conds
from agent_operator.core.clock import format_time
from agent_operator.crd.phases import Phase
from agent_operator.crd.status import AgentInfo, AgentTaskStatus
from agent_operator.testing.controlplane import ControlPlane

from .harness import cpu_seconds, install_crd, scrape_runtime
from .kube import Kube, tasks_path
from .loadgen import create_namespace, task_manifest

NOW = "2026-11-30T16:03:29Z"


def _condition(type_: str, status: str, message: str = "done") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": "Succeeded", "message": message,
            "lastTransitionTime": NOW, "observedGeneration": 1}


def shapes() -> dict[str, dict[str, Any]]:
    """The status shapes compared."""
    meta = "v1.1." + "x" * 120
    succeeded: dict[str, Any] = {
        "phase": "Succeeded", "reason": "Succeeded", "message": "done", "resourceMeta": meta, "attempt": 1,
        "agent": {"name": "Bench Instant Agent", "sync": False, "taskType": "bench-instant", "taskTypeVersion": 0},
        "startTime": NOW, "completionTime": NOW, "observedGeneration": 1,
        "conditions": [_condition("Ready", "True"), _condition("Succeeded", "True")],
    }
    with_false = dict(succeeded, conditions=succeeded["conditions"] + [
        _condition("Reconciling", "False", ""), _condition("Stalled", "False", "")])
    return {"minimal": {"phase": "Running", "resourceMeta": meta}, "succeeded": succeeded,
            "succeeded+false": with_false}


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
                before = cpu_seconds(apiserver_pid)
                await _each(tasks, lambda i: kube.merge_patch(tasks_path(ns, f"t{i:05d}", "status"),
                                                               {"status": {"message": "again"}}))
                await _each(tasks, lambda i: kube.merge_patch(tasks_path(ns, f"t{i:05d}"),
                                                               {"metadata": {"labels": {"touched": "1"}}}))
                ms = 1000 * (cpu_seconds(apiserver_pid) - before) / (2 * tasks)
                out[name].append(round(ms, 2))
                print(f"round {round_ + 1}: {name:16s} {len(json.dumps(status)):5d} bytes of status: "
                      f"{ms:5.2f} ms API-server CPU per update", flush=True)
                await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    return out


# ---------------------------------------------------------------------------------- lifecycles
START, END = 1_796_076_841.0, 1_796_076_843.0
META = "v1.1." + "x" * 150 + ".signature-of-43-characters-xxxxxxxxxxxxxxx"
#: (target, body): "guarded" (the object, a merge patch carrying the stored resourceVersion),
#: "object", "status" (merge patches) or "event" (a function of the object's body, POSTed)
Write = tuple[str, Any]


def operator_writes(*, event: bool = True, conditions: bool = True, agent: bool = True,
                    condition_generation: bool = True, instant: bool = False) -> list[Write]:
    """The operator's writes for one async task that runs and succeeds, built by its own code
    (status model, conditions, the status difference it sends, its Event body); ``instant``:
    a task already done at its first ``get`` (the burst's), whose one status write is terminal."""
    def with_conditions(status: AgentTaskStatus, previous: AgentTaskStatus, now: float) -> dict[str, Any]:
        wanted = conds.desired(status.phase or Phase.RUNNING, status.reason or "", status.message or "")
        built = conds.build(previous.conditions, wanted, generation=1, now=now) if conditions else ()
        out = dataclasses.replace(status, conditions=built).to_dict()
        if not condition_generation:
            for c in out.get("conditions", []):
                c.pop("observedGeneration", None)
        return out

    info = AgentInfo(name="Bench Latency Agent", task_type="bench-latency", task_type_version=0, sync=False)
    running = AgentTaskStatus(phase=Phase.RUNNING, reason="Running", message="running",
                              agent=info if agent else None, resource_meta=META, attempt=1,
                              start_time=format_time(START), observed_generation=1)
    running_dict = with_conditions(running, AgentTaskStatus(), START)
    done = dataclasses.replace(running, phase=Phase.SUCCEEDED, reason="Succeeded", message="done",
                               completion_time=format_time(END))
    done_dict = with_conditions(done, AgentTaskStatus.from_dict(running_dict), END)
    writes: list[Write] = [
        ("guarded", {"metadata": {"finalizers": ["flyteagents.dev/agent-cleanup"],
                                  "annotations": {"flyteagents.dev/create-pending": "1"}}}),
        ("status", {"status": running_dict}),
        ("status", {"status": status_write(running_dict, done_dict)}),
    ]
    if instant:
        writes[1:] = [("status", {"status": with_conditions(done, AgentTaskStatus(), END)})]
    if event:
        writes.append(("event", lambda body: event_body(body, "Normal", "Succeeded", "done", now=END)))
    return writes


def floor_writes() -> list[Write]:
    """The ceiling's (and kopf floor's) writes for the same task."""
    return [("object", {"metadata": {"finalizers": ["flyteagents.dev/agent-cleanup"]}}),
            ("status", {"status": {"phase": "Running", "resourceMeta": META}}),
            ("status", {"status": {"phase": "Succeeded", "message": "done"}})]


def sequences() -> dict[str, list[Write]]:
    """The write sequences compared."""
    return {
        "kopf floor": floor_writes(),
        "operator": operator_writes(),
        "operator without the Event": operator_writes(event=False),
        "operator, instant task (burst)": operator_writes(instant=True),
        "operator without conditions": operator_writes(conditions=False),
        "operator without status.agent": operator_writes(agent=False),
        "operator without conditions' observedGeneration": operator_writes(condition_generation=False),
    }


async def _replay(kube: Kube, ns: str, created: dict[str, Any], writes: list[Write]) -> None:
    name = created["metadata"]["name"]
    body = created
    for target, payload in writes:
        if target == "event":
            await kube.request("POST", f"/api/v1/namespaces/{ns}/events", payload(body))
        elif target == "guarded":
            guarded = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"], **payload["metadata"]}}
            body = await kube.merge_patch(tasks_path(ns, name), guarded)
        else:
            body = await kube.merge_patch(tasks_path(ns, name, "status" if target == "status" else None), payload)


async def _drain(kube: Kube, ns: str) -> None:
    async for _ in kube.watch(ns, "0"):
        pass


async def _allocated(kube: Kube) -> float:
    """Bytes the API server has allocated so far (its Go runtime's counter)."""
    return (await scrape_runtime(kube)).get("alloc_bytes", 0.0)


async def measure_lifecycles(kubeconfig: Path, apiserver_pid: int, etcd_pid: int, block: int,
                             rounds: int, only: list[str] | None = None) -> dict[str, list[tuple[float, float, float]]]:
    """(API server CPU ms, etcd CPU ms, API server KB allocated) per lifecycle, per sequence
    (``only``: these), one triple per round.  What the API server allocates decides how often
    its garbage collector runs; the two ``/metrics`` scrapes around a block are subtracted."""
    seqs = {name: writes for name, writes in sequences().items() if not only or name in only}
    out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in seqs}
    async with Kube(kubeconfig, limit=40) as kube:
        ns = f"api-cost-lifecycles-{int(time.time())}"
        await create_namespace(kube, ns)
        watches = [asyncio.create_task(_drain(kube, ns)) for _ in range(2)]
        scrape = await _allocated(kube)
        scrape = await _allocated(kube) - scrape  # what one scrape of /metrics allocates
        try:
            n = 0
            for round_ in range(rounds):
                for name in (list(seqs) if round_ % 2 == 0 else list(seqs)[::-1]):
                    first = n
                    n += block
                    created: list[dict[str, Any]] = [{} for _ in range(block)]

                    async def create(i: int, first: int = first, created: list[dict[str, Any]] = created) -> None:
                        created[i] = await kube.create(ns, task_manifest(f"t{first + i:06d}", "bench-latency"))

                    await _each(block, create, concurrency=16)
                    await asyncio.sleep(0.5)
                    alloc0 = await _allocated(kube)
                    api0, etcd0 = cpu_seconds(apiserver_pid), cpu_seconds(etcd_pid)
                    await _each(block, lambda i: _replay(kube, ns, created[i], seqs[name]), concurrency=16)
                    await asyncio.sleep(0.3)  # the watches' fan-out of the last writes
                    api = 1000 * (cpu_seconds(apiserver_pid) - api0) / block
                    etcd = 1000 * (cpu_seconds(etcd_pid) - etcd0) / block
                    kb = (await _allocated(kube) - alloc0 - scrape) / 1024 / block
                    out[name].append((round(api, 2), round(etcd, 2), round(kb, 1)))
                    print(f"round {round_ + 1}: {name:50s} API server {api:5.2f} ms, etcd {etcd:4.2f} ms, "
                          f"{kb:6.0f} KB allocated per lifecycle", flush=True)
        finally:
            for w in watches:
                w.cancel()
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.api_cost", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=800)
    p.add_argument("--rounds", type=int, default=None, help="default 2 (shapes), 8 (--lifecycles)")
    p.add_argument("--lifecycles", action="store_true", help="replay whole write sequences (see above)")
    p.add_argument("--block", type=int, default=150, help="objects per sequence and round (--lifecycles)")
    p.add_argument("--only", action="append", choices=list(sequences()), help="just this sequence (repeatable)")
    p.add_argument("--kubeconfig", type=Path, help="a `make cluster-up` control plane (its state.json names the pid)")
    args = p.parse_args(argv)
    rounds = args.rounds or (8 if args.lifecycles else 2)

    def run(kubeconfig: Path, pids: Mapping[str, Any]) -> dict[str, Any]:
        if args.lifecycles:
            result = asyncio.run(measure_lifecycles(kubeconfig, int(pids["kube-apiserver"]), int(pids["etcd"]),
                                                    args.block, rounds, args.only))
            return {name: {"apiserver_ms": [a for a, _, _ in v], "etcd_ms": [e for _, e, _ in v],
                           "alloc_kb": [k for _, _, k in v],
                           "apiserver_median": round(_median([a for a, _, _ in v]), 2),
                           "etcd_median": round(_median([e for _, e, _ in v]), 2),
                           "alloc_kb_median": round(_median([k for _, _, k in v]), 1)}
                    for name, v in result.items()}
        shaped = asyncio.run(measure(kubeconfig, int(pids["kube-apiserver"]), args.tasks, rounds))
        return {name: {"ms_per_update": values, "mean": round(sum(values) / len(values), 2)}
                for name, values in shaped.items()}

    if args.kubeconfig:
        state = json.loads((args.kubeconfig.parent / "state.json").read_text())
        summary = run(args.kubeconfig, state["components"])
    else:
        with ControlPlane(log=lambda m: print(f"[control-plane] {m}", flush=True)) as cp:
            install_crd(cp)
            summary = run(cp.kubeconfig, cp.pids)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
