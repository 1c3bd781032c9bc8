"""charts/flyte-agent-operator installed, upgraded and uninstalled with the real helm onto the
local node: the chart's Deployment runs as pods from the locally built image (imported into the
node's containerd, set through the chart's image values) in a namespace that enforces Pod
Security ``restricted`` as docs/helm.md labels it, and drives AgentTasks applied with kubectl;
the webhook agent in the operator pods calls a probe server in another pod, whose request log
is the call ledger.

The tests run in order on one release (a module fixture); each step builds on the one before.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Iterator

import pytest

from helm_support import CHART, helm, objects_of_release
from pods_support import SELECTOR, Install, import_probe_image, operator_image, start_webhook_server

from agent_operator.ha.table import OWNERS_ANNOTATION
from agent_operator.testing.images import PROBE_IMAGE
from agent_operator.testing.podinstall import split_ref
from agent_operator.testing.pytest_plugin import Cluster, release_leftover_agenttasks

pytestmark = [pytest.mark.cluster, pytest.mark.node]

#: docs/helm.md "Install": the namespace's Pod Security labels
POD_SECURITY = ("pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
                "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/audit=restricted")


class Release(Install):
    """The operator installed by ``helm install`` as release ``name`` (its Deployment's and Lease's name)."""

    def helm(self, *args: str, check: bool = True) -> str:
        return helm(*args, "--namespace", self.namespace, kubeconfig=str(self.cluster.kubeconfig), check=check).stdout

    def history(self) -> list[dict[str, object]]:
        return list(json.loads(self.helm("history", self.name, "-o", "json")))

    def images(self) -> set[str]:
        return {p["spec"]["containers"][0]["image"] for p in self.pods() if not p["metadata"].get("deletionTimestamp")}

    def assert_ready_pods(self, count: int, image: str) -> None:
        pods = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == count, [p["metadata"]["name"] for p in pods]
        for pod in pods:
            assert pod["status"]["phase"] == "Running"
            assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
            assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "flyte-agent-operator"
            container = pod["spec"]["containers"][0]
            assert container["image"] == image
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # Ready through the chart's probe


@pytest.fixture(scope="module")
def release(node_cluster: Cluster) -> Iterator[Release]:
    """The images on the node, a namespace labelled as docs/helm.md shows, the webhook server in it
    (not yet the operator: test_install_* installs it)."""
    cp = node_cluster.control_plane
    assert cp is not None and cp.node is not None
    archive, ref = operator_image()
    cp.node.import_image(archive, ref)
    import_probe_image(node_cluster)
    namespace = f"helm-{uuid.uuid4().hex[:6]}"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl("label", "namespace", namespace, *POD_SECURITY)
    rel = Release(node_cluster, namespace, archive, ref, name=f"fao-{uuid.uuid4().hex[:6]}")
    try:
        start_webhook_server(node_cluster, namespace)
        yield rel
    finally:
        if rel.name in rel.helm("list", "-q", check=False).split():
            rel.helm("uninstall", rel.name, check=False)
        release_leftover_agenttasks(node_cluster, namespace)
        node_cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def test_install_rolls_out_both_replicas_under_restricted_with_the_local_image(release: Release) -> None:
    # control: the namespace really enforces `restricted` (a pod without the securityContext is refused)
    refused = release.cluster.kubectl("-n", release.namespace, "run", "psa-control", f"--image={PROBE_IMAGE}",
                                      "--dry-run=server", check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, refused.stderr
    repository, tag = split_ref(release.ref)
    release.helm("install", release.name, str(CHART),
                 "--set", f"image.repository={repository}", "--set", f"image.tag={tag}")
    release.rollout_status()
    release.assert_ready_pods(2, release.ref)
    leader = release.wait_serving_leader()
    assert leader in {p["metadata"]["name"] for p in release.pods()}
    assert [h["status"] for h in release.history()] == ["deployed"]
    assert ("Deployment", release.name) in objects_of_release(release.cluster.kubectl, release.name, release.namespace)


def test_agenttasks_applied_with_kubectl_succeed_driven_by_the_pods(release: Release) -> None:
    names = [f"installed-{i}" for i in range(3)]
    release.apply_tasks(names)
    release.wait_succeeded(names, timeout=120)
    ledger = release.ledger()
    assert [ledger[f"/tasks/{n}"] for n in names] == [1, 1, 1]


def test_upgrade_to_a_new_image_tag_rolls_out_and_keeps_serving(release: Release) -> None:
    repository, _ = split_ref(release.ref)
    new_tag = f"upgrade-{uuid.uuid4().hex[:6]}"
    cp = release.cluster.control_plane
    assert cp is not None and cp.node is not None
    node = cp.node
    node.import_image(release.archive, f"{repository}:{new_tag}")  # a retag of the same archive
    release.helm("upgrade", release.name, str(CHART), "--reuse-values", "--set", f"image.tag={new_tag}",
                 "--set", "resources.requests.cpu=150m")
    release.rollout_status()
    release.assert_ready_pods(2, f"{repository}:{new_tag}")
    deployment = json.loads(release.k("get", "deployment", release.name, "-o", "json"))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "150m"
    assert [h["status"] for h in release.history()] == ["superseded", "deployed"]
    names = [f"upgraded-{i}" for i in range(3)]
    release.apply_tasks(names)
    release.wait_succeeded(names, timeout=180)
    assert release.wait_serving_leader() in {p["metadata"]["name"] for p in release.pods()}
    ledger = release.ledger()
    assert [ledger[f"/tasks/{n}"] for n in names] == [1, 1, 1]


def test_upgrade_to_sharded_replicas_shares_the_tasks_between_both_pods(release: Release) -> None:
    # docs/scaling.md: stop the single-active replicas first (a rolling update would run the
    # old Lease holder beside the first sharded replica for a moment, both driving tasks)
    release.k("scale", f"deployment/{release.name}", "--replicas=0")
    release.k("wait", "--for=delete", "pod", "-l", SELECTOR, "--timeout=120s", timeout=180)
    release.helm("upgrade", release.name, str(CHART), "--reuse-values", "--set", "sharding.enabled=true",
                 "--set", "leaderElection.enabled=false")
    release.rollout_status()
    pods = release.pods()
    assert len(pods) == 2 and all("--shards=auto" in p["spec"]["containers"][0]["args"] for p in pods)
    ring = f"{release.name}-shards"
    deadline = time.monotonic() + 120
    owners: set[str] = set()
    while time.monotonic() < deadline and len(owners - {""}) < 2:  # both replicas own slots
        lease = json.loads(release.k("get", "lease", ring, "-o", "json", check=False) or "{}")
        owners = set(json.loads(((lease.get("metadata") or {}).get("annotations") or {})
                                .get(OWNERS_ANNOTATION, "[]")))
        time.sleep(1)
    assert len(owners - {""}) == 2 and "" not in owners, owners
    names = [f"sharded-{i}" for i in range(6)]
    release.apply_tasks(names)
    release.wait_succeeded(names, timeout=180)
    ledger = release.ledger()
    assert [ledger[f"/tasks/{n}"] for n in names] == [1] * 6


def test_uninstall_removes_the_release_and_its_pods_and_keeps_the_crd(release: Release) -> None:
    # docs/helm.md: delete the AgentTasks while the operator still runs (it releases their
    # finalizers); one is kept to show that the CRD, and so the AgentTasks, stay
    tasks = [n for n in release.phases() if n != "installed-0"]
    release.k("delete", "agenttasks.flyteagents.dev", *tasks, "--timeout=120s", timeout=150)
    release.helm("uninstall", release.name)
    deadline = time.monotonic() + 120
    while release.pods() and time.monotonic() < deadline:
        time.sleep(1)
    assert release.pods() == [], "the release's pods are still there 120 s after `helm uninstall`"
    assert objects_of_release(release.cluster.kubectl, release.name, release.namespace) == set()
    assert release.helm("list", "-q").split() == []
    # nor its history: Helm's release records (Secrets) are gone too
    assert release.k("get", "secrets", "-l", f"owner=helm,name={release.name}", "-o", "name") == ""
    release.cluster.kubectl("get", "crd", "agenttasks.flyteagents.dev")  # Helm never deletes a chart's CRDs
    assert release.phases() == {"installed-0": "Succeeded"}
