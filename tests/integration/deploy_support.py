"""Helpers of the deployment tests: render manifests/ with the project-built kubectl, pick
objects out of the rendered stream, re-home an overlay into a test namespace."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("cluster-wide", "single-namespace", "kind")
HOME_NAMESPACE = "flyte-agent-operator"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


def render(kubectl: Kubectl, path: Path | str) -> list[dict[str, Any]]:
    """``kubectl kustomize PATH`` parsed into objects."""
    out = kubectl("kustomize", str(path)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_overlay(kubectl: Kubectl, overlay: str, *, namespace: str | None = None,
                   name_suffix: str = "") -> list[dict[str, Any]]:
    """Render ``manifests/overlays/<overlay>``, optionally re-homed into ``namespace`` with a
    name suffix (so a test gets its own ServiceAccount and cluster-scoped RBAC objects)."""
    if namespace is None and not name_suffix:
        return render(kubectl, MANIFESTS / "overlays" / overlay)
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        target = MANIFESTS / "overlays" / overlay
        lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization",
                 f"resources: [{json.dumps(str(Path(_relpath(target, Path(tmp)))))}]"]
        if namespace:
            lines.append(f"namespace: {namespace}")
        if name_suffix:
            lines.append(f"nameSuffix: {json.dumps(name_suffix)}")
        (Path(tmp) / "kustomization.yaml").write_text("\n".join(lines) + "\n")
        return render(kubectl, tmp)


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


def pick(objs: Iterable[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    """The objects of the given kinds, in order."""
    return [o for o in objs if o.get("kind") in kinds]


def one(objs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of ``kind`` (and ``name``)."""
    found = [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def to_yaml(objs: Iterable[dict[str, Any]]) -> str:
    """A multi-document YAML stream for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(list(objs), sort_keys=False)


def mint_token(kubectl: Kubectl, namespace: str, service_account: str) -> str:
    """A bound token for the ServiceAccount (TokenRequest API, like a pod would get)."""
    return kubectl("-n", namespace, "create", "token", service_account, "--duration=2h").stdout.strip()


def ensure_kstatus() -> Path:
    """The tests/kstatus Go program, built once and cached like the control plane binaries
    (keyed by a hash of its sources, so an edit rebuilds)."""
    import fcntl
    import hashlib
    import os
    import shutil

    from agent_operator.testing.assets import cache_root

    src = ROOT / "tests" / "kstatus"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((src / name).read_bytes())
    target = cache_root() / "kstatus" / digest.hexdigest()[:12] / "kstatus"
    if os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to build tests/kstatus"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(target, os.X_OK):
            staging = target.with_suffix(".tmp")
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
            proc = subprocess.run([go, "build", "-trimpath", "-o", str(staging), "."], cwd=src, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"go build tests/kstatus failed:\n{proc.stdout}{proc.stderr}"
            os.replace(staging, target)
    return target
