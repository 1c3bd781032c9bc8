"""Helpers of the Helm chart tests (test_helm_chart.py on the API server alone, test_helm_pods.py
on the local node): the real helm, built from its Go module, and the objects of a release."""

from __future__ import annotations

import json
import subprocess

from deploy_support import ROOT, Kubectl

from agent_operator.testing.helm import ensure_helm

CHART = ROOT / "charts" / "flyte-agent-operator"


def helm(*args: str, check: bool = True, kubeconfig: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [str(ensure_helm()), *args] + (["--kubeconfig", kubeconfig] if kubeconfig else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}"
    return proc


def objects_of_release(kubectl: Kubectl, release: str, namespace: str) -> set[tuple[str, str]]:
    selector = f"app.kubernetes.io/instance={release}"
    found: set[tuple[str, str]] = set()
    for kinds, scope in (("deployment,service,serviceaccount,role,rolebinding,poddisruptionbudget", ["-n", namespace]),
                         ("clusterrole,clusterrolebinding", [])):
        out = kubectl(*scope, "get", kinds, "-l", selector, "-o", "json").stdout
        found |= {(o["kind"], o["metadata"]["name"]) for o in json.loads(out)["items"]}
    return found
