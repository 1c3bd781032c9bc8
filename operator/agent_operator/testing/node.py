"""A real Kubernetes node for the local control plane: containerd + runc, kubelet, kube-proxy, CNI.

Everything the node changes lives in namespaces this module creates or under its directory:

* a network namespace (pods' bridge ``cni0``, their veths, kube-proxy's iptables rules,
  ``ip_forward``) joined to the host by one veth pair on a private /30 — the namespace has no
  default route, so pods can reach the API server and the node, nothing else;
* a private mount namespace in which ``/run``, ``/var/log`` and ``/var/lib`` are replaced by
  directories of the run (containerd's shim sockets, ``/var/log/pods``, CNI state), and where
  the kubelet's volume mounts and containerd's overlay mounts live — they vanish with it;
* a cgroup root of its own (``/agent-operator-<id>``) in every cgroup v1 hierarchy.

A ``stop()`` kills every process in the namespaces (containers, shims, containerd, kubelet),
which destroys the namespaces with their bridge, veths, rules and mounts, then removes the
cgroups.  A run that is killed leaves a record in ``$TMPDIR/agent-operator-nodes``; the next
start cleans up every record whose owner process is gone (``cleanup_stale``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from . import processes
from .assets import node_binary
from .certs import PKI, issue_certificate, write_kubeconfig
from .images import PAUSE_IMAGE, pause_archive

Log = Callable[[str], None]

POD_CIDR = "10.244.0.0/24"
#: /30 links between the host and node namespaces are carved out of this range
LINK_RANGE = ipaddress.ip_network("10.251.0.0/16")
KUBELET_PORT = 10250
REGISTRY = Path(tempfile.gettempdir()) / "agent-operator-nodes"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
#: host tools a node needs, and the Debian package that provides each
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}


class NodeError(RuntimeError):
    """The node could not be started; the message says which part and what to do."""


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def check_prerequisites() -> None:
    """Raise ``NodeError`` naming every missing host tool and the package that provides it."""
    missing = sorted({f"{tool} ({pkg})" for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not any(os.access(Path(d) / "bridge", os.X_OK) for d in CNI_BIN_DIRS):
        missing.append("CNI bridge/host-local/loopback/portmap plugins (containernetworking-plugins)")
    if os.geteuid() != 0:
        missing.append("root (the node creates namespaces, mounts and cgroups)")
    if missing:
        raise NodeError("a local node needs " + ", ".join(missing) + "; run `make node-prereqs`")


def _cni_bin_dir() -> str:
    return next(d for d in CNI_BIN_DIRS if os.access(Path(d) / "bridge", os.X_OK))


def _ns_inode(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _pids_in_namespace(net: str, mnt: str) -> list[int]:
    """Every process whose network or mount namespace is one of the node's."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _ns_inode(int(entry), "net") == net or _ns_inode(int(entry), "mnt") == mnt:
                found.append(int(entry))
        except OSError:
            continue
    return found


def _cgroup_mounts() -> list[Path]:
    """Mount points of the cgroup hierarchies (v1: one per controller set; v2: the unified one)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return mounts


def _create_cgroup_root(name: str) -> None:
    for mount in _cgroup_mounts():
        path = mount / name.lstrip("/")
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset children start empty
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((mount / knob).read_text())


def _remove_cgroup_root(name: str) -> None:
    for mount in _cgroup_mounts():
        root = mount / name.lstrip("/")
        if not root.is_dir():
            continue
        for _ in range(50):
            for dirpath, _dirs, _files in os.walk(root, topdown=False):
                for pid in (Path(dirpath) / "cgroup.procs").read_text().split() if (Path(dirpath) / "cgroup.procs").exists() else []:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            if not root.exists():
                break
            time.sleep(0.1)


@dataclass(frozen=True)
class NodeRecord:
    """What a later run needs to clean up after a node whose owner died."""

    node_id: str
    owner_pid: int
    owner_start: str
    holder_pid: int
    net_ns: str
    mnt_ns: str
    cgroup_root: str
    host_link: str
    directory: str

    @property
    def path(self) -> Path:
        return REGISTRY / f"{self.node_id}.json"

    def save(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.__dict__, indent=2))

    def owner_alive(self) -> bool:
        return processes.pid_alive(self.owner_pid) and _start_time(self.owner_pid) == self.owner_start


def destroy(record: NodeRecord, timeout: float = 30.0) -> None:
    """Kill every process in the node's namespaces, remove its cgroups, link and record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in _pids_in_namespace(record.net_ns, record.mnt_ns) if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _remove_cgroup_root(record.cgroup_root)
    # The host end of the veth goes away with the namespace; delete it if the kernel is slow.
    while time.monotonic() < deadline and _run(["ip", "link", "show", record.host_link], check=False).returncode == 0:
        _run(["ip", "link", "del", record.host_link], check=False)
        time.sleep(0.1)
    record.path.unlink(missing_ok=True)


def cleanup_stale(log: Log = print) -> int:
    """Destroy the leftovers of nodes whose owning process is gone; returns how many."""
    cleaned = 0
    for path in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
        try:
            record = NodeRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if record.owner_alive():
            continue
        log(f"cleaning up node {record.node_id} left by dead process {record.owner_pid}")
        destroy(record)
        shutil.rmtree(Path(record.directory), ignore_errors=True)
        cleaned += 1
    return cleaned


def _pick_link() -> tuple[str, str]:
    """A /30 in LINK_RANGE that no host interface uses: (host address, node address)."""
    used = _run(["ip", "-4", "-o", "addr", "show"]).stdout
    for _ in range(100):
        base = int(LINK_RANGE.network_address) + 4 * random.randrange(LINK_RANGE.num_addresses // 4)
        host, node = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
        if f" {host}/" not in used and f" {node}/" not in used:
            return host, node
    raise NodeError(f"no free /30 in {LINK_RANGE} for the node's link")


class Node:
    """One node: namespaces first (``create_network``), then components (``start``)."""

    def __init__(self, workdir: Path, name: str = "agent-operator-node", *, log: Log = print) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self._log = log
        self.node_id = f"{os.getpid()}-{os.urandom(3).hex()}"
        self.host_ip = ""
        self.node_ip = ""
        self.host_link = f"aop{os.urandom(4).hex()}"
        self.cgroup_root = f"/agent-operator-{self.node_id}"
        self.holder: subprocess.Popen[bytes] | None = None
        self.containerd: subprocess.Popen[bytes] | None = None
        self.kubelet: subprocess.Popen[bytes] | None = None
        self.kube_proxy: subprocess.Popen[bytes] | None = None
        self.record: NodeRecord | None = None
        self.startup_seconds = 0.0
        self._attached_pid: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def logs(self) -> Path:
        """Directory of the node components' logs."""
        return self.workdir / "logs"

    #: containerd's gRPC socket (the kubelet's CRI endpoint), inside the node's mount namespace:
    #: the node's processes use the usual short paths (``/run``, ``/var/lib``, ``/var/log``),
    #: which keeps unix socket paths under the kernel's 108-byte limit however deep the run's
    #: directory is.
    containerd_socket = Path("/run/containerd/containerd.sock")

    @property
    def pod_logs(self) -> Path:
        """The containers' logs as the host sees them (``/var/log/pods`` inside the node)."""
        return self.workdir / "var-log" / "pods"

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the node's running components."""
        return {name: proc.pid for name, proc in (("containerd", self.containerd), ("kubelet", self.kubelet),
                                                 ("kube-proxy", self.kube_proxy))
                if proc is not None and proc.poll() is None}

    # ------------------------------------------------------------------ namespaces
    @classmethod
    def attach(cls, holder_pid: int, name: str = "agent-operator-node") -> "Node":
        """A handle on a node another process started (``make cluster-up NODES=1``) for
        ``run``, ``ctr`` and ``import_image``; it does not own (or stop) the node."""
        if not processes.pid_alive(holder_pid):
            raise NodeError(f"holder_pid: no process {holder_pid}; is the node running (make cluster-status)?")
        node = cls(Path(tempfile.gettempdir()), name)
        node._attached_pid = holder_pid
        return node

    def _in_node(self, argv: list[str]) -> list[str]:
        pid = self.holder.pid if self.holder is not None else self._attached_pid
        if pid is None:
            raise NodeError("the node's namespaces do not exist yet: call create_network() first")
        return ["nsenter", "-t", str(pid), "--net", "--mount", "--", *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's network and mount namespaces (e.g. ``ip addr``)."""
        return _run(self._in_node(list(argv)), check=check)

    def create_network(self) -> None:
        """Create the namespaces and the host link; ``host_ip`` is then the API server's address."""
        check_prerequisites()
        cleanup_stale(self._log)
        for sub in ("var-log", "var-lib", "containerd", "cni/net.d", "logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.holder = processes.spawn(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            self.logs / "namespace-holder.log",
        )
        deadline = time.monotonic() + 10
        while _ns_inode(self.holder.pid, "net") == _ns_inode(os.getpid(), "net"):
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise NodeError("`unshare --net --mount` failed:\n" + processes.tail(self.logs / "namespace-holder.log"))
            time.sleep(0.02)
        self.record = NodeRecord(
            node_id=self.node_id, owner_pid=os.getpid(), owner_start=_start_time(os.getpid()),
            holder_pid=self.holder.pid, net_ns=_ns_inode(self.holder.pid, "net"),
            mnt_ns=_ns_inode(self.holder.pid, "mnt"), cgroup_root=self.cgroup_root,
            host_link=self.host_link, directory=str(self.workdir),
        )
        self.record.save()
        mounts = [
            "mount -t tmpfs -o mode=755 node-run /run",
            f"mount --bind {self.workdir / 'var-log'} /var/log",
            f"mount --bind {self.workdir / 'var-lib'} /var/lib",
            "ip link set lo up",
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
            # IPv4 only: no link-local chatter from the node's link to the host
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        ]
        self.run("sh", "-ec", "; ".join(mounts))
        self.host_ip, self.node_ip = _pick_link()
        _run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "eth0",
              "netns", str(self.holder.pid)])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_link])
        _run(["ip", "link", "set", self.host_link, "up"])
        self.run("ip", "addr", "add", f"{self.node_ip}/30", "dev", "eth0")
        self.run("ip", "link", "set", "eth0", "up")
        # Pods' traffic to the API server leaves with the node's address (the host has no
        # route to the pod network, and needs none).
        self.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", POD_CIDR, "-o", "eth0", "-j", "MASQUERADE")
        _create_cgroup_root(self.cgroup_root)

    # ------------------------------------------------------------------ components
    def start(self, server: str, pki: PKI) -> None:
        """Start containerd (with the pause image), the kubelet and kube-proxy against ``server``."""
        if self.holder is None:
            raise NodeError("Node.start() needs create_network() first")
        t0 = time.monotonic()
        self._write_cni_config()
        self._start_containerd()
        self.import_image(pause_archive())
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(exist_ok=True)
        kubelet_cert = issue_certificate(pki, pki_dir / "kubelet-client", f"system:node:{self.name}", "system:nodes")
        proxy_cert = issue_certificate(pki, pki_dir / "kube-proxy", "system:kube-proxy")
        write_kubeconfig(self.workdir / "kubelet.kubeconfig", server, pki.ca_cert,
                         {"client-certificate": str(kubelet_cert[0]), "client-key": str(kubelet_cert[1])})
        write_kubeconfig(self.workdir / "kube-proxy.kubeconfig", server, pki.ca_cert,
                         {"client-certificate": str(proxy_cert[0]), "client-key": str(proxy_cert[1])})
        self._start_kubelet(pki)
        self._start_kube_proxy()
        self.startup_seconds = time.monotonic() - t0

    def _write_cni_config(self) -> None:
        conflist = {
            "cniVersion": "1.0.0",
            "name": "agent-operator",
            "plugins": [
                {
                    "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                             "routes": [{"dst": "0.0.0.0/0"}]},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.workdir / "cni" / "net.d" / "10-agent-operator.conflist").write_text(json.dumps(conflist, indent=2))

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        config = f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this runc fails with
  # "can't get final child's PID from pipe" when it lowers a container's oom_score_adj
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{_cni_bin_dir()}"
    conf_dir = "{self.workdir / 'cni' / 'net.d'}"
"""
        path = base / "config.toml"
        path.write_text(config)
        self.containerd = processes.spawn(self._in_node(["containerd", "--config", str(path)]),
                                          self.logs / "containerd.log")
        self._wait("containerd", self.containerd, lambda: self.ctr("version", check=False).returncode == 0)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against the node's containerd in the ``k8s.io`` namespace (the CRI's)."""
        return _run(self._in_node(["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io",
                                   *args]), check=check)

    def import_image(self, archive: Path, ref: str | None = None) -> str:
        """Import an OCI (or docker) image archive into the node; returns the image reference.

        The archive's name annotation names the image; ``ref`` (when given) is the reference
        pods use: it is added as a tag when the archive names the image differently.
        """
        archive = Path(archive).resolve()
        if not archive.is_file():
            raise NodeError(f"archive: {archive} is not a file")
        proc = self.ctr("images", "import", str(archive), check=False)
        if proc.returncode != 0:
            raise NodeError(f"importing {archive} into the node failed: {proc.stderr.strip()}")
        imported = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("unpacking ")]
        if ref and ref not in imported:
            if not imported:
                raise NodeError(f"{archive} holds no named image to tag as {ref!r}: {proc.stdout.strip()}")
            self.ctr("images", "tag", "--force", imported[0], ref)
        name = ref or (imported[0] if imported else "")
        if name not in self.ctr("images", "list", "-q").stdout.split():
            raise NodeError(f"{archive} imported but {name!r} is not among the node's images")
        return name

    def _start_kubelet(self, pki: PKI) -> None:
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("# the node has no DNS server: pods use Service environment variables\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki.ca_cert)}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": "/var/log/pods",
            "resolvConf": str(resolv),
            "hairpinMode": "hairpin-veth",
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
        }
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [
            str(node_binary("kubelet", log=self._log)),
            f"--config={path}",
            f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            "--root-dir=/var/lib/kubelet",
            f"--node-ip={self.node_ip}",
            f"--hostname-override={self.name}",
            "--v=1",
        ]
        self.kubelet = processes.spawn(self._in_node(argv), self.logs / "kubelet.log")
        self._wait("kubelet", self.kubelet, lambda: self.run("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/10248",
                                                            check=False).returncode == 0)

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.workdir / "kube-proxy.kubeconfig")},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "bindAddress": self.node_ip,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # sysctls a network namespace may not change: leave them alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"masqueradeAll": True},
        }
        path = self.workdir / "kube-proxy-config.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [str(node_binary("kube-proxy", log=self._log)), f"--config={path}", "--v=1"]
        self.kube_proxy = processes.spawn(self._in_node(argv), self.logs / "kube-proxy.log")

    def _wait(self, name: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode} during start:\n"
                                + processes.tail(self.logs / f"{name}.log"))
            if ready():
                return
            time.sleep(0.2)
        raise NodeError(f"{name} not ready after {timeout:.0f}s:\n" + processes.tail(self.logs / f"{name}.log"))

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop everything and remove all the node created (namespaces, mounts, cgroups, link)."""
        for proc in (self.kube_proxy, self.kubelet):
            processes.stop(proc, timeout=5)
        if self.record is not None:
            destroy(self.record)
        for proc in (self.containerd, self.holder):
            processes.stop(proc, timeout=5)
        self.kube_proxy = self.kubelet = self.containerd = self.holder = None
        self.record = None
