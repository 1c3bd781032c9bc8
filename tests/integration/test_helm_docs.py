"""Every command docs/helm.md shows, run in order as written, on a control plane of this module's
own (the page installs into `flyte-agent-operator` and ends by deleting the CRD, which the
session's shared control plane must keep)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doc_support import ROOT, bash_blocks, run_block

from agent_operator.testing.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

PAGE = ROOT / "docs" / "helm.md"
BLOCKS = bash_blocks(PAGE)
RENDER, INSTALL, NAMESPACES, UPGRADE, UNINSTALL, DELETE_CRD = range(6)


class Page:
    """Runs the page's blocks against one control plane with its kubectl on PATH."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def run(self, index: int) -> str:
        return run_block(BLOCKS[index], ROOT, env={"KUBECONFIG": str(self.cp.kubeconfig)},
                         path_dirs=(Path(self.cp.assets.kubectl).parent,))


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    cp = ControlPlane(log=lambda m: print(f"[helm-docs control-plane] {m}"))
    cp.start()
    try:
        yield Page(cp)
    finally:
        cp.stop()
        (ROOT / "rendered.yaml").unlink(missing_ok=True)


def kubectl_json(page: Page, *args: str) -> Any:
    proc = subprocess.run([str(page.cp.assets.kubectl), "--kubeconfig", str(page.cp.kubeconfig), *args, "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_page_shows_exactly_the_blocks_these_tests_run() -> None:
    assert len(BLOCKS) == 6, "a new command on docs/helm.md needs a check here"
    assert "lint --strict" in BLOCKS[RENDER] and " install " in BLOCKS[INSTALL]
    assert " upgrade " in BLOCKS[UPGRADE] and " uninstall " in BLOCKS[UNINSTALL]
    assert BLOCKS[DELETE_CRD].strip() == "kubectl delete crd agenttasks.flyteagents.dev"


def test_the_page_in_order(page: Page) -> None:
    # lint + template
    page.run(RENDER)
    rendered = [d for d in yaml.safe_load_all((ROOT / "rendered.yaml").read_text()) if d]
    assert {d["kind"] for d in rendered} >= {"CustomResourceDefinition", "Deployment", "ClusterRoleBinding"}

    # install: the namespace carries the same Pod Security labels as the kustomize base's Namespace
    page.run(INSTALL)
    base_ns = yaml.safe_load((ROOT / "manifests" / "base" / "namespace.yaml").read_text())
    ns = kubectl_json(page, "get", "namespace", "flyte-agent-operator")
    assert base_ns["metadata"]["labels"].items() <= ns["metadata"]["labels"].items()
    dep = kubectl_json(page, "-n", "flyte-agent-operator", "get", "deployment", "agent-operator")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/team/flyte-agent-operator:0.1.0"
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    kubectl_json(page, "get", "crd", "agenttasks.flyteagents.dev")
    for kind, name in (("clusterrole", "agent-operator-tasks"), ("clusterrolebinding", "agent-operator-task-secrets")):
        kubectl_json(page, "get", kind, name)

    # scope: only the listed namespaces
    lines = [line.strip() for line in page.run(NAMESPACES).splitlines()]
    assert lines.count("- --namespace=team-a") == 1 and lines.count("- --namespace=team-b") == 1
    assert lines.count("namespace: team-a") == 2 and lines.count("namespace: team-b") == 2  # two RoleBindings each

    # upgrade: CRD first, then new values on top of the installed ones
    page.run(UPGRADE)
    dep = kubectl_json(page, "-n", "flyte-agent-operator", "get", "deployment", "agent-operator")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/flyte-agent-operator:0.1.0")
    secrets = kubectl_json(page, "-n", "flyte-agent-operator", "get", "secrets", "-l", "owner=helm")["items"]
    assert sorted(s["metadata"]["labels"]["version"] for s in secrets) == ["1", "2"]

    # uninstall: every object of the release is gone, the CRD stays
    page.run(UNINSTALL)
    for kind, name in (("clusterrole", "agent-operator-tasks"), ("clusterrolebinding", "agent-operator-tasks")):
        assert kubectl_json(page, "get", kind, "--field-selector", f"metadata.name={name}")["items"] == []
    kubectl_json(page, "get", "crd", "agenttasks.flyteagents.dev")

    page.run(DELETE_CRD)
    assert kubectl_json(page, "get", "crd", "--field-selector", "metadata.name=agenttasks.flyteagents.dev")["items"] == []
