"""Find, build and cache the ``helm`` CLI the chart tests and docs/helm.md use.

Like the control-plane binaries (``assets.py``), helm is compiled from its Go module: the
wrapper module in ``helmbuild/`` pins one helm release and its go.sum, the binary is cached
under ``<cache>/helm/<key>/helm`` (a new pin or go.sum builds anew), a file lock keeps
parallel test sessions from building twice, and ``AGENT_OPERATOR_HELM`` brings your own.
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
from pathlib import Path
from typing import Callable, Iterator

from .assets import cache_root

#: The helm release the wrapper module pins (helm.sh/helm/v4).
HELM_VERSION = "v4.3.1"
HELM_PACKAGE = "helm.sh/helm/v4/cmd/helm"
HELMBUILD_DIR = Path(__file__).with_name("helmbuild")
#: Bring-your-own: the path of a helm binary (v3.14+ or v4) to use instead of building one.
HELM_ENV = "AGENT_OPERATOR_HELM"

Log = Callable[[str], None]


class HelmError(RuntimeError):
    """helm is neither provided, cached nor buildable; the message says what to do."""


def build_key() -> str:
    """Cache key: the pinned release plus a hash of the wrapper module."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go"):
        digest.update((HELMBUILD_DIR / name).read_bytes())
    return f"{HELM_VERSION}-{digest.hexdigest()[:12]}"


def cached_path() -> Path:
    """Where the helm of this pin is (or will be) cached."""
    return cache_root() / "helm" / build_key() / "helm"


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_helm(log: Log = print) -> Path:
    """Path of a usable helm: ``$AGENT_OPERATOR_HELM``, else the cache, else built from the module."""
    env = os.environ.get(HELM_ENV)
    if env:
        path = Path(env).expanduser()
        if not os.access(path, os.X_OK) or path.is_dir():
            raise HelmError(f"{HELM_ENV}={env} is not an executable file; point it at a helm binary "
                            "or unset it to build helm from its Go module")
        return path
    target = cached_path()
    if os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise HelmError(f"the Go toolchain (`go`) is needed to build helm {HELM_VERSION} from its module "
                        f"and was not found on PATH; install Go, or set {HELM_ENV} to a helm binary")
    with _build_lock(target.parent.parent):
        if os.access(target, os.X_OK):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        env_vars = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
        ldflags = f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
        log(f"building helm {HELM_VERSION} from its Go module into {target.parent} (a few minutes cold)")
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(staging / "helm"), HELM_PACKAGE],
                cwd=HELMBUILD_DIR, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                raise HelmError(f"`go build {HELM_PACKAGE}` failed (exit {proc.returncode}):\n"
                                f"{proc.stdout[-4000:]}\nfix Go / module proxy access, or set {HELM_ENV}")
            os.replace(staging / "helm", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"built helm in {time.monotonic() - started:.0f}s")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.helm [path]``: build (if needed) and print helm's path."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["path"]):
        print(f"unknown arguments {args!r}; use: path", file=sys.stderr)
        return 2
    try:
        print(ensure_helm(log=lambda m: print(m, file=sys.stderr)))
    except HelmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
