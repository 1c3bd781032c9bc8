"""The RBAC in manifests/ is enough and no more: the operator runs a full AgentTask lifecycle
with only the ServiceAccount token of each overlay, and the same token is refused what the
operator must not do."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.operator_proc import OperatorProcess
from deploy_support import RBAC_KINDS, Kubectl, mint_token, pick, render_overlay, to_yaml
from operator_fixtures import crd, release_all  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> Path:
    """The admin kubeconfig's cluster with a bearer token as the only credential."""
    config = yaml.safe_load(Path(admin_kubeconfig).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class Installed:
    """One overlay's ServiceAccount + RBAC applied into a test namespace, and a token for it."""

    def __init__(self, kubectl: Kubectl, admin_kubeconfig: str, overlay: str, home: str, tmp: Path) -> None:
        self.suffix = f"-{uuid.uuid4().hex[:6]}"
        self.objs = pick(render_overlay(kubectl, overlay, namespace=home, name_suffix=self.suffix), *RBAC_KINDS)
        kubectl("apply", "--server-side", "-f", "-", input=to_yaml(self.objs))
        self.kubectl = kubectl
        self.home = home
        self.service_account = f"agent-operator{self.suffix}"
        self.kubeconfig = token_kubeconfig(admin_kubeconfig, mint_token(kubectl, home, self.service_account),
                                           tmp / "operator-sa.kubeconfig")

    def as_operator(self, *args: str) -> Any:
        """kubectl with the operator's token only."""
        return self.kubectl("--kubeconfig", str(self.kubeconfig), *args, check=False)

    def can_i(self, *args: str) -> bool:
        return self.as_operator("auth", "can-i", *args).stdout.strip() == "yes"

    def cleanup(self) -> None:
        for obj in self.objs:
            if obj["kind"].startswith("Cluster"):
                self.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", check=False)


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"rbac-other-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("-n", name, "create", "secret", "generic", "not-yours", "--from-literal=k=v")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def run_lifecycle(kubectl: Kubectl, installed: Installed, tmp: Path, task_ns: str, *, all_namespaces: bool) -> str:
    """Operator with the SA token: apply -> Succeeded (with a Secret read), delete -> gone."""
    ledger = Ledger(tmp / "ledger.sqlite")
    kubectl("-n", task_ns, "create", "secret", "generic", "creds", "--from-literal=token=s3cr3t")
    op = OperatorProcess(
        installed.kubeconfig, namespaces=[] if all_namespaces else [task_ns], all_namespaces=all_namespaces,
        agents=list(AGENT_SPECS), env={LEDGER_ENV: str(ledger.path)}, log_path=tmp / "operator.log",
        extra_args=["--leader-elect", "--leader-election-namespace", installed.home,
                    "--signing-secret", f"{installed.home}/agent-operator-signing-key",
                    "--default-poll-interval", "1"],
    )
    with op:
        op.wait_ready()
        try:
            for name, template in (("async", task_template("test-async", phases=["RUNNING", "SUCCEEDED"])),
                                   ("sync", task_template("test-sync"))):
                manifest = agent_task_manifest(name, template, namespace=task_ns, secretRefs=[{"name": "creds"}])
                kubectl("apply", "-f", "-", input=json.dumps(manifest))
            uids = {name: json.loads(kubectl("-n", task_ns, "get", "agenttask", name, "-o", "json").stdout
                                     )["metadata"]["uid"] for name in ("async", "sync")}
            for name in ("async", "sync"):
                deadline = time.monotonic() + 60
                while True:
                    status = json.loads(kubectl("-n", task_ns, "get", "agenttask", name, "-o", "json").stdout
                                        ).get("status") or {}
                    if status.get("phase") == "Succeeded":
                        break
                    assert time.monotonic() < deadline, f"{name}: {status}\n{op.logs()[-4000:]}"
                    time.sleep(0.3)
            kubectl("-n", task_ns, "delete", "agenttask", "async", "sync", "--timeout=60s")
            assert kubectl("-n", task_ns, "get", "agenttasks", "-o", "name").stdout.strip() == ""
        finally:
            release_all(kubectl, task_ns, op)
        logs = op.logs()
    # counted per task: a cluster-wide operator also serves other tests' leftover AgentTasks
    # (namespaces still terminating), whose calls land in the same ledger
    assert ledger.count("create", key=uids["async"]) == 1, ledger.calls()
    assert ledger.count("do", key=uids["sync"]) == 1, ledger.calls()
    secret = installed.kubectl("-n", installed.home, "get", "secret", "agent-operator-signing-key", "-o", "name")
    assert secret.stdout.strip() == "secret/agent-operator-signing-key"
    lease = json.loads(kubectl("-n", installed.home, "get", "lease", "agent-operator", "-o", "json").stdout)
    assert lease["spec"]["leaseTransitions"] == 0
    for word in ("forbidden", "Forbidden", " 403"):
        assert word not in logs, logs[-4000:]
    return logs


def test_single_namespace_identity_runs_lifecycle_and_is_refused_elsewhere(
        kubectl: Kubectl, kubeconfig: str, namespace: str, other_namespace: str, tmp_path: Path, crd: str) -> None:
    installed = Installed(kubectl, kubeconfig, "single-namespace", namespace, tmp_path)
    try:
        run_lifecycle(kubectl, installed, tmp_path, namespace, all_namespaces=False)

        # refused: anything outside its namespace, and enumerating Secrets anywhere
        listing = installed.as_operator("get", "secrets", "--all-namespaces")
        assert listing.returncode != 0 and "Forbidden" in listing.stderr, listing.stderr
        other = installed.as_operator("-n", other_namespace, "get", "secret", "not-yours")
        assert other.returncode != 0 and "Forbidden" in other.stderr, other.stderr
        assert not installed.can_i("list", "secrets", "-n", namespace)
        assert not installed.can_i("watch", "secrets", "-n", namespace)
        assert not installed.can_i("list", "agenttasks.flyteagents.dev", "--all-namespaces")
        assert not installed.can_i("get", "agenttasks.flyteagents.dev", "-n", other_namespace)
        assert not installed.can_i("delete", "agenttasks.flyteagents.dev", "-n", namespace)
        assert not installed.can_i("create", "pods", "-n", namespace)
        assert not installed.can_i("update", "leases/someone-elses", "-n", namespace)
        assert not installed.can_i("get", "secret/creds", "-n", other_namespace)
        # allowed, and only by name: what the lifecycle needed
        assert installed.can_i("get", "secret/creds", "-n", namespace)
        assert installed.can_i("update", "leases/agent-operator", "-n", namespace)
    finally:
        installed.cleanup()


def test_cluster_wide_identity_runs_lifecycle_in_any_namespace_without_listing_secrets(
        kubectl: Kubectl, kubeconfig: str, namespace: str, other_namespace: str, tmp_path: Path, crd: str) -> None:
    installed = Installed(kubectl, kubeconfig, "cluster-wide", namespace, tmp_path)
    try:
        run_lifecycle(kubectl, installed, tmp_path, other_namespace, all_namespaces=True)

        listing = installed.as_operator("get", "secrets", "--all-namespaces")
        assert listing.returncode != 0 and "Forbidden" in listing.stderr, listing.stderr
        assert not installed.can_i("list", "secrets", "-n", other_namespace)
        assert not installed.can_i("watch", "secrets", "--all-namespaces")
        assert not installed.can_i("delete", "agenttasks.flyteagents.dev", "-n", other_namespace)
        assert not installed.can_i("update", "leases/agent-operator", "-n", other_namespace)
        assert not installed.can_i("create", "secrets", "-n", other_namespace)
        # documented scope: any Secret by name, in a task's namespace
        assert installed.can_i("get", "secret/not-yours", "-n", other_namespace)
        assert installed.can_i("list", "agenttasks.flyteagents.dev", "--all-namespaces")
    finally:
        installed.cleanup()
