"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

This is what controller-runtime's envtest does, plus the controller-manager (so namespace
deletion finishes and ownerReferences are garbage-collected) and RBAC authorization (so the
operator can be run with the least-privilege identity from ``manifests/``).  Everything
listens on loopback, on free ports, with fresh certificates, in a temporary directory.

``ControlPlane`` is a context manager::

    with ControlPlane() as cp:
        subprocess.run([cp.assets.kubectl, "--kubeconfig", cp.kubeconfig, "get", "ns"])
"""

from __future__ import annotations

import atexit
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from . import processes
from .assets import Assets, find_assets, node_binary
from .certs import PKI, generate_pki, issue_certificate, write_kubeconfig
from .node import Node

Log = Callable[[str], None]

#: controllers the tests rely on: namespace deletion, ownerReference GC, default ServiceAccounts,
#: legacy SA token secrets and the kube-root-ca.crt ConfigMap every namespace gets in a real cluster
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
#: what pods on a node need as well: the not-ready taint lifted, Deployments rolled out,
#: Service endpoints published, PodDisruptionBudgets tracked, terminated pods collected
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
)


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""


class ControlPlane:
    """Start, stop and restart one local control plane."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        assets: Assets | None = None,
        log: Log = print,
        keep_workdir: bool = False,
        start_timeout: float = 120.0,
        nodes: int = 0,
        feature_gates: Mapping[str, bool] | None = None,
    ) -> None:
        if nodes not in (0, 1):
            raise ValueError(f"nodes: {nodes!r} is not supported; use 0 (API only) or 1 (one local node)")
        self.nodes = nodes
        self.node: Node | None = None
        self.scheduler: subprocess.Popen[bytes] | None = None
        self._log = log
        #: kube-apiserver ``--feature-gates`` (e.g. ``{"ShardedListAndWatch": True}``); None: the release's defaults
        self.feature_gates = dict(feature_gates) if feature_gates else None
        self._assets = assets
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="agent-operator-cp-"))
        self.keep_workdir = keep_workdir
        self.start_timeout = start_timeout
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self.controller_manager: subprocess.Popen[bytes] | None = None
        self.etcd_port = 0
        self.etcd_peer_port = 0
        self.apiserver_port = 0
        self.pki: PKI | None = None
        self.startup_seconds = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def assets(self) -> Assets:
        """The binaries in use (found or built on first access)."""
        if self._assets is None:
            self._assets = find_assets(build=True, log=self._log)
        return self._assets

    @property
    def server(self) -> str:
        """The API server URL."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """Path of the admin kubeconfig (``system:masters``)."""
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        """Directory of the components' log files."""
        return self.workdir / "logs"

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running components."""
        out = {}
        for name, proc in (("etcd", self.etcd), ("kube-apiserver", self.apiserver),
                           ("kube-controller-manager", self.controller_manager),
                           ("kube-scheduler", self.scheduler)):
            if proc is not None and proc.poll() is None:
                out[name] = proc.pid
        if self.node is not None:
            out.update(self.node.pids)
        return out

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ControlPlane":
        """Start all three components and wait until the API server is ready."""
        assets = self.assets
        t0 = time.monotonic()
        try:
            if self.nodes:
                atexit.register(self.stop)  # a node changes host state: never leave it behind
                # the node's namespaces come first: their link address is the API server's
                # advertised address (the `kubernetes` Service endpoint pods reach)
                self.node = Node(self.workdir / "node", log=self._log)
                self.node.create_network()
            self.pki = generate_pki(self.workdir / "pki", extra_ips=(self.node.host_ip,) if self.node else ())
            self.etcd_port = self._another_free_port()
            self.etcd_peer_port = self._another_free_port()
            self._start_etcd(assets)
            self._start_apiserver_on_a_free_port()
            self._write_kubeconfig(self.kubeconfig, self.pki.admin_cert, self.pki.admin_key)
            self._start_controller_manager(assets)
            if self.node is not None:
                self._start_scheduler()
                self.node.start(f"https://{self.node.host_ip}:{self.apiserver_port}", self.pki)
                self._wait_node_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        if self.node is not None:
            self._log(f"node {self.node.name} Ready (InternalIP {self.node.node_ip}) after "
                      f"{self.node.startup_seconds:.1f}s of node start")
        self._log(f"control plane ready at {self.server} in {self.startup_seconds:.1f}s "
                  f"(binaries: {assets.source} {assets.directory}); kubeconfig {self.kubeconfig}")
        return self

    def stop(self) -> None:
        """Stop exactly the processes this object started, then remove its directory."""
        if self.node is not None:
            self.node.stop()
            self.node = None
            atexit.unregister(self.stop)
        processes.stop(self.scheduler)
        self.scheduler = None
        processes.stop(self.controller_manager)
        processes.stop(self.apiserver)
        processes.stop(self.etcd)
        self.controller_manager = self.apiserver = self.etcd = None
        if self._owns_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop only the API server (etcd keeps the data) — for restart fault tests."""
        processes.stop(self.apiserver)
        self.apiserver = None

    def start_apiserver(self) -> None:
        """(Re)start the API server on the same port and etcd, and wait for /readyz."""
        assert self.pki is not None
        pki = self.pki
        argv = [
            str(self.assets.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]
        if self.node is None:
            argv += ["--endpoint-reconciler-type=none"]
        else:
            # Pods reach the API server through the `kubernetes` Service: its endpoint is the
            # host end of the node's link, published by the lease reconciler.  The API server
            # reaches kubelets by their InternalIP for logs/exec.
            kubelet_client = issue_certificate(pki, self.workdir / "pki" / "apiserver-kubelet-client",
                                               "kube-apiserver-kubelet-client", "system:masters")
            argv = [a for a in argv if not a.startswith(("--bind-address", "--advertise-address",
                                                         "--authorization-mode"))]
            argv += [
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node.host_ip}",
                "--endpoint-reconciler-type=lease",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        if self.feature_gates:
            argv.append("--feature-gates=" + ",".join(
                f"{k}={'true' if v else 'false'}" for k, v in sorted(self.feature_gates.items())))
        self.apiserver = processes.spawn(argv, self.logs / "kube-apiserver.log")
        self._wait_ready("kube-apiserver", self.apiserver, self._apiserver_ready)

    def _another_free_port(self) -> int:
        """A free port none of this control plane's components uses yet; on the address the API
        server binds (all addresses when a node must reach it)."""
        taken = {self.etcd_port, self.etcd_peer_port, self.apiserver_port}
        while True:
            port = processes.free_port("0.0.0.0" if self.node is not None else "127.0.0.1")
            if port not in taken:
                return port

    def _start_apiserver_on_a_free_port(self, attempts: int = 3) -> None:
        """Start the API server on a port found free; if another process bound that port in
        between (seen in CI: a node test's API server failed with "address already in use"),
        try another one."""
        for attempt in range(1, attempts + 1):
            self.apiserver_port = self._another_free_port()
            try:
                self.start_apiserver()
                return
            except ControlPlaneError as e:
                processes.stop(self.apiserver)
                self.apiserver = None
                if "address already in use" not in str(e) or attempt == attempts:
                    raise
                self._log(f"port {self.apiserver_port} was taken before the API server bound it; trying another")

    def restart_apiserver(self) -> float:
        """Stop and start the API server on the same etcd; returns the seconds it was down."""
        t0 = time.monotonic()
        self.stop_apiserver()
        self.start_apiserver()
        return time.monotonic() - t0

    # ------------------------------------------------------------------ helpers
    def _start_etcd(self, assets: Assets) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            str(assets.etcd),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # test data: trade durability on power loss for speed
            "--log-level=warn",
        ]
        self.etcd = processes.spawn(argv, self.logs / "etcd.log")

        def ready() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait_ready("etcd", self.etcd, ready)

    def _start_controller_manager(self, assets: Assets) -> None:
        assert self.pki is not None
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self._write_kubeconfig(kubeconfig, self.pki.controller_manager_cert, self.pki.controller_manager_key)
        argv = [
            str(assets.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if self.node else ()))}",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={self.pki.sa_private_key}",
            f"--root-ca-file={self.pki.ca_cert}",
            "--concurrent-namespace-syncs=5",
            "--concurrent-gc-syncs=10",
            "--v=1",
        ]
        self.controller_manager = processes.spawn(argv, self.logs / "kube-controller-manager.log")
        # The controller-manager has no readiness endpoint with --secure-port=0; a short wait
        # proves it did not exit on bad flags.  Behaviour is proven by tests (namespace deletion).
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if self.controller_manager.poll() is not None:
                raise ControlPlaneError(
                    "kube-controller-manager exited at start:\n"
                    + processes.tail(self.logs / "kube-controller-manager.log")
                )
            time.sleep(0.1)

    def _start_scheduler(self) -> None:
        assert self.pki is not None
        cert = issue_certificate(self.pki, self.workdir / "pki" / "kube-scheduler", "system:kube-scheduler")
        kubeconfig = self.workdir / "scheduler.kubeconfig"
        self._write_kubeconfig(kubeconfig, *cert)
        argv = [
            str(node_binary("kube-scheduler", log=self._log)),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]
        self.scheduler = processes.spawn(argv, self.logs / "kube-scheduler.log")

    def _wait_node_ready(self) -> None:
        assert self.node is not None and self.node.kubelet is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.node.kubelet.poll() is not None:
                raise ControlPlaneError("the kubelet exited before its node was Ready:\n"
                                        + processes.tail(self.node.logs / "kubelet.log"))
            try:
                if self._node_ready():
                    return
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise ControlPlaneError(f"node {self.node.name} not Ready after {self.start_timeout:.0f}s:\n"
                                + processes.tail(self.node.logs / "kubelet.log"))

    def _node_ready(self) -> bool:
        """The node reports Ready and the node-lifecycle controller lifted its not-ready taint."""
        assert self.node is not None
        url = f"{self.server}/api/v1/nodes/{self.node.name}"
        with urllib.request.urlopen(url, timeout=2, context=self._ssl_context()) as resp:
            node = json.loads(resp.read())
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        tainted = any(t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints", []))
        return ready and not tainted

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def _apiserver_ready(self) -> bool:
        with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=self._ssl_context()) as resp:
            return bool(resp.status == 200)

    def _wait_ready(self, name: str, proc: subprocess.Popen[bytes], probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode} during start:\n"
                    + processes.tail(self.logs / f"{name}.log")
                )
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} not ready after {self.start_timeout:.0f}s:\n" + processes.tail(self.logs / f"{name}.log")
        )

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        assert self.pki is not None
        write_kubeconfig(path, self.server, self.pki.ca_cert, user={
            "client-certificate": str(cert),
            "client-key": str(key),
        })

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig that authenticates with a bearer ``token`` (e.g. a ServiceAccount's)."""
        assert self.pki is not None
        write_kubeconfig(path, self.server, self.pki.ca_cert, user={"token": token})
        return path
