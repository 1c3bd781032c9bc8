"""Shared fixtures and helpers of the operator lifecycle tests (imported by test_operator_*.py).

Every test gets a fresh namespace, a fresh call ledger and its own ``agent-operator run``
process watching only that namespace, so tests cannot see each other's tasks.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_operator.crd.names import CRD_NAME
from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.operator_proc import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]

__all__ = ["Env", "crd", "env", "task_template", "agent_task_manifest", "apiserver_writes"]


@pytest.fixture(scope="module")
def crd(control_plane: Any) -> str:
    """The AgentTask CRD installed and established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@dataclass
class Env:
    """One test's namespace, ledger, operator process and kubectl."""

    namespace: str
    kubectl: Kubectl
    kubeconfig: str
    ledger: Ledger
    operator: OperatorProcess

    def apply(self, name: str, template: dict[str, Any], **spec: Any) -> None:
        """Create an AgentTask (JSON through ``kubectl apply``)."""
        manifest = agent_task_manifest(name, template, namespace=self.namespace, **spec)
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def get(self, name: str, kind: str = "agenttask") -> dict[str, Any]:
        """The object as ``kubectl get -o json`` shows it."""
        out = self.kubectl("-n", self.namespace, "get", kind, name, "-o", "json").stdout
        data: dict[str, Any] = json.loads(out)
        return data

    def status(self, name: str) -> dict[str, Any]:
        """``status`` of an AgentTask ({} before the first write)."""
        return dict(self.get(name).get("status") or {})

    def uid(self, name: str) -> str:
        """``metadata.uid`` of an AgentTask."""
        return str(self.get(name)["metadata"]["uid"])

    def wait(self, what: str, pred: Callable[[], Any], timeout: float = 60.0, every: float = 0.3) -> Any:
        """Poll ``pred`` until it returns something truthy (bounded); fail with the operator log."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not reached within {timeout}s\n--- operator log ---\n"
                                     f"{self.operator.logs()[-5000:]}")
            time.sleep(every)

    def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until status.phase is one of ``phases``; returns the status."""
        result: dict[str, Any] = self.wait(
            f"{self.namespace}/{name} in phase {phases}",
            lambda: (s := self.status(name)).get("phase") in phases and s, timeout)
        return result

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events about the AgentTask ``name``."""
        out = self.kubectl("-n", self.namespace, "get", "events", "-o", "json",
                           "--field-selector", f"involvedObject.name={name}").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        """One condition of the AgentTask's status."""
        for c in self.status(name).get("conditions") or []:
            if c.get("type") == ctype:
                return dict(c)
        return None


def make_env(request: pytest.FixtureRequest, control_plane: Any, namespace: str, tmp_path: Path,
             *, entry_points: bool = False, extra_args: tuple[str, ...] = ()) -> Iterator[Env]:
    """Start an operator for ``namespace``; stop it (and dump its log on failure) afterwards."""
    ledger_path = tmp_path / "ledger.sqlite"
    op = OperatorProcess(
        str(control_plane.kubeconfig), namespaces=[namespace], agents=list(AGENT_SPECS),
        extra_args=["--default-poll-interval", "1", *extra_args], env={LEDGER_ENV: str(ledger_path)},
        entry_points=entry_points, log_path=tmp_path / "operator.log",
    )
    op.start()
    try:
        op.wait_ready()
        yield Env(namespace, control_plane.kubectl, str(control_plane.kubeconfig), Ledger(ledger_path), op)
    finally:
        release_all(control_plane.kubectl, namespace, op)
        op.stop()


def release_all(kubectl: Kubectl, namespace: str, op: OperatorProcess) -> None:
    """Delete the namespace's AgentTasks while an operator still runs, so no finalizer outlives
    the test (a namespace with orphaned finalizers would stay Terminating for the session)."""
    if op.running:
        kubectl("-n", namespace, "delete", "agenttasks", "--all", "--timeout=30s", check=False)
    out = kubectl("-n", namespace, "get", "agenttasks", "-o", "name", check=False).stdout.split()
    for ref in out:  # still there: the operator is gone or stuck; drop the finalizer by hand
        kubectl("-n", namespace, "patch", ref, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)


@pytest.fixture
def env(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> Iterator[Env]:
    """A namespace with its own operator (test agents and built-in agents loaded)."""
    yield from make_env(request, control_plane, namespace, tmp_path, entry_points=True)


_METRIC = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


def apiserver_writes(kubectl: Kubectl, resource: str = "agenttasks", verbs: tuple[str, ...] = ("PATCH", "PUT")) -> int:
    """Writes (by verb) to ``resource`` (any subresource) the API server counted so far."""
    total = 0
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        labels = dict(kv.split("=", 1) for kv in m.group("labels").split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("resource") == resource and labels.get("verb") in verbs:
            total += int(float(m.group("value")))
    return total
