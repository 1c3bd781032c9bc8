"""Helpers of the tests that run the operator as pods on the local node (test_operator_pods.py
installs it from manifests/, test_helm_pods.py with the Helm chart): the locally built image,
the probe server the webhook agent calls (its request log is the call ledger), and an
installed operator's pods, leader, AgentTasks and ledger."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent_operator.testing.image import image_archive
from agent_operator.testing.images import PROBE_IMAGE, probe_archive
from agent_operator.testing.pytest_plugin import Cluster

SELECTOR = "app.kubernetes.io/name=flyte-agent-operator,app.kubernetes.io/component=operator"
WEBHOOK_TASK = (Path(__file__).resolve().parents[2] / "examples" / "webhook-get.yaml").read_text()


def operator_image() -> tuple[Path, str]:
    """The image archive `make image` builds (or ``AGENT_OPERATOR_IMAGE_ARCHIVE``) and its reference."""
    archive = image_archive(log=lambda m: print(f"[image] {m}"))
    return Path(archive.path), str(archive.ref)


def import_probe_image(cluster: Cluster) -> None:
    """The probe server's image, built locally, into the node's containerd."""
    node = cluster.control_plane.node if cluster.control_plane else None
    assert node is not None, "needs the local node (node_cluster)"
    node.import_image(probe_archive(), PROBE_IMAGE)


def start_webhook_server(cluster: Cluster, namespace: str) -> None:
    """The probe server as pod ``webhook`` behind Service ``webhook`` (port 80), Ready; it meets
    Pod Security ``restricted`` and logs every request it answers as a JSON line."""
    webhook = {
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "webhook", "labels": {"app": "webhook"}},
             "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                 "name": "probe", "image": PROBE_IMAGE, "imagePullPolicy": "Never", "args": ["serve", ":8080"],
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
                                     "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                                     "seccompProfile": {"type": "RuntimeDefault"}}}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook"},
             "spec": {"selector": {"app": "webhook"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        ],
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(webhook))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/webhook", "--timeout=120s", timeout=150)


class Install:
    """The operator installed in ``namespace`` on ``cluster``'s node; ``name`` is its Deployment's
    and Lease's name (``agent-operator`` from manifests/, the release name from the chart)."""

    def __init__(self, cluster: Cluster, namespace: str, archive: Path, ref: str,
                 name: str = "agent-operator") -> None:
        self.cluster, self.namespace, self.archive, self.ref, self.name = cluster, namespace, archive, ref, name

    def k(self, *args: str, **kw: Any) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, **kw).stdout

    def pods(self) -> list[dict[str, Any]]:
        return list(json.loads(self.k("get", "pods", "-l", SELECTOR, "-o", "json"))["items"])

    def rollout_status(self, timeout: float = 240) -> str:
        return self.k("rollout", "status", f"deployment/{self.name}", f"--timeout={timeout:.0f}s",
                      timeout=timeout + 60)

    def leader(self) -> str:
        spec = json.loads(self.k("get", "lease", self.name, "-o", "json"))["spec"]
        return str(spec.get("holderIdentity") or "").split("_")[0]

    def wait_serving_leader(self, timeout: float = 120) -> str:
        """The Lease holder, once its controller has started (it logged "agent-operator ready")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader and "agent-operator ready" in self.k("logs", leader, check=False):
                return leader
            time.sleep(0.5)
        raise AssertionError(f"no leader started its controller within {timeout:.0f}s")

    def webhook_ip(self) -> str:
        return self.k("get", "svc", "webhook", "-o", "jsonpath={.spec.clusterIP}")

    def apply_tasks(self, names: list[str]) -> None:
        ip = self.webhook_ip()
        docs = []
        for name in names:
            doc = WEBHOOK_TASK.replace("http://127.0.0.1:18080/status", f"http://{ip}/tasks/{name}")
            docs.append(doc.replace("name: webhook-status", f"name: {name}", 1))
        self.cluster.kubectl("-n", self.namespace, "apply", "-f", "-", input="\n---\n".join(docs), timeout=300)

    def phases(self) -> dict[str, str]:
        items = json.loads(self.k("get", "agenttasks.flyteagents.dev", "-o", "json", timeout=120))["items"]
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}

    def wait_succeeded(self, names: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        phases: dict[str, str] = {}
        while time.monotonic() < deadline:
            phases = self.phases()
            if all(phases.get(n) == "Succeeded" for n in names):
                return phases
            time.sleep(1)
        pending = {n: phases.get(n) for n in names if phases.get(n) != "Succeeded"}
        raise AssertionError(f"{len(pending)} tasks not Succeeded: {dict(list(pending.items())[:10])}\n"
                             + self.k("logs", "-l", SELECTOR, "--tail=30", "--prefix", check=False))

    def ledger(self) -> Counter[str]:
        """Webhook calls per path, from the probe server's request log."""
        calls: Counter[str] = Counter()
        for line in self.k("logs", "webhook").splitlines():
            if line.startswith("{"):
                calls[json.loads(line)["path"]] += 1
        return calls
