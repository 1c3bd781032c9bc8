"""GitOps tools read AgentTask health right: the real kstatus library (tests/kstatus, the code
Flux and cli-utils run) and the Argo CD Lua health check (manifests/argocd/health.lua, in a
real Lua interpreter) agree on objects the operator left in each phase."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import lupa
import pytest
import yaml

from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, agent_task_manifest, task_template
from agent_operator.testing.operator_proc import OperatorProcess
from deploy_support import MANIFESTS, Kubectl, ensure_kstatus
from operator_fixtures import crd, release_all  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster

HEALTH_LUA = MANIFESTS / "argocd" / "health.lua"

#: task name -> (template config, extra spec, the phase it settles in, kstatus, Argo CD health)
WATCHED: dict[str, tuple[dict[str, Any], dict[str, Any], str, str, str]] = {
    "succeeded": ({}, {}, "Succeeded", "Current", "Healthy"),
    "running": ({"phases": ["RUNNING"]}, {}, "Running", "InProgress", "Progressing"),
    "failed": ({"errors": {"create": {"kind": "permanent"}}}, {}, "Failed", "Failed", "Degraded"),
    "timed-out": ({"phases": ["RUNNING"]}, {"timeout": "3s"}, "TimedOut", "Failed", "Degraded"),
    "aborted": ({"phases": ["ABORTED"]}, {}, "Aborted", "Failed", "Degraded"),
    "stalled": ({"phases": ["RUNNING"], "errors": {"get": {"kind": "transient"}}}, {}, "Stalled", "Failed", "Degraded"),
    "deleting": ({"phases": ["RUNNING"], "hang": "delete", "hangSeconds": 20}, {}, "Deleting", "Terminating",
                 "Progressing"),
}


class ArgoHealth:
    """manifests/argocd/health.lua run the way Argo CD runs it: ``obj`` global, returns ``hs``."""

    def __init__(self) -> None:
        self.lua = lupa.LuaRuntime(unpack_returned_tuples=True)
        self.fn = self.lua.eval("function(obj) " + HEALTH_LUA.read_text() + " end")

    def __call__(self, obj: dict[str, Any]) -> tuple[str, str]:
        hs = self.fn(self.lua.table_from(obj, recursive=True))
        return str(hs["status"]), str(hs["message"])


def kstatus(kubeconfig: str, namespace: str) -> dict[str, dict[str, str]]:
    out = subprocess.run([str(ensure_kstatus()), "-kubeconfig", kubeconfig, "-namespace", namespace],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {v["name"]: v for v in map(json.loads, out.splitlines())}


def objects(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("-n", namespace, "get", "agenttasks", "-o", "json").stdout)["items"]
    return {o["metadata"]["name"]: o for o in items}


def settled(obj: dict[str, Any], want: str) -> bool:
    status = obj.get("status") or {}
    if want == "Deleting":
        return bool(obj["metadata"].get("deletionTimestamp"))
    if want == "Stalled":
        return any(c["type"] == "Stalled" and c["status"] == "True" for c in status.get("conditions") or [])
    return bool(status.get("phase") == want)


@pytest.fixture
def phases(request: pytest.FixtureRequest, kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path,
           crd: str) -> Iterator[dict[str, dict[str, Any]]]:
    """Every WATCHED task, driven by a real operator until it settled in its phase."""
    op = OperatorProcess(kubeconfig, namespaces=[namespace], agents=list(AGENT_SPECS),
                         env={LEDGER_ENV: str(tmp_path / "ledger.sqlite")}, log_path=tmp_path / "operator.log",
                         extra_args=["--default-poll-interval", "1", "--transient-budget", "2"])
    with op:
        op.wait_ready()
        try:
            for name, (config, spec, *_rest) in WATCHED.items():
                manifest = agent_task_manifest(name, task_template("test-async", **config), namespace=namespace,
                                               pollInterval="1s", **spec)
                kubectl("apply", "-f", "-", input=json.dumps(manifest))
            deadline = time.monotonic() + 90
            while True:
                objs = objects(kubectl, namespace)
                pending = [n for n, (*_x, want, _k, _a) in WATCHED.items() if not settled(objs[n], want)]
                # deleted only once the others settled: its delete hangs for 20 s, then the
                # object is gone, so the verdicts below must be read inside that window
                if pending == ["deleting"] and settled(objs["deleting"], "Running"):
                    kubectl("-n", namespace, "delete", "agenttask", "deleting", "--wait=false")
                if not pending:
                    break
                assert time.monotonic() < deadline, (
                    f"not settled: {pending}\n{yaml.safe_dump({n: objs[n].get('status') for n in pending})}"
                    f"\n{op.logs()[-3000:]}")
                time.sleep(0.5)
            yield objs
        finally:
            release_all(kubectl, namespace, op)


def test_kstatus_and_argo_cd_read_each_phase(phases: dict[str, dict[str, Any]], kubeconfig: str,
                                              namespace: str) -> None:
    verdicts = kstatus(kubeconfig, namespace)
    argo = ArgoHealth()
    table = []
    for name, (*_x, phase, want_kstatus, want_argo) in WATCHED.items():
        obj = phases[name]
        got_argo, message = argo(obj)
        table.append((name, (obj.get("status") or {}).get("phase"), verdicts[name]["status"], got_argo, message))
    print("\n".join(f"{n:10} phase={p!s:10} kstatus={k:12} argo={a:12} {m}" for n, p, k, a, m in table))
    assert {n: k for n, _p, k, _a, _m in table} == {n: v[3] for n, v in WATCHED.items()}
    assert {n: a for n, _p, _k, a, _m in table} == {n: v[4] for n, v in WATCHED.items()}


def test_task_the_operator_has_not_observed_yet(kubectl: Kubectl, kubeconfig: str, namespace: str, crd: str) -> None:
    """No operator watches this namespace: the task has no status at all."""
    kubectl("apply", "-f", "-", input=json.dumps(agent_task_manifest("fresh", task_template("test-async"),
                                                                     namespace=namespace)))
    fresh = objects(kubectl, namespace)["fresh"]
    assert ArgoHealth()(fresh) == ("Progressing", "Waiting for the operator to pick up the AgentTask")
    # kstatus calls an object with neither status nor conditions Current: it cannot tell "not
    # reconciled yet" from "has no status" (README, GitOps).  A CRD whose status schema defaults
    # observedGeneration to 0 makes it InProgress (generation 1 not observed).  Pinned either way.
    defaulted = (fresh.get("status") or {}).get("observedGeneration") == 0
    assert kstatus(kubeconfig, namespace)["fresh"]["status"] == ("InProgress" if defaulted else "Current")


def test_argocd_configmap_patch_carries_the_health_script() -> None:
    patch = yaml.safe_load((MANIFESTS / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"]["resource.customizations.health.flyteagents.dev_AgentTask"] == HEALTH_LUA.read_text()
