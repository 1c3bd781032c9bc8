"""manifests/ renders with kustomize and is accepted by the real API server; the operator's pod
meets the restricted Pod Security Standard; the RBAC is the documented least privilege."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from deploy_support import HOME_NAMESPACE, OVERLAYS, Kubectl, one, pick, render_overlay, to_yaml

pytestmark = pytest.mark.cluster

#: the same manager as a user's `kubectl apply --server-side` (and the other install tests)
FIELD_MANAGER = "kubectl"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_accepted_by_server_side_dry_run_and_apply(kubectl: Kubectl, overlay: str) -> None:
    objs = render_overlay(kubectl, overlay)
    # dry-run of namespaced objects needs their namespace to exist: create only that first
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
            input=to_yaml(pick(objs, "Namespace")))
    dry = kubectl("apply", "--server-side", "--dry-run=server", f"--field-manager={FIELD_MANAGER}",
                  "-f", "-", input=to_yaml(objs))
    assert "Warning" not in dry.stderr, dry.stderr
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=to_yaml(objs))
    for obj in objs:
        ns = obj["metadata"].get("namespace")
        args = ["get", f"{obj['kind'].lower()}.{obj['apiVersion'].split('/')[0]}"
                if "/" in obj["apiVersion"] else obj["kind"].lower(), obj["metadata"]["name"], "-o", "name"]
        kubectl(*(["-n", ns] if ns else []), *args)
    kubectl("wait", "--for=condition=Established", "crd/agenttasks.flyteagents.dev", "--timeout=60s")


def pod_from_deployment(deployment: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def test_operator_pod_is_admitted_under_pod_security_restricted(kubectl: Kubectl, namespace: str) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")
    objs = render_overlay(kubectl, "cluster-wide", namespace=namespace)
    deployment = one(objs, "Deployment")
    kubectl("apply", "--server-side", "-f", "-", input=to_yaml(pick(objs, "ServiceAccount")))
    # the Deployment itself only draws warnings; the Pod it would create is what is enforced
    dep = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(deployment))
    assert "PodSecurity" not in dep.stderr, dep.stderr
    pod = pod_from_deployment(deployment, namespace, "operator-pss-check")
    kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(pod))

    # control: the same pod without its container securityContext is refused, so the check bites
    bad = copy.deepcopy(pod)
    del bad["spec"]["containers"][0]["securityContext"]
    refused = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_is_ha_hardened_and_probed(kubectl: Kubectl, overlay: str) -> None:
    deployment = one(render_overlay(kubectl, overlay), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert "--leader-elect" in container["args"]
    scope = "--namespace=$(POD_NAMESPACE)" if overlay == "single-namespace" else "--all-namespaces"
    assert scope in container["args"]


def rules_of(objs: list[dict[str, Any]]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    out = []
    for role in pick(objs, "Role", "ClusterRole"):
        for rule in role["rules"]:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule["verbs"]:
                        out.append((group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_grants_only_what_the_operator_uses(kubectl: Kubectl, overlay: str) -> None:
    objs = render_overlay(kubectl, overlay)
    rules = rules_of(objs)
    assert not [r for r in rules if "*" in r[:3]], "no wildcards"
    secrets = {(verb, names) for group, res, verb, names in rules if res == "secrets"}
    assert secrets == {("get", ("agent-operator-signing-key",)), ("create", ()), ("get", ())}
    assert not [r for r in rules if r[1] == "secrets" and r[2] in ("list", "watch", "update", "patch", "delete")]
    assert {(r[1], r[2]) for r in rules if r[0] == "flyteagents.dev"} == {
        ("agenttasks", "get"), ("agenttasks", "list"), ("agenttasks", "watch"), ("agenttasks", "patch"),
        ("agenttasks/status", "get"), ("agenttasks/status", "patch")}
    bindings = pick(objs, "ClusterRoleBinding")
    if overlay == "single-namespace":
        assert bindings == [], "the namespaced install holds no cluster-wide permission"
        assert {b["metadata"]["namespace"] for b in pick(objs, "RoleBinding")} == {HOME_NAMESPACE}
    else:
        assert {b["roleRef"]["name"] for b in bindings} == {"agent-operator-tasks", "agent-operator-task-secrets"}
