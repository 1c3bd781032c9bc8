"""Find, build and cache test-only Go tools (promtool, prometheus, Flux controllers).

The same pattern as :mod:`agent_operator.testing.assets`, for tools that are not part of the
control plane: each tool family has a wrapper module under ``testing/gobuild-<family>/`` that
pins one release; its binaries are compiled with ``go build`` and cached under
``~/.cache/agent-operator/<family>/<version>-<hash of the wrapper module>/`` (the root honours
``AGENT_OPERATOR_CACHE``), builds are serialised by a file lock so parallel test sessions do not
build twice, and a bring-your-own directory (``<FAMILY>_BIN_DIR``) skips the build.

``python -m agent_operator.testing.gotools build prometheus`` builds (or finds) a family and
prints where its binaries are; ``path`` only prints, failing when they are not there.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .assets import cache_root

Log = Callable[[str], None]
HERE = Path(__file__).resolve().parent


class GoToolError(RuntimeError):
    """A tool is neither provided, cached nor buildable; the message says what to do."""


@dataclass(frozen=True)
class GoToolFamily:
    """Binaries built from one wrapper module that pins one upstream release."""

    name: str  # cache sub-directory and CLI name
    version: str  # the upstream release the wrapper module pins
    module_dir: Path  # the wrapper module (go.mod, go.sum, tools.go)
    packages: dict[str, str]  # binary name -> Go main package
    env_var: str  # bring-your-own directory holding every binary of ``packages``
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ("-s", "-w")
    #: extra environment of ``go build`` (e.g. ``GOTOOLCHAIN`` when a release needs a newer Go)
    go_env: dict[str, str] = field(default_factory=dict)

    def build_key(self) -> str:
        """Cache key: the pinned version plus a hash of the wrapper module and build flags."""
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum", "tools.go"):
            digest.update((self.module_dir / name).read_bytes())
        digest.update(repr((self.tags, self.ldflags, sorted(self.go_env.items()))).encode())
        return f"{self.version}-{digest.hexdigest()[:12]}"

    def cache_dir(self) -> Path:
        """Directory the binaries of this pin are (or will be) cached in."""
        return cache_root() / self.name / self.build_key()


PROMETHEUS_VERSION = "v0.316.0"
FLUX_VERSION = "v1.9.0"

#: promtool and prometheus from github.com/prometheus/prometheus.  ``remove_all_sd`` drops every
#: service-discovery plugin (cloud SDKs, Kubernetes client): tests scrape static loopback targets.
PROMETHEUS = GoToolFamily(
    name="prometheus",
    version=PROMETHEUS_VERSION,
    module_dir=HERE / "gobuild-prometheus",
    packages={
        "promtool": "github.com/prometheus/prometheus/cmd/promtool",
        "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
    },
    env_var="PROMETHEUS_BIN_DIR",
    tags=("remove_all_sd",),
)

#: Flux's source-controller and kustomize-controller, same release for both.  v1.9.0 is the newest
#: release whose whole dependency graph the module proxy serves and that builds with Go 1.26
#: (v1.9.5/v1.9.6 need github.com/fluxcd/pkg/artifact v0.18.3, which it refuses; v1.10.x need Go 1.27).
FLUX = GoToolFamily(
    name="flux",
    version=FLUX_VERSION,
    module_dir=HERE / "gobuild-flux",
    packages={
        "source-controller": "github.com/fluxcd/source-controller",
        "kustomize-controller": "github.com/fluxcd/kustomize-controller",
    },
    env_var="FLUX_BIN_DIR",
)

FAMILIES: dict[str, GoToolFamily] = {f.name: f for f in (PROMETHEUS, FLUX)}


def _executable(directory: Path, names: list[str]) -> list[str]:
    return [n for n in names if not os.access(directory / n, os.X_OK)]


def find_tool(family: GoToolFamily, binary: str, *, build: bool = True, log: Log = print) -> Path:
    """Path of ``binary``: from ``$<env_var>``, else the cache, else built now (if ``build``)."""
    if binary not in family.packages:
        raise GoToolError(f"{family.name} has no binary {binary!r}; known: {', '.join(family.packages)}")
    env = os.environ.get(family.env_var)
    if env:
        directory = Path(env).expanduser().resolve()
        if _executable(directory, [binary]):
            raise GoToolError(
                f"{family.env_var}={directory} lacks an executable {binary}; point it at a directory "
                f"holding {', '.join(family.packages)} or unset it to build them from source")
        return directory / binary
    directory = family.cache_dir()
    if _executable(directory, [binary]):
        if not build:
            raise GoToolError(f"{binary} ({family.version}) is not cached in {directory}; "
                              f"run `python -m agent_operator.testing.gotools build {family.name}`")
        build_family(family, log=log)
    return directory / binary


def find_all(family: GoToolFamily, *, build: bool = True, log: Log = print) -> Path:
    """Directory holding every binary of ``family`` (BYO directory, cache, or built now)."""
    env = os.environ.get(family.env_var)
    if env:
        directory = Path(env).expanduser().resolve()
        missing = _executable(directory, list(family.packages))
        if missing:
            raise GoToolError(
                f"{family.env_var}={directory} lacks executable {', '.join(missing)}; point it at a "
                "directory holding them or unset it to build them from source")
        return directory
    directory = family.cache_dir()
    if _executable(directory, list(family.packages)):
        if not build:
            raise GoToolError(f"{family.name} {family.version} is not (fully) cached in {directory}; "
                              f"run `python -m agent_operator.testing.gotools build {family.name}`")
        build_family(family, log=log)
    return directory


@contextlib.contextmanager
def _build_lock(family: GoToolFamily) -> Iterator[None]:
    """Serialise builds of one family across processes (a separate lock from the control plane's)."""
    root = cache_root() / family.name
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_family(family: GoToolFamily, *, log: Log = print) -> Path:
    """Compile every missing binary of ``family`` into its cache directory; atomic per binary."""
    go = shutil.which("go")
    if go is None:
        raise GoToolError(
            f"the Go toolchain (`go`) is needed to build {', '.join(family.packages)} "
            f"({family.version}) from source and was not found on PATH; install Go, or set "
            f"{family.env_var} to a directory holding those binaries")
    target = family.cache_dir()
    with _build_lock(family):
        todo = _executable(target, list(family.packages))
        if not todo:
            return target
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target))
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false", **family.go_env)
        log(f"building {', '.join(todo)} ({family.name} {family.version}) into {target}")
        try:
            for name in todo:
                started = time.monotonic()
                cmd = [go, "build", "-trimpath", "-ldflags", " ".join(family.ldflags)]
                if family.tags:
                    cmd += ["-tags", ",".join(family.tags)]
                cmd += ["-o", str(staging / name), family.packages[name]]
                proc = subprocess.run(cmd, cwd=family.module_dir, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                if proc.returncode != 0:
                    raise GoToolError(
                        f"`go build {family.packages[name]}` failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-4000:]}\nfix the Go toolchain / module access, or set "
                        f"{family.env_var} to a directory holding prebuilt binaries")
                os.replace(staging / name, target / name)
                log(f"built {name} in {time.monotonic() - started:.0f}s")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.gotools (build|path) FAMILY [BINARY]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("build", "path") or args[1] not in FAMILIES:
        print(f"usage: gotools (build|path) ({'|'.join(FAMILIES)}) [binary]", file=sys.stderr)
        return 2
    family = FAMILIES[args[1]]
    stderr_log: Log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if len(args) > 2:
            print(find_tool(family, args[2], build=args[0] == "build", log=stderr_log))
        else:
            print(find_all(family, build=args[0] == "build", log=stderr_log))
    except GoToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
