"""The AgentTask CRD on the real API server, driven with the real kubectl.

Installation, ``kubectl get at`` / printer columns / ``explain``, and the admission side of
issue 9's bad-input table (``tests/admission_cases.py``): every case is rejected by the API
server with a message naming the field.  Unknown fields are *rejected* under kubectl's
default ``--validate=strict`` (server-side strict field validation) and *pruned* when a
client turns validation off - both are pinned here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from admission_cases import CASES, IMMUTABLE_MESSAGE_PART, SPEC_UPDATES, BadInput, manifest
from agent_operator.crd.names import CRD_NAME

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def crd(control_plane: Any) -> str:
    """The CRD from crds/, applied server-side and Established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


def _apply(kubectl: Kubectl, ns: str, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl("-n", ns, "apply", *extra, "-f", "-", input=json.dumps(obj), check=False)


def _get(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kubectl("-n", ns, "get", "agenttask", name, "-o", "json").stdout)
    return out


def test_crd_installs_and_becomes_established(crd: str, kubectl: Kubectl) -> None:
    conditions = json.loads(kubectl("get", "crd", crd, "-o", "jsonpath={.status.conditions}").stdout)
    status = {c["type"]: c["status"] for c in conditions}
    assert status["Established"] == "True" and status["NamesAccepted"] == "True"
    resources = kubectl("api-resources", "--api-group=flyteagents.dev", "--no-headers").stdout
    assert "agenttasks" in resources and " at " in f" {resources} " and "AgentTask" in resources


def test_valid_task_gets_defaults_and_is_listed_by_short_name_and_category(
    crd: str, kubectl: Kubectl, namespace: str
) -> None:
    assert _apply(kubectl, namespace, manifest("sensor-1")).returncode == 0
    obj = _get(kubectl, namespace, "sensor-1")
    assert obj["spec"]["maxAttempts"] == 1 and obj["spec"]["deletionPolicy"] == "Delete"
    assert "sensor-1" in kubectl("-n", namespace, "get", "at").stdout
    assert "agenttask.flyteagents.dev/sensor-1" in kubectl("-n", namespace, "get", "flyte", "-o", "name").stdout


def test_printer_columns_show_status_and_message_only_when_wide(crd: str, kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, namespace, manifest("cols"), "--validate=strict")
    status = {"phase": "Running", "attempt": 2, "reason": "Running", "message": "waiting for /tmp/x",
              "agent": {"name": "Sensor", "taskType": "sensor", "taskTypeVersion": 0, "sync": False}}
    kubectl("-n", namespace, "patch", "agenttask", "cols", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    header, row = kubectl("-n", namespace, "get", "at", "cols").stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "PHASE", "ATTEMPT", "AGE"]
    assert row.split()[:4] == ["cols", "sensor", "Running", "2"]
    wide_header, wide_row = kubectl("-n", namespace, "get", "at", "cols", "-o", "wide").stdout.splitlines()
    assert wide_header.split() == ["NAME", "TYPE", "PHASE", "ATTEMPT", "AGE", "AGENT", "REASON", "MESSAGE"]
    assert wide_row.endswith("Sensor   Running   waiting for /tmp/x")


def test_kubectl_explain_describes_every_spec_field(crd: str, kubectl: Kubectl) -> None:
    spec = kubectl("explain", "agenttask.spec").stdout
    for field in ("taskTemplate", "taskTemplateBase64", "inputs", "inputsBase64", "outputPrefix", "timeout",
                  "pollInterval", "maxAttempts", "deletionPolicy", "serviceAccountName", "secretRefs"):
        assert f"  {field}\t" in spec, field
    assert "Immutable after creation" in spec
    assert "at least 1s" in kubectl("explain", "agenttask.spec.pollInterval").stdout
    conditions = kubectl("explain", "agenttask.status.conditions").stdout
    assert "kubectl wait --for=condition=Succeeded" in conditions


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_rejected_at_admission_naming_the_field(
    crd: str, kubectl: Kubectl, namespace: str, case: BadInput
) -> None:
    proc = _apply(kubectl, namespace, case.obj)
    error = proc.stderr + proc.stdout
    assert proc.returncode != 0, f"{case.id} was accepted: {error}"
    assert case.field in error and case.message in error, error
    listed = kubectl("-n", namespace, "get", "at", "-o", "name").stdout
    assert listed.strip() == ""


def test_unknown_fields_are_pruned_when_validation_is_off(crd: str, kubectl: Kubectl, namespace: str) -> None:
    obj = manifest("typo", spec={"timeOut": "5m"})
    warn = _apply(kubectl, namespace, obj, "--validate=warn")
    assert warn.returncode == 0 and 'unknown field "spec.timeOut"' in warn.stderr
    stored = _get(kubectl, namespace, "typo")
    assert "timeOut" not in stored["spec"] and "timeout" not in stored["spec"]
    kubectl("-n", namespace, "delete", "at", "typo")
    assert _apply(kubectl, namespace, manifest("typo2", spec={"timeOut": "5m"}), "--validate=false").returncode == 0
    assert "timeOut" not in _get(kubectl, namespace, "typo2")["spec"]


@pytest.mark.parametrize(("change_id", "change"), SPEC_UPDATES, ids=[u[0] for u in SPEC_UPDATES])
def test_spec_change_after_creation_is_rejected_with_the_immutability_message(
    crd: str, kubectl: Kubectl, namespace: str, change_id: str, change: dict[str, Any]
) -> None:
    assert _apply(kubectl, namespace, manifest("frozen")).returncode == 0
    proc = kubectl("-n", namespace, "patch", "agenttask", "frozen", "--type=merge",
                   "-p", json.dumps({"spec": change}), check=False)
    assert proc.returncode != 0
    assert IMMUTABLE_MESSAGE_PART in proc.stderr and "create a new AgentTask" in proc.stderr
    reapplied = _apply(kubectl, namespace, manifest("frozen", spec=change))
    assert reapplied.returncode != 0 and IMMUTABLE_MESSAGE_PART in reapplied.stderr


def test_metadata_changes_are_allowed_on_an_immutable_spec(crd: str, kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, namespace, manifest("meta"))
    patch = {"metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"},
                          "finalizers": ["flyteagents.dev/agent-cleanup"]}}
    kubectl("-n", namespace, "patch", "agenttask", "meta", "--type=merge", "-p", json.dumps(patch))
    assert _get(kubectl, namespace, "meta")["metadata"]["finalizers"] == ["flyteagents.dev/agent-cleanup"]
    kubectl("-n", namespace, "patch", "agenttask", "meta", "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')


def test_status_subresource_ignores_spec_and_main_resource_ignores_status(
    crd: str, kubectl: Kubectl, namespace: str
) -> None:
    _apply(kubectl, namespace, manifest("split"))
    kubectl("-n", namespace, "patch", "agenttask", "split", "--subresource=status", "--type=merge",
            "-p", json.dumps({"spec": {"timeout": "5m"}, "status": {"phase": "Running"}}))
    obj = _get(kubectl, namespace, "split")
    assert "timeout" not in obj["spec"] and obj["status"]["phase"] == "Running"
    kubectl("-n", namespace, "patch", "agenttask", "split", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Succeeded"}}))
    assert _get(kubectl, namespace, "split")["status"]["phase"] == "Running"


@pytest.mark.parametrize(
    ("status", "field", "message"),
    [
        ({"phase": "Done"}, "status.phase", "Unsupported value"),
        ({"message": "x" * 5000}, "status.message", "may not be more than 4096"),
        ({"reason": "not a reason"}, "status.reason", "should match"),
        ({"startTime": "yesterday"}, "status.startTime", "date-time"),
        ({"conditions": [{"type": "Ready", "status": "Maybe", "reason": "R", "message": "",
                          "lastTransitionTime": "2026-01-02T03:04:05Z"}]}, "status.conditions[0].status",
         "Unsupported value"),
        ({"resourceMeta": "x" * (64 * 1024 + 1)}, "status.resourceMeta", "may not be more than 65536"),
    ],
    ids=["phase", "message-size", "reason", "start-time", "condition-status", "resource-meta-size"],
)
def test_status_writes_are_validated_too(
    crd: str, kubectl: Kubectl, namespace: str, status: dict[str, Any], field: str, message: str
) -> None:
    _apply(kubectl, namespace, manifest("st"))
    proc = kubectl("-n", namespace, "patch", "agenttask", "st", "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": status}), check=False)
    assert proc.returncode != 0 and field in proc.stderr and message in proc.stderr, proc.stderr
