"""The README's install / upgrade / uninstall commands, run as written against the real API
server (except that a Deployment cannot start pods here: there is no kubelet)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.operator_proc import OperatorProcess
from deploy_support import MANIFESTS, ROOT, Kubectl
from operator_fixtures import crd  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster


def test_install_upgrade_and_uninstall_commands(kubectl: Kubectl) -> None:
    overlay = str(MANIFESTS.relative_to(ROOT) / "overlays" / "cluster-wide")
    # install (README: kubectl apply --server-side -k manifests/overlays/cluster-wide)
    kubectl("apply", "--server-side", "-k", str(ROOT / overlay))
    kubectl("wait", "--for=condition=Established", "crd/agenttasks.flyteagents.dev", "--timeout=60s")
    deployment = json.loads(kubectl("-n", "flyte-agent-operator", "get", "deployment", "agent-operator",
                                    "-o", "json").stdout)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "flyte-agent-operator:0.1.0"
    # upgrade = the same apply of the new release: idempotent, no conflicts with itself
    again = kubectl("apply", "--server-side", "-k", str(ROOT / overlay))
    assert "serverside-applied" in again.stdout
    # uninstall, checked without removing the CRD other tests use
    gone = kubectl("delete", "-k", str(ROOT / overlay), "--dry-run=server")
    assert "customresourcedefinition.apiextensions.k8s.io \"agenttasks.flyteagents.dev\" deleted" in gone.stdout
    assert 'deployment.apps "agent-operator" deleted' in gone.stdout


def test_finalizer_escape_hatch_when_the_operator_is_gone(
        kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path, crd: str) -> None:
    op = OperatorProcess(kubeconfig, namespaces=[namespace], agents=list(AGENT_SPECS),
                         env={LEDGER_ENV: str(tmp_path / "ledger.sqlite")}, log_path=tmp_path / "operator.log",
                         extra_args=["--default-poll-interval", "1"])
    manifest = agent_task_manifest("orphaned", task_template("test-async", phases=["RUNNING"]),
                                   namespace=namespace, pollInterval="1s")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with op:
        op.wait_ready()
        # uninstall step 1 (README): delete the tasks while the operator runs -> agent delete, released
        for name in ("first", "second"):
            kubectl("apply", "-f", "-", input=json.dumps(agent_task_manifest(
                name, task_template("test-async", phases=["RUNNING"]), namespace=namespace, pollInterval="1s")))
        deadline = time.monotonic() + 60
        while ledger.count("create") < 2:
            assert time.monotonic() < deadline, op.logs()[-3000:]
            time.sleep(0.3)
        kubectl("delete", "agenttasks", "--all", "-n", namespace, "--timeout=60s")
        assert ledger.count("delete") == 2
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + 60
        while json.loads(kubectl("-n", namespace, "get", "agenttask", "orphaned", "-o", "json").stdout
                         ).get("status", {}).get("phase") != "Running":
            assert time.monotonic() < deadline, op.logs()[-3000:]
            time.sleep(0.3)
        op.kill()  # the operator is gone (uninstalled first, or crashed for good)
    # the API server sets deletionTimestamp before the delete returns; with no operator left
    # nothing removes the finalizer, so the object is stuck as soon as it is read back
    kubectl("-n", namespace, "delete", "agenttask", "orphaned", "--wait=false")
    stuck = json.loads(kubectl("-n", namespace, "get", "agenttask", "orphaned", "-o", "json").stdout)
    assert stuck["metadata"]["deletionTimestamp"] and stuck["metadata"]["finalizers"] == ["flyteagents.dev/agent-cleanup"]
    # README: kubectl patch agenttask NAME -n NS --type=merge -p '{"metadata":{"finalizers":null}}'
    kubectl("patch", "agenttask", "orphaned", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl("-n", namespace, "wait", "--for=delete", "agenttask/orphaned", "--timeout=30s")
