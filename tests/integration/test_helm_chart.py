"""charts/flyte-agent-operator with the real helm (built from its Go module): lint, template
diffed against `kubectl kustomize` of manifests/ (the kustomize manifests stay the reference),
values reaching the objects, bad values refused naming the field, and install / upgrade /
rollback / uninstall on the real API server."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_support import MANIFESTS, ROOT, Kubectl, one, pick, render
from helm_support import CHART, helm, objects_of_release

from agent_operator.testing.assets import ensure_kubectl

HELM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
               "helm.sh/chart")
Objects = dict[tuple[str, str, str], dict[str, Any]]


def template(*values: str, release: str = "agent-operator", namespace: str = "flyte-agent-operator",
             crds: bool = True) -> list[dict[str, Any]]:
    flags = ["--include-crds"] if crds else []
    out = helm("template", release, str(CHART), "--namespace", namespace, *flags, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = ensure_kubectl()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(kubectl), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc

    return render(run, path)


def normalised(objs: list[dict[str, Any]]) -> Objects:
    """Objects keyed by (kind, namespace, name), without Helm's bookkeeping labels; the CRD
    without labels (kustomize adds its common labels to it, the chart ships the generated file)."""
    out: Objects = {}
    for obj in copy.deepcopy(objs):
        meta = obj["metadata"]
        labels = meta.get("labels", {})
        for key in HELM_LABELS:
            labels.pop(key, None)
        if obj["kind"] == "CustomResourceDefinition":
            meta.pop("labels", None)
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in out, f"duplicate {key}"
        out[key] = obj
    return out


def assert_same(chart: Objects, kustomized: Objects) -> None:
    assert sorted(chart) == sorted(kustomized), "the same set of objects"
    for key in kustomized:
        assert chart[key] == kustomized[key], f"{key} differs:\nchart: {chart[key]}\nkustomize: {kustomized[key]}"


def test_lint_strict_passes_and_fails_on_a_bad_value() -> None:
    helm("lint", "--strict", str(CHART))
    bad = helm("lint", "--strict", str(CHART), "--set", "replicaCount=two", check=False)
    assert bad.returncode != 0 and "/replicaCount" in bad.stdout + bad.stderr


def test_chart_crd_is_the_generated_crd() -> None:
    assert (CHART / "crds" / "agenttasks.flyteagents.dev.yaml").read_text() == \
        (ROOT / "crds" / "agenttasks.flyteagents.dev.yaml").read_text(), "stale chart CRD: run `make crds`"


def without_namespace_object(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kustomize base creates its Namespace; a chart installs into the release namespace,
    which `helm install` needs to exist already (docs/helm.md labels it as the base does)."""
    return [o for o in objs if o["kind"] != "Namespace"]


def test_defaults_render_the_cluster_wide_overlay() -> None:
    kustomized = without_namespace_object(kustomize(MANIFESTS / "overlays" / "cluster-wide"))
    assert_same(normalised(template()), normalised(kustomized))


def test_default_render_differs_from_kustomize_where_values_change_it() -> None:
    """Control: the diff bites (one changed value is one difference)."""
    chart = normalised(template("--set", "resources.limits.memory=1Gi"))
    kustomized = normalised(without_namespace_object(kustomize(MANIFESTS / "overlays" / "cluster-wide")))
    with pytest.raises(AssertionError, match="Deployment"):
        assert_same(chart, kustomized)


def test_namespaced_values_render_the_single_namespace_overlay() -> None:
    chart = normalised(template("--set", "watch.allNamespaces=false"))
    kustomized = normalised(without_namespace_object(kustomize(MANIFESTS / "overlays" / "single-namespace")))
    assert_same(chart, kustomized)


def test_sharding_values_render_the_sharded_overlay() -> None:
    chart = normalised(template("--set", "sharding.enabled=true", "--set", "leaderElection.enabled=false",
                                "--set", "replicaCount=3"))
    kustomized = normalised(without_namespace_object(kustomize(MANIFESTS / "overlays" / "sharded")))
    assert_same(chart, kustomized)


def test_roles_without_bindings_render_the_base() -> None:
    chart = template("--set", "rbac.bindings=false")
    args = one(chart, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    # the base leaves the scope to an overlay; the chart's default scope is cluster-wide
    args.remove("--all-namespaces")
    assert_same(normalised(chart), normalised(without_namespace_object(kustomize(MANIFESTS / "base"))))


def test_cluster_wide_render_includes_the_namespace_object_only_in_kustomize() -> None:
    objs = kustomize(MANIFESTS / "overlays" / "cluster-wide")
    assert [o["metadata"]["name"] for o in pick(objs, "Namespace")] == ["flyte-agent-operator"]
    assert pick(template(), "Namespace") == []


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return spec


def test_values_reach_the_objects() -> None:
    objs = template("--set", "image.repository=reg.example/ops/fao", "--set", "image.tag=1.2.3",
                    "--set", "replicaCount=1", "--set", "leaderElection.enabled=false",
                    "--set", "resources.requests.cpu=250m", "--set", "monitoring.enabled=false",
                    "--set", "watch.allNamespaces=false", "--set", "watch.namespaces={team-a,team-b}",
                    "--set", "extraArgs={--events=warnings}", release="ops", namespace="ops-ns")
    c = container(objs)
    assert c["image"] == "reg.example/ops/fao:1.2.3"
    assert one(objs, "Deployment")["spec"]["replicas"] == 1
    assert not [a for a in c["args"] if a.startswith("--leader-elect")]
    assert c["args"][-3:] == ["--namespace=team-a", "--namespace=team-b", "--events=warnings"]
    assert "--signing-secret=$(POD_NAMESPACE)/ops-signing-key" in c["args"]
    assert c["resources"]["requests"]["cpu"] == "250m"
    assert pick(objs, "Service") == [] and pick(objs, "ClusterRoleBinding") == []
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in pick(objs, "RoleBinding")}
    assert bindings == {("ops-ns", "ops"), ("team-a", "ops-tasks"), ("team-a", "ops-task-secrets"),
                        ("team-b", "ops-tasks"), ("team-b", "ops-task-secrets")}
    role = one(objs, "Role")
    assert {"resourceNames": ["ops-signing-key"], "apiGroups": [""], "resources": ["secrets"],
            "verbs": ["get"]} in role["rules"]


def test_leader_election_values_name_the_lease_everywhere() -> None:
    objs = template("--set", "leaderElection.leaseName=my-lease")
    assert "--leader-election-id=my-lease" in container(objs)["args"]
    lease_rules = [r for r in one(objs, "Role")["rules"] if r.get("resourceNames") and r["resources"] == ["leases"]]
    assert lease_rules[0]["resourceNames"] == ["my-lease"]


def test_service_monitor_toggle() -> None:
    objs = template("--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.interval=15s",
                    crds=False)
    monitor = one(objs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics", "interval": "15s"}]
    service = one(objs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["http-metrics"]
    assert pick(template(crds=False), "ServiceMonitor") == []


@pytest.mark.parametrize("values, field", [
    (("--set", "replicaCount=0"), "/replicaCount"),
    (("--set", "image.pullPolicy=Sometimes"), "/image/pullPolicy"),
    (("--set", "watch.namespaces={Not_A_Namespace}"), "/watch/namespaces/0"),
    (("--set", "monitoring.serviceMonitor.interval=soon"), "/monitoring/serviceMonitor/interval"),
    (("--set", "extraArgs={oops}"), "/extraArgs/0"),
    (("--set", "replicas=3"), "replicas"),  # a typo of replicaCount: unknown keys are refused
    (("--set", "replicaCount=3", "--set", "leaderElection.enabled=false"), "leaderElection.enabled"),
    (("--set", "sharding.enabled=true"), "leaderElection.enabled"),  # both at once
    (("--set", "sharding.ring=Not_A_Name"), "/sharding/ring"),
    (("--set", "monitoring.enabled=false", "--set", "monitoring.serviceMonitor.enabled=true"), "monitoring.enabled"),
])
def test_bad_values_are_refused_naming_the_field(values: tuple[str, ...], field: str) -> None:
    proc = helm("template", "agent-operator", str(CHART), *values, check=False)
    assert proc.returncode != 0 and field in proc.stderr, proc.stderr


# ---------------------------------------------------------------- on the real API server
@pytest.mark.cluster
def test_install_upgrade_rollback_uninstall(kubectl: Kubectl, kubeconfig: str, namespace: str) -> None:
    release = f"fao-{uuid.uuid4().hex[:6]}"
    helm("install", release, str(CHART), "--namespace", namespace, "--set", "watch.allNamespaces=false",
         kubeconfig=kubeconfig)
    try:
        installed = objects_of_release(kubectl, release, namespace)
        assert installed == {("Deployment", release), ("Service", f"{release}-metrics"),
                             ("ServiceAccount", release), ("Role", release), ("RoleBinding", release),
                             ("RoleBinding", f"{release}-tasks"), ("RoleBinding", f"{release}-task-secrets"),
                             ("PodDisruptionBudget", release), ("ClusterRole", f"{release}-tasks"),
                             ("ClusterRole", f"{release}-task-secrets")}
        kubectl("get", "crd", "agenttasks.flyteagents.dev")
        # the installed RBAC is the operator's: its ServiceAccount may patch tasks here, nowhere else
        sa = f"system:serviceaccount:{namespace}:{release}"
        assert kubectl("auth", "can-i", "patch", "agenttasks.flyteagents.dev", "-n", namespace,
                       f"--as={sa}").stdout.strip() == "yes"
        assert kubectl("auth", "can-i", "patch", "agenttasks.flyteagents.dev", "-n", "default",
                       f"--as={sa}", check=False).stdout.strip() == "no"
        assert kubectl("auth", "can-i", "list", "secrets", "-n", namespace, f"--as={sa}",
                       check=False).stdout.strip() == "no"

        helm("upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
             "--set", "monitoring.enabled=false", "--set", "image.tag=0.2.0", kubeconfig=kubeconfig)
        assert ("Service", f"{release}-metrics") not in objects_of_release(kubectl, release, namespace)
        dep = json.loads(kubectl("-n", namespace, "get", "deployment", release, "-o", "json").stdout)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "flyte-agent-operator:0.2.0"
        assert "--namespace=$(POD_NAMESPACE)" in dep["spec"]["template"]["spec"]["containers"][0]["args"]

        helm("rollback", release, "1", "--namespace", namespace, kubeconfig=kubeconfig)
        assert objects_of_release(kubectl, release, namespace) == installed
        history = json.loads(helm("history", release, "--namespace", namespace, "-o", "json",
                                  kubeconfig=kubeconfig).stdout)
        assert [h["revision"] for h in history] == [1, 2, 3] and history[-1]["status"] == "deployed"
    finally:
        helm("uninstall", release, "--namespace", namespace, kubeconfig=kubeconfig, check=False)
    assert objects_of_release(kubectl, release, namespace) == set()
    kubectl("get", "crd", "agenttasks.flyteagents.dev")  # Helm never deletes a chart's CRDs
