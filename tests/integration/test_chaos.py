"""The fault suite: operator crashes, API server restarts, silently dead watch streams and
agent outages - nothing lost, nothing duplicated, nothing orphaned, no finalizer left behind.

Real processes throughout: the operator is ``agent-operator run`` (SIGKILLed and restarted),
the API server is the local control plane's (stopped and started on the same etcd), the
agent is the ledger-keeping test agent whose every call is committed to sqlite before it
answers, keyed by the idempotency key (``<uid>-<attempt>``).

``make test`` runs reduced sizes; ``make chaos`` (AGENT_OPERATOR_CHAOS=full) the issue's.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.operator_proc import OperatorProcess
from chaos_support import FULL, FreezableProxy, record
from operator_fixtures import crd  # noqa: F401 - fixture

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

TERMINAL = {"Succeeded", "Failed", "Aborted", "TimedOut"}


# --------------------------------------------------------------------------- helpers
def apply_many(kubectl: Any, namespace: str, manifests: list[dict[str, Any]], chunk: int = 50) -> None:
    """Create many AgentTasks with few kubectl calls (a List per chunk)."""
    for i in range(0, len(manifests), chunk):
        items = [dict(m, metadata={**m["metadata"], "namespace": namespace}) for m in manifests[i:i + chunk]]
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def tasks(kubectl: Any, namespace: str) -> dict[str, dict[str, Any]]:
    """Every AgentTask of the namespace by name."""
    out = kubectl("-n", namespace, "get", "agenttasks", "-o", "json").stdout
    return {o["metadata"]["name"]: o for o in json.loads(out)["items"]}


def phases(objs: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter((o.get("status") or {}).get("phase", "<none>") for o in objs.values())


def wait_for(what: str, pred: Any, timeout: float, op: OperatorProcess | None = None, every: float = 1.0,
             describe: Any = lambda: "") -> Any:
    """Poll ``pred`` until truthy (bounded); fail with ``describe()`` and the operator log."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            log = op.logs()[-6000:] if op else ""
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (now: {describe()})\n"
                                 f"--- operator log ---\n{log}")
        time.sleep(every)


def start_operator(kubeconfig: str, namespace: str, tmp_path: Path, ledger: Path, *extra: str,
                   name: str = "operator") -> OperatorProcess:
    op = OperatorProcess(kubeconfig, namespaces=[namespace], agents=list(AGENT_SPECS),
                         extra_args=["--default-poll-interval", "1", *extra], env={LEDGER_ENV: str(ledger)},
                         log_path=tmp_path / f"{name}.log")
    return op.start().wait_ready()


def creates_by_uid(ledger: Ledger, uids: dict[str, str]) -> dict[str, Counter[str]]:
    """name -> Counter(idempotency key -> create calls) from the agent's own ledger."""
    by_uid: dict[str, Counter[str]] = {uid: Counter() for uid in uids.values()}
    for call in ledger.calls(method="create"):
        uid = call.key.rsplit("-", 1)[0]
        if uid in by_uid:
            by_uid[uid][call.key] += 1
    return {name: by_uid[uid] for name, uid in uids.items()}


# --------------------------------------------------------------------------- operator crashes
def test_operator_sigkilled_repeatedly_loses_duplicates_and_orphans_nothing(
        control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> None:
    n_tasks, kills = (500, 20) if FULL else (40, 4)
    rng = random.Random(20261126)
    kubectl = control_plane.kubectl
    ledger_path = tmp_path / "ledger.sqlite"
    ledger = Ledger(ledger_path)
    poll = "5s" if FULL else "2s"
    # half finish by themselves, half run "forever" and are deleted while running
    short = [agent_task_manifest(f"short-{i:04d}", task_template(
        "test-latency", phases=["QUEUED", "RUNNING", "SUCCEEDED"], runSeconds=rng.uniform(2, 25 if FULL else 12),
        latency=0.05), pollInterval=poll) for i in range(n_tasks // 2)]
    long = [agent_task_manifest(f"long-{i:04d}", task_template(
        "test-latency", phases=["RUNNING"], latency=0.05), pollInterval=poll) for i in range(n_tasks - n_tasks // 2)]
    for m in long:
        m["metadata"]["labels"] = {"chaos": "long"}

    op = start_operator(str(control_plane.kubeconfig), namespace, tmp_path, ledger_path)
    recovery: list[float] = []
    try:
        apply_many(kubectl, namespace, short + long)
        uids = {name: o["metadata"]["uid"] for name, o in tasks(kubectl, namespace).items()}
        assert len(uids) == n_tasks
        for k in range(kills):
            time.sleep(rng.uniform(0.5, 4.0))
            op.kill()
            if k == kills // 2:
                # delete the long-running half while the operator is down: the next one
                # must cancel every job that was created, exactly as if it had been up
                kubectl("-n", namespace, "delete", "agenttasks", "-l", "chaos=long", "--wait=false")
            t0 = time.monotonic()
            op.restart()
            recovery.append(time.monotonic() - t0)

        def settled() -> bool:
            objs = tasks(kubectl, namespace)
            return not any(n.startswith("long-") for n in objs) and all(
                (objs[m["metadata"]["name"]].get("status") or {}).get("phase") in TERMINAL for m in short)

        wait_for("short tasks terminal and long tasks deleted", settled, 600 if FULL else 240, op,
                 describe=lambda: dict(phases(tasks(kubectl, namespace))))
        objs = tasks(kubectl, namespace)
        lost = sum(1 for m in short if objs[m["metadata"]["name"]]["status"]["phase"] != "Succeeded")

        creates = creates_by_uid(ledger, uids)
        # one attempt per task: more than one idempotency key means a second job was started
        duplicates = sum(max(0, len(keys) - 1) for keys in creates.values())
        reasked = sum(sum(keys.values()) - len(keys) for keys in creates.values())
        deletes = Counter(c.key for c in ledger.calls(method="delete"))
        orphans = [name for name in uids if name.startswith("long-")
                   for key in creates[name] if deletes[key] == 0]
        missing_creates = [m["metadata"]["name"] for m in short if not creates[m["metadata"]["name"]]]

        # the rest go away too: terminal tasks need no agent call, only the finalizer released
        kubectl("-n", namespace, "delete", "agenttasks", "--all", "--wait=false")
        wait_for("every AgentTask deleted", lambda: not tasks(kubectl, namespace), 120, op)
        stuck = len(tasks(kubectl, namespace))
        kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")
    finally:
        op.stop()

    record(**{"scenario": "operator SIGKILL", "tasks": n_tasks, "faults": f"{kills} kills", "lost": lost,
              "duplicates": duplicates, "orphans": len(orphans), "stuck finalizers": stuck,
              "max recovery s": max(recovery), "re-asked creates": reasked})
    assert lost == 0
    assert duplicates == 0, {n: dict(k) for n, k in creates.items() if len(k) > 1}
    assert not orphans, orphans
    assert not missing_creates
    assert stuck == 0


# --------------------------------------------------------------------------- API server restart
def test_apiserver_restart_mid_run_operator_reconnects_and_finishes_everything(
        control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> None:
    n_tasks = 200 if FULL else 20
    kubectl = control_plane.kubectl
    ledger_path = tmp_path / "ledger.sqlite"
    op = start_operator(str(control_plane.kubeconfig), namespace, tmp_path, ledger_path)
    try:
        apply_many(kubectl, namespace, [agent_task_manifest(f"before-{i:03d}", task_template(
            "test-latency", phases=["RUNNING", "SUCCEEDED"], runSeconds=20, latency=0.05), pollInterval="1s")
            for i in range(n_tasks)])
        # restart while most jobs are in flight (created, not finished)
        wait_for("tasks started", lambda: sum(phases(tasks(kubectl, namespace))[p] for p in ("Running", "Succeeded"))
                 >= n_tasks // 2, 180, op)
        down = control_plane.control_plane.restart_apiserver()
        t0 = time.monotonic()
        # objects created after the restart prove the watch came back (no deaf operator)
        apply_many(kubectl, namespace, [agent_task_manifest(f"after-{i:03d}", task_template(
            "test-latency", phases=["RUNNING", "SUCCEEDED"], runSeconds=1, latency=0.05), pollInterval="1s")
            for i in range(5)])
        wait_for("every task Succeeded after the API server restart",
                 lambda: phases(objs := tasks(kubectl, namespace)).get("Succeeded", 0) == len(objs) == n_tasks + 5,
                 300, op)
        recovered = time.monotonic() - t0
        uids = {name: o["metadata"]["uid"] for name, o in tasks(kubectl, namespace).items()}
        creates = creates_by_uid(Ledger(ledger_path), uids)
        duplicates = sum(max(0, len(keys) - 1) for keys in creates.values())
    finally:
        op.stop()
    record(**{"scenario": "API server restart", "tasks": n_tasks + 5, "faults": f"down {down:.1f}s",
              "lost": 0, "duplicates": duplicates, "orphans": 0, "stuck finalizers": 0,
              "max recovery s": recovered})
    assert duplicates == 0


def test_silently_dead_watch_is_detected_and_new_tasks_still_run(
        control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> None:
    """Freeze every connection of the operator (no FIN, no RST): it must notice the silence
    within its inactivity bound, reconnect and keep serving - not sit deaf forever."""
    kubectl = control_plane.kubectl
    proxy = FreezableProxy(target_port=control_plane.control_plane.apiserver_port).start()
    kubeconfig = proxy.kubeconfig(control_plane.kubeconfig, tmp_path / "via-proxy.kubeconfig")
    ledger_path = tmp_path / "ledger.sqlite"
    op = start_operator(str(kubeconfig), namespace, tmp_path, ledger_path,
                        "--watch-inactivity-timeout", "5", "--api-timeout", "10")
    try:
        apply_many(kubectl, namespace, [agent_task_manifest("before", task_template(
            "test-latency", phases=["RUNNING", "SUCCEEDED"], runSeconds=1), pollInterval="1s")])
        wait_for("first task Succeeded", lambda: phases(tasks(kubectl, namespace)).get("Succeeded") == 1, 60, op)
        frozen = proxy.freeze()
        assert frozen >= 1
        t0 = time.monotonic()
        apply_many(kubectl, namespace, [agent_task_manifest(f"after-{i}", task_template(
            "test-latency", phases=["RUNNING", "SUCCEEDED"], runSeconds=1), pollInterval="1s") for i in range(3)])
        wait_for("tasks created after the freeze Succeeded",
                 lambda: phases(tasks(kubectl, namespace)).get("Succeeded") == 4, 120, op)
        recovered = time.monotonic() - t0
    finally:
        op.stop()
        proxy.close()
    record(**{"scenario": "silent watch death", "tasks": 4, "faults": f"{frozen} conns frozen", "lost": 0,
              "duplicates": 0, "orphans": 0, "stuck finalizers": 0, "max recovery s": recovered})


# --------------------------------------------------------------------------- agent outage
def _metric_total(port: int, name: str, **labels: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_agent_outage_fails_no_task_and_all_finish_after_recovery(
        control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> None:
    n_tasks, outage_s = (50, 120.0) if FULL else (10, 25.0)
    kubectl = control_plane.kubectl
    outage = tmp_path / "outage"
    outage.write_text("down")
    ledger_path = tmp_path / "ledger.sqlite"
    # budget 3: the tasks in the outage go Stalled (kstatus: visible to GitOps) but not Failed
    op = start_operator(str(control_plane.kubeconfig), namespace, tmp_path, ledger_path, "--transient-budget", "3")
    try:
        apply_many(kubectl, namespace, [agent_task_manifest(f"t-{i:03d}", task_template(
            "test-latency", phases=["RUNNING", "SUCCEEDED"], runSeconds=1, latency=0.02,
            outageFile=str(outage)), pollInterval="1s") for i in range(n_tasks)])
        t0 = time.monotonic()
        seen_stalled: set[str] = set()
        seen_backoff_message = False
        while time.monotonic() - t0 < outage_s:
            for name, o in tasks(kubectl, namespace).items():
                status = o.get("status") or {}
                assert status.get("phase") not in TERMINAL, f"{name} ended during the outage: {status}"
                conds = {c["type"]: c for c in status.get("conditions") or []}
                if conds.get("Stalled", {}).get("status") == "True":
                    seen_stalled.add(name)
                if conds.get("Reconciling", {}).get("status") == "True" and "retry" in (status.get("message") or "").lower():
                    seen_backoff_message = True
            time.sleep(2)
        retries = _metric_total(op.health_port, "agent_operator_agent_errors_total", kind="transient")
        outage.unlink()
        t1 = time.monotonic()
        wait_for("every task Succeeded after the outage",
                 lambda: phases(tasks(kubectl, namespace)).get("Succeeded", 0) == n_tasks, 240, op)
        recovered = time.monotonic() - t1
        stalled_after = [n for n, o in tasks(kubectl, namespace).items()
                         if any(c["type"] == "Stalled" and c["status"] == "True"
                                for c in (o.get("status") or {}).get("conditions") or [])]
    finally:
        op.stop()
    record(**{"scenario": "agent outage", "tasks": n_tasks, "faults": f"{outage_s:.0f}s outage", "lost": 0,
              "duplicates": 0, "orphans": 0, "stuck finalizers": 0, "max recovery s": recovered})
    assert seen_backoff_message, "no task said it was retrying during the outage"
    assert seen_stalled, "no task reached Stalled after the transient budget"
    assert retries > 0, "agent_operator_agent_errors_total{kind=transient} did not count the outage"
    assert not stalled_after, f"Stalled not cleared after recovery: {stalled_after}"
