"""A real node in the local cluster: containerd + runc, kubelet, kube-proxy and CNI, as pods see them.

Every test here runs real pods from locally built images (pause, probe) on the node that
``ControlPlane(nodes=1)`` starts; nothing is mocked.  The cleanup tests prove that a stopped
(or killed) node leaves nothing on the host: no link, process, cgroup, mount or rule.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from agent_operator.testing import node as node_mod
from agent_operator.testing.controlplane import ControlPlane
from agent_operator.testing.images import PROBE_IMAGE, probe_archive
from agent_operator.testing.pytest_plugin import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.node]

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def probe_pod(name: str, args: list[str], labels: dict[str, str] | None = None) -> dict[str, object]:
    """A pod running the probe image, admissible under Pod Security ``restricted``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "probe", "image": PROBE_IMAGE, "imagePullPolicy": "Never", "args": args,
                "securityContext": RESTRICTED,
            }],
        },
    }


@pytest.fixture(scope="module")
def ns(node_cluster: Cluster) -> Iterator[str]:
    """A namespace on the node cluster enforcing Pod Security ``restricted``, with the probe image imported."""
    assert node_cluster.control_plane is not None and node_cluster.control_plane.node is not None
    node_cluster.control_plane.node.import_image(probe_archive(), PROBE_IMAGE)
    name = f"node-{uuid.uuid4().hex[:6]}"
    node_cluster.kubectl("create", "namespace", name)
    node_cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: Cluster, ns: str, obj: dict[str, object]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(obj))


def wait_ready(cluster: Cluster, ns: str, pod: str) -> dict[str, object]:
    proc = cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=120s", check=False)
    if proc.returncode != 0:
        described = cluster.kubectl("-n", ns, "describe", "pod", pod, check=False).stdout
        raise AssertionError(f"pod {pod} not Ready: {proc.stderr}\n{described}")
    return dict(json.loads(cluster.kubectl("-n", ns, "get", "pod", pod, "-o", "json").stdout))


def test_node_is_ready_untainted_and_reports_its_runtime(node_cluster: Cluster) -> None:
    node = json.loads(node_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in node] == ["agent-operator-node"]
    status = node[0]["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert not node[0]["spec"].get("taints")
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2" and info["kubeProxyVersion"] in ("", "v1.37.2")
    assert info["containerRuntimeVersion"].startswith("containerd://")
    internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
    assert internal == [node_cluster.control_plane.node.node_ip]  # type: ignore[union-attr]


def test_pod_gets_a_bridge_ip_and_reaches_the_api_server_in_cluster(node_cluster: Cluster, ns: str) -> None:
    apply(node_cluster, ns, probe_pod("whoami", ["whoami"]))
    pod = wait_ready(node_cluster, ns, "whoami")
    ip = ipaddress.ip_address(pod["status"]["podIP"])  # type: ignore[index]
    assert ip in ipaddress.ip_network(node_mod.POD_CIDR)
    node = node_cluster.control_plane.node  # type: ignore[union-attr]
    bridge = node.run("ip", "-4", "-o", "addr", "show", "cni0").stdout
    assert "10.244.0.1/24" in bridge
    # the pod authenticated with its projected token over the `kubernetes` Service (10.0.0.1),
    # verifying the API server with the CA bundle: the log line is written only on success
    deadline = time.monotonic() + 60
    logs = ""
    while time.monotonic() < deadline and "in-cluster user" not in logs:
        logs = node_cluster.kubectl("-n", ns, "logs", "whoami", check=False).stdout
        time.sleep(0.5)
    assert logs.strip() == f"in-cluster user: system:serviceaccount:{ns}:default via 10.0.0.1:443"


def test_kubectl_exec_and_logs_reach_the_container(node_cluster: Cluster, ns: str) -> None:
    apply(node_cluster, ns, probe_pod("server", ["serve", ":8080"]))
    wait_ready(node_cluster, ns, "server")
    out = node_cluster.kubectl("-n", ns, "exec", "server", "--", "/probe", "echo", "exec", "works").stdout
    assert out == "exec works\n"
    assert "serving on :8080" in node_cluster.kubectl("-n", ns, "logs", "server").stdout


def test_a_pod_reaches_another_pod_through_a_service(node_cluster: Cluster, ns: str) -> None:
    apply(node_cluster, ns, probe_pod("backend", ["serve", ":8080"], labels={"app": "backend"}))
    apply(node_cluster, ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
        "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    apply(node_cluster, ns, probe_pod("client", ["serve", ":9090"]))
    wait_ready(node_cluster, ns, "backend")
    wait_ready(node_cluster, ns, "client")
    cluster_ip = node_cluster.kubectl("-n", ns, "get", "svc", "backend", "-o", "jsonpath={.spec.clusterIP}").stdout
    deadline = time.monotonic() + 60
    out = ""
    while time.monotonic() < deadline and not out.startswith("200"):  # until kube-proxy has the endpoint
        out = node_cluster.kubectl("-n", ns, "exec", "client", "--", "/probe", "get",
                                   f"http://{cluster_ip}/hello", check=False).stdout
        time.sleep(0.5)
    assert out.startswith("200 ")
    assert json.loads(out[4:]) == {"host": "backend", "method": "GET", "path": "/hello", "body": ""}


# ---------------------------------------------------------------------------------------- cleanup
def host_state() -> dict[str, object]:
    """What a node could leave behind on the host, as seen from the host's namespaces."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
        "iptables": subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        .splitlines()[1:-1],
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "mounts": Path("/proc/self/mountinfo").read_text().count("\n"),
    }


def leftovers(record: node_mod.NodeRecord) -> list[str]:
    """Everything of the node ``record`` describes that still exists on the host."""
    found = []
    pids = node_mod._pids_in_namespace(record.net_ns, record.mnt_ns)
    if pids:
        found.append(f"processes {pids}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    if record.host_link in links:
        found.append(f"link {record.host_link}")
    for mount in node_mod._cgroup_mounts():
        if (mount / record.cgroup_root.lstrip("/")).exists():
            found.append(f"cgroup {mount}{record.cgroup_root}")
    if record.directory in Path("/proc/self/mountinfo").read_text():
        found.append("mounts under the node directory")
    if record.path.exists():
        found.append(f"record {record.path}")
    return found


def run_a_pod(cp: ControlPlane) -> None:
    assert cp.node is not None
    cp.node.import_image(probe_archive(), PROBE_IMAGE)
    cluster = Cluster(cp.kubeconfig, cp.assets.kubectl, cp)
    apply(cluster, "default", probe_pod("leftover", ["serve", ":8080"]))
    wait_ready(cluster, "default", "leftover")


def test_stop_removes_the_containers_namespaces_link_cgroups_and_mounts() -> None:
    before = host_state()
    cp = ControlPlane(log=lambda m: None, nodes=1)
    try:
        cp.start()
        run_a_pod(cp)
        assert cp.node is not None and cp.node.record is not None
        record = cp.node.record
        running = leftovers(record)
        # while it runs, its mounts stay in its own mount namespace and its rules in its own
        # network namespace: the host sees the link, the processes and the cgroups only
        assert running[:1] and running[0].startswith("processes")
        assert f"link {record.host_link}" in running
        assert "mounts under the node directory" not in running
        assert host_state()["iptables"] == before["iptables"]
        workdir = cp.workdir
    finally:
        cp.stop()
    assert leftovers(record) == []
    assert not workdir.exists()
    after = host_state()
    assert after == before


KILLED_RUN = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from agent_operator.testing.controlplane import ControlPlane
    from test_node import run_a_pod
    cp = ControlPlane(log=lambda m: None, nodes=1)
    cp.start()
    run_a_pod(cp)
    print(json.dumps(cp.node.record.__dict__), flush=True)
    time.sleep(600)
""")


def test_a_killed_run_is_cleaned_up_by_the_next_start() -> None:
    before = host_state()
    script = KILLED_RUN.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "the run to be killed did not start its node"
        record = node_mod.NodeRecord(**json.loads(line))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the test run is killed: no cleanup code runs
        proc.wait()
    # the kubelet and containerd die with it (PDEATHSIG); the containers and their shims survive
    def components() -> list[str]:
        names = []
        for pid in node_mod._pids_in_namespace(record.net_ns, record.mnt_ns):
            try:
                names.append(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass
        return [n for n in names if n in ("kubelet", "containerd", "kube-proxy")]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and components():
        time.sleep(0.2)
    assert components() == []
    assert leftovers(record), "a killed node should leave something for the next start to clean"
    assert node_mod.cleanup_stale(log=lambda m: None) >= 1
    assert leftovers(record) == []
    assert host_state() == before
    assert not Path(record.directory).exists()
    workdir = Path(record.directory).parent  # the killed control plane's own files (etcd data, logs)
    if workdir.name.startswith("agent-operator-cp-"):
        shutil.rmtree(workdir, ignore_errors=True)


def test_make_cluster_up_with_a_node_and_cluster_down_removes_it(tmp_path: Path) -> None:
    """The commands docs/node.md shows: `make cluster-up NODES=1`, kubectl get nodes, `make cluster-down`."""
    root = Path(__file__).resolve().parents[2]
    state_dir = tmp_path / "cluster"
    make = ["make", "-s", "-C", str(root), f"CLUSTER_DIR={state_dir}"]
    up = subprocess.run([*make, "cluster-up", "NODES=1"], capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        nodes = subprocess.run([str(state_dir / "bin" / "kubectl"), "--kubeconfig", str(state_dir / "kubeconfig"),
                                "get", "nodes", "-o", "wide"], capture_output=True, text=True, check=True).stdout
        assert "agent-operator-node   Ready" in nodes and "containerd://" in nodes
        state = json.loads((state_dir / "state.json").read_text())["node"]
    finally:
        down = subprocess.run([*make, "cluster-down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert state["host_link"] not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not any((m / state["cgroup_root"].lstrip("/")).exists() for m in node_mod._cgroup_mounts())
    assert not node_mod.processes.pid_alive(state["holder_pid"])
    assert not (state_dir / "data").exists()


def test_make_node_prereqs_is_idempotent() -> None:
    """`make node-prereqs` (docs/node.md) finds every package installed and changes nothing."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["make", "-s", "-C", str(root), "node-prereqs"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("node prerequisites present: containerd runc containernetworking-plugins")
    node_mod.check_prerequisites()  # and the node finds every tool it needs
