"""manifests/overlays/sharded renders, is accepted by the real API server, runs every replica
with ``--shards=auto`` and grants Lease rights in the operator's namespace only."""

from __future__ import annotations

import pytest

from pathlib import Path

from deploy_support import HOME_NAMESPACE, Kubectl, one, pick, render_overlay, to_yaml

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def test_sharded_overlay_runs_active_active_replicas_with_namespaced_lease_rights(kubectl: Kubectl) -> None:
    objs = render_overlay(kubectl, "sharded")
    kubectl("apply", "--server-side", "-f", "-", input=to_yaml(pick(objs, "Namespace")))
    # the command docs/scaling.md shows, against the real API server (dry run: the session's
    # cluster is shared with the single-active install tests)
    dry = kubectl("apply", "--server-side", "-k", str(ROOT / "manifests" / "overlays" / "sharded"),
                  "--dry-run=server")
    assert "Warning" not in dry.stderr, dry.stderr
    deployment = one(objs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert "--shards=auto" in container["args"] and "--leader-elect" not in container["args"]
    assert "--all-namespaces" in container["args"]
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    shard_roles = [r for r in pick(objs, "Role") if r["metadata"]["name"] == "agent-operator-shards"]
    assert [r["metadata"]["namespace"] for r in shard_roles] == [HOME_NAMESPACE]
    assert shard_roles[0]["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                        "verbs": ["get", "list", "create", "update", "delete"]}]
    cluster_lease_rules = [rule for role in pick(objs, "ClusterRole") for rule in role["rules"]
                           if "leases" in rule.get("resources", ())]
    assert cluster_lease_rules == []
