"""The operator's Deployment from ``manifests/`` running as pods on the local node.

The image is the one ``make image`` builds from the Dockerfile (buildah, OCI archive),
imported into the node; the manifests are applied as users apply them with only the image
reference and the namespace patched (``testing/podinstall.py``).  The webhook agent in the
operator pods calls a probe server in another pod, whose request log is the call ledger.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from pods_support import Install, import_probe_image, operator_image, start_webhook_server

from agent_operator.testing.podinstall import split_ref, write_overlay
from agent_operator.testing.pytest_plugin import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.node]


@pytest.fixture(scope="module")
def install(node_cluster: Cluster) -> Iterator[Install]:
    """Image imported, manifests applied in a fresh namespace, rollout complete, webhook server up."""
    cp = node_cluster.control_plane
    assert cp is not None and cp.node is not None
    archive, ref = operator_image()
    cp.node.import_image(archive)
    import_probe_image(node_cluster)
    namespace = f"aop-{uuid.uuid4().hex[:6]}"
    overlay = write_overlay(cp.workdir / "overlays" / namespace, namespace, ref)
    node_cluster.kubectl("apply", "--server-side", "-k", str(overlay))
    inst = Install(node_cluster, namespace, archive, ref)
    inst.k("rollout", "status", "deployment/agent-operator", "--timeout=240s", timeout=300)
    start_webhook_server(node_cluster, namespace)
    yield inst
    node_cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-k", str(overlay), check=False, timeout=120)


def test_both_replicas_are_ready_under_restricted_non_root_with_a_read_only_root(install: Install) -> None:
    labels = json.loads(install.cluster.kubectl("get", "namespace", install.namespace, "-o", "json").stdout)
    assert labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = install.pods()
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert pod["spec"]["containers"][0]["image"] == install.ref
        name = pod["metadata"]["name"]
        assert install.k("exec", name, "--", "id", "-u").strip() == "10001"
        denied = install.cluster.kubectl("-n", install.namespace, "exec", name, "--", "touch", "/written",
                                         check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr + denied.stdout


def test_agenttasks_applied_with_kubectl_succeed_driven_by_the_pod(install: Install) -> None:
    names = [f"first-{i}" for i in range(3)]
    install.apply_tasks(names)
    install.wait_succeeded(names, timeout=120)
    assert install.leader() in {p["metadata"]["name"] for p in install.pods()}
    ledger = install.ledger()
    assert [ledger[f"/tasks/{n}"] for n in names] == [1, 1, 1]


def test_kubectl_logs_shows_the_operator_json_logs(install: Install) -> None:
    lines = install.k("logs", install.leader()).splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_metrics_service_answers_from_inside_the_cluster(install: Install) -> None:
    ip = install.k("get", "svc", "agent-operator-metrics", "-o", "jsonpath={.spec.clusterIP}")
    out = install.k("exec", "webhook", "--", "/probe", "get", f"http://{ip}:8080/metrics")
    assert out.startswith("200 ") and "agent_operator_leader" in out


def test_deleting_the_leader_pod_five_times_during_200_tasks(install: Install) -> None:
    names = [f"chaos-{i:03d}" for i in range(200)]
    install.apply_tasks(names)
    takeovers: list[float] = []
    last_words: dict[str, list[str]] = {}
    for _ in range(5):
        # a standby must exist to take over: wait until the replacement of the last kill is Ready
        install.k("rollout", "status", "deployment/agent-operator", "--timeout=180s", timeout=200)
        old = install.wait_serving_leader()
        follow = subprocess.Popen([str(install.cluster.kubectl_path), "--kubeconfig", str(install.cluster.kubeconfig),
                                   "-n", install.namespace, "logs", "-f", "--tail=0", old],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        install.k("delete", "pod", old, "--wait=false")
        t0 = time.monotonic()
        new = old
        while time.monotonic() - t0 < 60 and new in (old, ""):
            time.sleep(0.2)
            new = install.leader()
        takeovers.append(time.monotonic() - t0)
        follow.terminate()
        last_words[old] = [json.loads(line).get("message", "")[:160] for line in (follow.communicate()[0] or "")
                           .splitlines() if line.startswith("{")][-8:]
        assert new not in (old, ""), f"no new leader within 60 s after deleting {old}"
    print(f"leader takeovers after deleting the leader pod: {[round(t, 1) for t in takeovers]} s")
    assert max(takeovers) <= 15, (f"takeovers {[round(t, 1) for t in takeovers]} s; the deleted leaders' last "
                                  f"log messages: {json.dumps(last_words, indent=1)}")
    install.wait_succeeded(names, timeout=600)
    ledger = install.ledger()
    assert all(ledger[f"/tasks/{n}"] >= 1 for n in names)  # every task's webhook was really called
    # The README's definitions: a duplicate is a second attempt (a second idempotency key) for
    # one task; the same attempt asked again after a leader died between the call and its
    # status write is a legitimate re-ask, counted apart.
    items = json.loads(install.k("get", "agenttasks.flyteagents.dev", "-o", "json", timeout=120))["items"]
    attempts = {i["metadata"]["name"]: int(i["status"].get("attempt") or 1) for i in items
                if i["metadata"]["name"] in set(names)}
    duplicates = {n: a for n, a in attempts.items() if a != 1}
    re_asked = {n: ledger[f"/tasks/{n}"] - 1 for n in names if ledger[f"/tasks/{n}"] > 1}
    print(f"200 tasks, 5 leader deletions: duplicates {len(duplicates)}, re-asked webhook calls "
          f"{sum(re_asked.values())} ({sorted(re_asked)})")
    assert duplicates == {}
    install.k("rollout", "status", "deployment/agent-operator", "--timeout=180s", timeout=200)


def test_a_standby_pod_handles_sigterm_as_pid_1(install: Install) -> None:
    install.k("rollout", "status", "deployment/agent-operator", "--timeout=180s", timeout=200)
    leader = install.wait_serving_leader()
    standby = next(p["metadata"]["name"] for p in install.pods()
                   if p["metadata"]["name"] != leader and not p["metadata"].get("deletionTimestamp"))
    status = install.k("exec", standby, "--", "cat", "/proc/1/status")
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    # the kernel delivers to PID 1 of a PID namespace only the signals it has a handler for
    assert caught & (1 << (signal.SIGTERM - 1)), f"PID 1 of {standby} does not catch SIGTERM:\n{status}"


def test_rolling_update_to_a_new_tag_keeps_serving(install: Install) -> None:
    name, _ = split_ref(install.ref)
    new_ref = f"{name}:rollout-{uuid.uuid4().hex[:6]}"
    node = install.cluster.control_plane.node  # type: ignore[union-attr]
    node.import_image(install.archive, new_ref)
    install.k("set", "image", "deployment/agent-operator", f"operator={new_ref}")
    names = [f"rollout-{i}" for i in range(10)]
    install.apply_tasks(names)  # applied while the rollout replaces the pods one by one
    install.k("rollout", "status", "deployment/agent-operator", "--timeout=240s", timeout=300)
    install.wait_succeeded(names, timeout=180)
    pods = [p for p in install.pods() if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {new_ref}
    assert len(pods) == 2


def test_make_demo_cluster_drives_the_examples_with_pods_and_cluster_down_removes_the_node(tmp_path: Path) -> None:
    """`make demo-cluster` (docs/node.md): node + image + manifests/, every example Succeeded."""
    root = Path(__file__).resolve().parents[2]
    state_dir = tmp_path / "cluster"
    make = ["make", "-s", "-C", str(root), f"CLUSTER_DIR={state_dir}"]
    try:
        demo = subprocess.run([*make, "demo-cluster"], capture_output=True, text=True, timeout=900)
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
        assert "Every example reached Succeeded, driven by the operator pods" in demo.stdout
        assert '"path":"/status"' in demo.stdout and '"path":"/orders/' in demo.stdout  # the pods' calls
        node = json.loads((state_dir / "state.json").read_text())["node"]
    finally:
        down = subprocess.run([*make, "cluster-down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert node["host_link"] not in links
    assert not (state_dir / "data").exists()
