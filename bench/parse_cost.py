"""Micro-benchmark of what the controller pays per scheduler wake-up before any API call:
turning the cached object into the core's input, then one unchanged poll (``decide`` →
``absorb`` of a "still running" answer → "is the status different?").

``python -m bench.parse_cost [--rounds N] [--out FILE]``.  No control plane, no network.

Times are machine-dependent, so the result is reported as a ratio to a fixed reference
workload measured in the same process (a ``json`` round trip of the object): a ratio that
grows between two commits is a regression, whatever the machine.  Three paths:

* ``same_rv``: the object did not change since the last wake-up (every poll of a running
  task), the common case at 10,000 tasks in flight;
* ``new_rv``: a new resourceVersion with the same status (a metadata patch, the echo of
  a write, a watch event about labels);
* ``new_rv_new_status``: a new resourceVersion whose status someone else changed (the
  status is parsed and checked again; the operator's own writes skip that: their response
  is compared with what was written);
* ``poll``: ``same_rv`` plus decide/absorb of an unchanged answer (the whole CPU cost of a
  poll that writes nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_operator.core.context import ContextFactory, Settings
from agent_operator.core.model import Action, ActionKind, Answer
from agent_operator.core.reconcile import Context, absorb, decide
from agent_operator.core.signing import Signer
from agent_operator.crd import names
from agent_operator.crd.resource import AgentTask, AgentTaskCache
from agent_operator.crd.status import AgentTaskStatus
from agent_operator.sdk import AgentRegistry, Resource, TaskExecution
from agent_operator.testing.agents import TestAsyncAgent, task_template

NOW = 1_800_000_000.0
SIGNER = Signer(b"b" * 32)


def running_body() -> dict[str, Any]:
    """A running async task as the API server returns it (after its first get)."""
    from agent_operator.testing.agents import TestJobMeta

    uid = "0b4c0ffe-0000-4000-8000-00000000beef"
    meta = TestJobMeta(key=f"{uid}-1", attempt=1, task_type="test-async", created_at=NOW, config={})
    signed = SIGNER.sign(meta.encode(), uid=uid, attempt=1)
    conditions = [
        {"type": t, "status": s, "reason": "Running", "message": m, "lastTransitionTime": "2027-01-15T08:00:00Z",
         "observedGeneration": 1}
        for t, s, m in (("Ready", "False", "agent reports Running"), ("Succeeded", "Unknown", "agent reports Running"),
                        ("Reconciling", "True", "agent reports Running"), ("Stalled", "False", ""))
    ]
    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": "bench", "namespace": "default", "uid": uid, "generation": 1, "resourceVersion": "1000",
                     "creationTimestamp": "2027-01-15T08:00:00Z", "finalizers": [names.FINALIZER],
                     "annotations": {names.ANNOTATION_CREATE_PENDING: "1"}, "labels": {"app": "bench"}},
        "spec": {"taskTemplate": task_template("test-async", phases=["RUNNING"] * 1000, outputs={"n": "INTEGER"}),
                 "pollInterval": "10s", "timeout": "1h", "maxAttempts": 3, "deletionPolicy": "Delete"},
        "status": {"phase": "Running", "reason": "Running", "message": "agent reports Running",
                   "agent": {"name": "test-async", "taskType": "test-async", "taskTypeVersion": 0, "sync": False},
                   "resourceMeta": signed, "attempt": 1, "startTime": "2027-01-15T08:00:00Z",
                   "observedGeneration": 1, "logLinks": [{"name": "Dashboard", "uri": "http://127.0.0.1/x"}],
                   "conditions": conditions},
    }


def _per_op(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of ``fn`` (best of 5 runs of ``n`` calls: least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def measure(rounds: int) -> dict[str, Any]:
    """Per-op seconds of each path and their ratio to the reference workload."""
    body = running_body()
    text = json.dumps(body)
    reference = _per_op(lambda: json.loads(text), rounds)
    with AgentRegistry.snapshot():
        AgentRegistry.register(TestAsyncAgent(), override=True)
        to_input, ctx_for = _typed_path()
        task = to_input(body)
        ctx = ctx_for(task)
        answer = Answer(value=Resource(phase=TaskExecution.RUNNING, message="agent reports Running"))
        # the stored status is the one the core wrote for this answer (so a poll changes nothing)
        first = absorb(task, ctx, Action(ActionKind.GET, attempt=1), answer, NOW)
        if first.status is not None:
            body["status"] = status_json(first.status)
        # new resourceVersions: the same status (a metadata patch, an echo), or another one
        same_status, new_status = [], []
        for i in range(rounds):
            b = copy.deepcopy(body)
            b["metadata"]["resourceVersion"] = str(2000 + 2 * i)
            same_status.append(b)
            b = copy.deepcopy(body)
            b["metadata"]["resourceVersion"] = str(2001 + 2 * i)
            b["status"]["message"] = f"agent reports Running ({i})"
            new_status.append(b)
        to_input(body)
        same, changed = iter(same_status * 5), iter(new_status * 5)

        def poll() -> None:
            t = to_input(body)
            d = decide(t, ctx, NOW)
            assert d.action.kind == ActionKind.GET, d
            out = absorb(t, ctx, Action(ActionKind.GET, attempt=1), answer, NOW)
            assert out.status is None, "an unchanged answer must not change the status"

        results = {
            "same_rv": _per_op(lambda: to_input(body), rounds),
            "new_rv": _per_op(lambda: to_input(next(same)), rounds),
            "new_rv_new_status": _per_op(lambda: to_input(next(changed)), rounds),
            "poll": _per_op(poll, rounds),
        }
    return {
        "reference_seconds": reference,
        "seconds": results,
        "ratio_to_reference": {k: round(v / reference, 2) for k, v in results.items()},
    }


def status_json(status: AgentTaskStatus) -> dict[str, Any]:
    """The JSON form of a status the core computed (what the status patch writes)."""
    return status.to_dict()


def _typed_path() -> tuple[Callable[[dict[str, Any]], AgentTask], Callable[[AgentTask], Context]]:
    """What the controller does: the typed object from its cache, the context from its factory."""
    cache = AgentTaskCache()
    contexts = ContextFactory(SIGNER, Settings(jitter=0.0))

    def ctx_for(task: AgentTask) -> Context:
        return contexts(task, NOW - 10)

    return cache.load, ctx_for


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the measurement as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.parse_cost", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2000, help="calls per timing run (best of 5 runs)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    result = measure(args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
