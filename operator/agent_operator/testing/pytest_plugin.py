"""pytest fixtures over the real local control plane.

One control plane per test session (started lazily by the first test that needs it), a fresh
namespace per test, the real ``kubectl`` and a ``kubernetes`` client bound to it.  Set
``AGENT_OPERATOR_KUBECONFIG`` to run the suite against an already running cluster instead
(``make cluster-up`` prints one); the tests then never start or stop anything themselves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .assets import ensure_kubectl
from .controlplane import ControlPlane


@dataclass(frozen=True)
class Cluster:
    """What a test needs to reach the API server."""

    kubeconfig: Path
    kubectl_path: Path
    control_plane: ControlPlane | None  # None when an external cluster is used

    def kubectl(self, *args: str, input: str | bytes | None = None, check: bool = True,
                timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; raises with its stderr when ``check`` fails."""
        data = input.decode() if isinstance(input, bytes) else input
        proc = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=data, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed with {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``cluster`` and ``node`` markers."""
    config.addinivalue_line("markers", "cluster: needs the real local control plane")
    config.addinivalue_line("markers", "node: needs a real local node (containerd, kubelet, kube-proxy; root)")


def cluster_for_tests() -> Iterator[Cluster]:
    """An external cluster from ``AGENT_OPERATOR_KUBECONFIG``, or a fresh local control plane
    stopped afterwards (a generator, so a module can have a control plane of its own)."""
    external = os.environ.get("AGENT_OPERATOR_KUBECONFIG")
    if external:
        yield Cluster(Path(external), ensure_kubectl(), None)
        return
    cp = ControlPlane(log=lambda m: print(f"[control-plane] {m}"))
    cp.start()
    try:
        yield Cluster(cp.kubeconfig, cp.assets.kubectl, cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Cluster]:
    """The session's cluster: an external one from ``AGENT_OPERATOR_KUBECONFIG`` or a fresh local one."""
    yield from cluster_for_tests()


@pytest.fixture
def kubeconfig(control_plane: Cluster) -> str:
    """Path of the admin kubeconfig of the session's cluster."""
    return str(control_plane.kubeconfig)


@pytest.fixture
def kubectl(control_plane: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kubectl(*args, input=None, check=True)`` running the real kubectl binary."""
    return control_plane.kubectl


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: Cluster) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        release_leftover_agenttasks(control_plane, name)
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def release_leftover_agenttasks(cluster: Cluster, namespace: str) -> int:
    """Drop the finalizers of AgentTasks a test left behind, once its operator is gone.

    Without an operator nobody can finalize them, so the namespace would stay Terminating
    for the rest of the session and every later test that needs a quiet cluster (the write
    budget counts cluster-wide API writes) would wait in vain.  This is the documented
    escape hatch for an uninstalled operator, applied to test leftovers only; tests about
    finalizers check them before teardown.
    """
    listed = cluster.kubectl("-n", namespace, "get", "agenttasks.flyteagents.dev", "-o", "name", check=False)
    if listed.returncode != 0:  # no CRD installed in this session: nothing to release
        return 0
    names = [line for line in listed.stdout.split() if line]
    for obj in names:
        cluster.kubectl("-n", namespace, "patch", obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                        check=False)
    return len(names)


@pytest.fixture(scope="session")
def k8s_api(control_plane: Cluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` authenticated as cluster admin."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so fixture teardown (the node's cleanup) still runs."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def cluster_with_node() -> Iterator[Cluster]:
    """A fresh local control plane with one node (``ControlPlane(nodes=1)``), stopped afterwards.

    ``cluster.control_plane.node`` is the :class:`~agent_operator.testing.node.Node`
    (``import_image``, ``run`` inside its namespaces).  A killed run leaves nothing that the
    next node start does not clean up.
    """
    _interrupt_on_sigterm()
    cp = ControlPlane(log=lambda m: print(f"[control-plane+node] {m}"), nodes=1)
    try:
        cp.start()
        yield Cluster(cp.kubeconfig, cp.assets.kubectl, cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[Cluster]:
    """The session's control plane with a real node (started on first use, separate from ``control_plane``)."""
    yield from cluster_with_node()
