"""The local control plane is a real Kubernetes: admission, CEL, status subresource, controllers, kubectl."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from agent_operator.testing import assets

pytestmark = pytest.mark.cluster

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.cptest.flyteagents.dev
spec:
  group: cptest.flyteagents.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - rule: "self.size >= oldSelf.size"
              message: "spec.size may only grow"
            properties:
              size: {type: integer, minimum: 1}
          status:
            type: object
            properties:
              phase: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"""


def _widget(name: str, size: int) -> str:
    return json.dumps({
        "apiVersion": "cptest.flyteagents.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    })


@pytest.fixture
def widget_crd(kubectl) -> str:
    kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.cptest.flyteagents.dev", "--timeout=60s")
    return "widgets.cptest.flyteagents.dev"


def test_kubectl_reports_the_pinned_server_version(kubectl) -> None:
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == assets.KUBERNETES_VERSION
    assert out["serverVersion"]["minor"] == assets.KUBERNETES_VERSION.split(".")[1]


def test_namespace_is_created_and_listed(kubectl, namespace) -> None:
    names = kubectl("get", "ns", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert namespace in names
    assert "kube-system" in names


def test_crd_object_lifecycle_with_cel_printer_columns_and_status(kubectl, namespace, widget_crd) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_widget("w1", 2))

    # CEL transition rule rejects a shrinking update, with the rule's message
    rejected = kubectl("apply", "-n", namespace, "-f", "-", input=_widget("w1", 1), check=False)
    assert rejected.returncode != 0
    assert "spec.size may only grow" in rejected.stderr

    # OpenAPI validation rejects an out-of-range value at admission
    invalid = kubectl("apply", "-n", namespace, "-f", "-", input=_widget("w2", 0), check=False)
    assert invalid.returncode != 0
    assert "spec.size" in invalid.stderr

    # status is only writable through the subresource
    kubectl("patch", "-n", namespace, "widget", "w1", "--type=merge",
            "-p", '{"status": {"phase": "Ignored"}}')
    assert kubectl("get", "-n", namespace, "widget", "w1", "-o", "jsonpath={.status.phase}").stdout == ""
    kubectl("patch", "-n", namespace, "widget", "w1", "--subresource=status", "--type=merge",
            "-p", '{"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}}')

    # printer columns and short names work through kubectl
    table = kubectl("get", "-n", namespace, "wdg").stdout
    assert table.split("\n")[0].split() == ["NAME", "SIZE", "PHASE"]
    assert table.split("\n")[1].split()[:3] == ["w1", "2", "Ready"]

    kubectl("wait", "-n", namespace, "widget/w1", "--for=condition=Ready", "--timeout=30s")
    kubectl("wait", "-n", namespace, "widget/w1", "--for=jsonpath={.status.phase}=Ready", "--timeout=30s")


def test_namespace_deletion_completes_and_owned_objects_are_collected(kubectl, control_plane) -> None:
    ns = f"cp-gc-{int(time.time() * 1000) % 100000}"
    kubectl("create", "namespace", ns)
    kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=a=b")
    uid = kubectl("get", "configmap", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    owned = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "owned", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]},
    }
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(owned))
    kubectl("delete", "configmap", "owner", "-n", ns)
    # garbage collector removes the dependent
    kubectl("wait", "-n", ns, "configmap/owned", "--for=delete", "--timeout=60s")
    # namespace controller finishes deletion
    kubectl("delete", "namespace", ns, "--timeout=90s")
    gone = kubectl("get", "namespace", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_serviceaccount_tokens_are_minted_and_rbac_is_enforced(kubectl, namespace, control_plane, tmp_path) -> None:
    if control_plane.control_plane is None:
        pytest.skip("needs the locally started control plane (its CA) to write a token kubeconfig")
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    kubectl("create", "rolebinding", "cm-reader", "-n", namespace, "--role=cm-reader",
            f"--serviceaccount={namespace}:reader")
    token = kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    kc = control_plane.control_plane.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig")
    as_reader = [str(control_plane.kubectl_path), "--kubeconfig", str(kc)]
    allowed = subprocess.run([*as_reader, "get", "configmaps", "-n", namespace], capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    denied = subprocess.run([*as_reader, "get", "secrets", "-n", namespace], capture_output=True, text=True)
    assert denied.returncode != 0 and "forbidden" in denied.stderr


def test_apiserver_restart_keeps_data_in_etcd(kubectl, namespace, control_plane) -> None:
    if control_plane.control_plane is None:
        pytest.skip("restarting needs the locally started control plane")
    kubectl("create", "configmap", "survivor", "-n", namespace, "--from-literal=k=v")
    control_plane.control_plane.restart_apiserver()
    assert kubectl("get", "configmap", "survivor", "-n", namespace, "-o", "jsonpath={.data.k}").stdout == "v"


def test_a_port_taken_before_the_api_server_binds_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found free, then bound by another process before the API server starts (CI saw it on a
    node test): the control plane starts on another port instead of failing."""
    import socket

    from agent_operator.testing import processes
    from agent_operator.testing.controlplane import ControlPlane

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = processes.free_port
        calls: list[int] = []

        def free_port(host: str = "127.0.0.1") -> int:
            calls.append(0)
            return taken if len(calls) == 3 else real(host)  # etcd, etcd peer, then the API server

        monkeypatch.setattr(processes, "free_port", free_port)
        said: list[str] = []
        cp = ControlPlane(log=said.append).start()
        try:
            assert cp.apiserver_port != taken
            assert any(f"port {taken} was taken" in line for line in said), said
            ready = subprocess.run([str(cp.assets.kubectl), "--kubeconfig", str(cp.kubeconfig), "get", "--raw", "/readyz"],
                                   capture_output=True, text=True, check=True)
            assert ready.stdout.strip() == "ok"
        finally:
            cp.stop()
