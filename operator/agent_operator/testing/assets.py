"""Find, build and cache the control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl).

No prebuilt Kubernetes binaries can be downloaded on our machines, so the binaries are compiled
from their Go modules (the wrapper module in ``gobuild/`` pins one Kubernetes release and maps
every staging module to it) and cached outside the repository, keyed by the pinned versions and
a hash of the wrapper module, so a second run reuses them.  Users and CI may bring their own
binaries through ``KUBEBUILDER_ASSETS`` exactly like controller-runtime's envtest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: The Kubernetes release the wrapper module pins (k8s.io/kubernetes) and its staging modules.
KUBERNETES_VERSION = "v1.37.2"
#: The etcd server the wrapper module pins; the version k8s 1.37 is tested against.
ETCD_VERSION = "v3.7.0"

GOBUILD_DIR = Path(__file__).with_name("gobuild")

#: binary name -> Go main package in the wrapper module
GO_PACKAGES: dict[str, str] = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
}
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager")
#: what a local node adds: the kubelet and kube-proxy per node, one kube-scheduler per control plane
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")


class AssetsError(RuntimeError):
    """The binaries are neither provided, cached nor buildable; the message says what to do."""


@dataclass(frozen=True)
class Assets:
    """Absolute paths of the four binaries one control plane needs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    source: str  # "KUBEBUILDER_ASSETS", "cache" or "built"

    @property
    def directory(self) -> Path:
        """The directory holding the binaries (suitable as ``KUBEBUILDER_ASSETS``)."""
        return self.kube_apiserver.parent


def cache_root() -> Path:
    """Root of the binary cache: ``$AGENT_OPERATOR_CACHE`` or ``~/.cache/agent-operator``."""
    env = os.environ.get("AGENT_OPERATOR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "agent-operator"


def build_key() -> str:
    """Cache key: pinned versions plus a hash of the wrapper module, so a re-pin rebuilds."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go"):
        digest.update((GOBUILD_DIR / name).read_bytes())
    return f"{KUBERNETES_VERSION}-etcd{ETCD_VERSION}-{digest.hexdigest()[:12]}"


def cache_dir() -> Path:
    """Directory the binaries of this pin are (or will be) cached in."""
    return cache_root() / "k8s" / build_key()


def _complete(directory: Path, names: tuple[str, ...]) -> bool:
    return all(os.access(directory / n, os.X_OK) for n in names)


def _from_dir(directory: Path, source: str) -> Assets:
    kubectl = directory / "kubectl"
    if not os.access(kubectl, os.X_OK):
        # KUBEBUILDER_ASSETS directories from envtest carry no kubectl: use the cached/built one.
        kubectl = ensure_kubectl()
    return Assets(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
        kubectl=kubectl,
        source=source,
    )


def find_assets(build: bool = True, log=print) -> Assets:  # type: ignore[no-untyped-def]
    """Return usable binaries: ``KUBEBUILDER_ASSETS``, else the cache, else build them (if ``build``)."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        directory = Path(env).expanduser().resolve()
        missing = [n for n in REQUIRED if not os.access(directory / n, os.X_OK)]
        if missing:
            raise AssetsError(
                f"KUBEBUILDER_ASSETS={directory} lacks executable {', '.join(missing)}; "
                "point it at a directory holding etcd, kube-apiserver and kube-controller-manager, "
                "or unset it to build them from source"
            )
        return _from_dir(directory, "KUBEBUILDER_ASSETS")
    directory = cache_dir()
    if _complete(directory, tuple(GO_PACKAGES)):
        return _from_dir(directory, "cache")
    if not build:
        raise AssetsError(f"control-plane binaries are not cached in {directory}; run `make controlplane`")
    build_binaries(tuple(GO_PACKAGES), log=log)
    return _from_dir(directory, "built")


def ensure_kubectl(log=print) -> Path:  # type: ignore[no-untyped-def]
    """Path of the kubectl built from the pinned release (built on first use)."""
    directory = cache_dir()
    if not os.access(directory / "kubectl", os.X_OK):
        build_binaries(("kubectl",), log=log)
    return directory / "kubectl"


def node_binary(name: str, log=print) -> Path:  # type: ignore[no-untyped-def]
    """Path of ``kubelet``, ``kube-proxy`` or ``kube-scheduler``: from ``KUBEBUILDER_ASSETS`` when it
    holds one, else the cache (built from the same pinned module on first use)."""
    if name not in NODE_BINARIES:
        raise ValueError(f"name: {name!r} is not a node binary; expected one of {', '.join(NODE_BINARIES)}")
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env and os.access(Path(env).expanduser() / name, os.X_OK):
        return Path(env).expanduser().resolve() / name
    directory = cache_dir()
    if not os.access(directory / name, os.X_OK):
        build_binaries((name,), log=log)
    return directory / name


def _ldflags() -> str:
    """Version stamps so `kubectl version` reports a real server version instead of v0.0.0."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in stamps.items()]
    return " ".join(flags)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds across processes (parallel test sessions must not build twice)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_binaries(names: tuple[str, ...], log=print) -> Path:  # type: ignore[no-untyped-def]
    """Compile ``names`` from the wrapper module into the cache; atomic per binary."""
    go = shutil.which("go")
    if go is None:
        raise AssetsError(
            "the Go toolchain (`go`, >= 1.24) is needed to build kube-apiserver, "
            "kube-controller-manager, etcd and kubectl from source and was not found on PATH; "
            "install Go, or set KUBEBUILDER_ASSETS to a directory holding those binaries"
        )
    target = cache_dir()
    with _build_lock():
        todo = [n for n in names if not os.access(target / n, os.X_OK)]
        if not todo:
            return target
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target))
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
        log(f"building {', '.join(todo)} ({KUBERNETES_VERSION}, etcd {ETCD_VERSION}) into {target}; "
            "a cold build takes 10-30 minutes on 2 cores")
        started = time.monotonic()
        try:
            for name in todo:
                t0 = time.monotonic()
                cmd = [go, "build", "-trimpath", "-ldflags", _ldflags(), "-o", str(staging / name), GO_PACKAGES[name]]
                proc = subprocess.run(cmd, cwd=GOBUILD_DIR, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                if proc.returncode != 0:
                    raise AssetsError(
                        f"`go build {GO_PACKAGES[name]}` failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-4000:]}\n"
                        "fix the Go toolchain / module proxy access, or set KUBEBUILDER_ASSETS "
                        "to a directory holding prebuilt binaries"
                    )
                os.replace(staging / name, target / name)
                log(f"built {name} in {time.monotonic() - t0:.0f}s")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"control-plane build finished in {time.monotonic() - started:.0f}s")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.assets [build|path]``: build or locate the binaries."""
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "build"
    try:
        if cmd == "build":
            assets = find_assets(build=True)
            print(f"{assets.source}: {assets.directory}")
        elif cmd == "path":
            print(find_assets(build=False).directory)
        elif cmd == "kubectl":
            print(ensure_kubectl(log=lambda m: print(m, file=sys.stderr)))
        else:
            print(f"unknown command {cmd!r}; use build, path or kubectl", file=sys.stderr)
            return 2
    except AssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
