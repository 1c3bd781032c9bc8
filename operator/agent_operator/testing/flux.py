"""Flux's source-controller and kustomize-controller as local processes against a control plane.

The binaries are built from their Go modules by :mod:`.gotools` (``FLUX`` family, one pinned
release for both) and their CRDs come from the same release's module (``config/crd/bases``).
Every port is on loopback: metrics, health, and source-controller's artifact server, which it
advertises to kustomize-controller as ``127.0.0.1:PORT``.

``python -m agent_operator.testing.flux --kubeconfig PATH [--state-dir DIR]`` installs the CRDs
and runs both controllers in the foreground until interrupted (``make gitops-demo`` uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from . import processes
from .gotools import FLUX, GoToolError, find_all

Log = Callable[[str], None]

#: the Go module of each controller (its zip carries config/crd/bases of the release)
CONTROLLER_MODULES = ("github.com/fluxcd/source-controller", "github.com/fluxcd/kustomize-controller")


class FluxError(RuntimeError):
    """A controller did not start or the CRDs could not be found; the message says why."""


def crd_files() -> list[Path]:
    """The CRD manifests of the pinned release: ``$FLUX_BIN_DIR/crds`` or the Go module cache."""
    byo = os.environ.get(FLUX.env_var)
    if byo:
        crds = sorted((Path(byo).expanduser() / "crds").glob("*.yaml"))
        if not crds:
            raise FluxError(f"{FLUX.env_var}={byo} has no crds/*.yaml; copy config/crd/bases/*.yaml of "
                            f"source-controller and kustomize-controller {FLUX.version} there")
        return crds
    go = shutil.which("go")
    if go is None:
        raise FluxError("the Go toolchain (`go`) is needed to fetch the Flux CRDs of the pinned release; "
                        f"install Go or set {FLUX.env_var} to a directory with the binaries and crds/")
    files: list[Path] = []
    for module in CONTROLLER_MODULES:
        proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{FLUX.version}"], cwd=FLUX.module_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                              env=dict(os.environ, GOFLAGS="-mod=mod", **FLUX.go_env))
        info = json.loads(proc.stdout) if proc.stdout.lstrip().startswith("{") else {}
        if proc.returncode != 0 or not info.get("Dir"):
            raise FluxError(f"`go mod download {module}@{FLUX.version}` failed: {info.get('Error') or proc.stdout}")
        files += sorted((Path(info["Dir"]) / "config" / "crd" / "bases").glob("*.yaml"))
    return files


class FluxControllers:
    """source-controller + kustomize-controller watching every namespace of one control plane."""

    def __init__(self, kubeconfig: str | Path, kubectl: str | Path, *, workdir: Path | None = None,
                 log: Log = print) -> None:
        self.kubeconfig = str(kubeconfig)
        self.kubectl = str(kubectl)
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="agent-operator-flux-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}
        self.storage_port = 0

    def install_crds(self) -> None:
        """Apply the release's CRDs and wait until they are served."""
        files = crd_files()
        args = [self.kubectl, "--kubeconfig", self.kubeconfig]
        for path in files:
            subprocess.run([*args, "apply", "--server-side", "--force-conflicts", "-f", str(path)], check=True,
                           stdout=subprocess.DEVNULL, timeout=120)
        subprocess.run([*args, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/gitrepositories.source.toolkit.fluxcd.io",
                        "crd/kustomizations.kustomize.toolkit.fluxcd.io"], check=True, stdout=subprocess.DEVNULL,
                       timeout=90)

    def _argv(self, name: str, binary: Path) -> list[str]:
        metrics, health = processes.free_port(), processes.free_port()
        self.health_ports[name] = health
        argv = [str(binary), f"--metrics-addr=127.0.0.1:{metrics}", f"--health-addr=127.0.0.1:{health}",
                "--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json"]
        if name == "source-controller":
            self.storage_port = processes.free_port()
            (self.workdir / "artifacts").mkdir(exist_ok=True)
            argv += [f"--storage-path={self.workdir / 'artifacts'}", f"--storage-addr=127.0.0.1:{self.storage_port}",
                     f"--storage-adv-addr=127.0.0.1:{self.storage_port}"]
        else:
            argv += ["--no-remote-bases=true"]
        return argv

    def start(self, timeout: float = 120.0) -> "FluxControllers":
        """Install the CRDs, start both controllers and wait for their readiness probes."""
        try:
            directory = find_all(FLUX, log=self._log)
        except GoToolError as exc:
            raise FluxError(str(exc)) from exc
        self.install_crds()
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, RUNTIME_NAMESPACE="flux-system")
        for name in FLUX.packages:
            self.procs[name] = processes.spawn(self._argv(name, directory / name), self.log_path(name), env=env,
                                               cwd=self.workdir)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            while not self._ready(name):
                if proc.poll() is not None:
                    raise FluxError(f"{name} exited with {proc.returncode}:\n{self.logs(name)[-3000:]}")
                if time.monotonic() > deadline:
                    raise FluxError(f"{name} not ready within {timeout}s:\n{self.logs(name)[-3000:]}")
                time.sleep(0.3)
        return self

    def _ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_ports[name]}/readyz", timeout=1.0) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_path(self, name: str) -> Path:
        """Log file of one controller."""
        return self.workdir / f"{name}.log"

    def logs(self, name: str) -> str:
        """The log of one controller so far."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop both controllers; remove the work directory if this object created it."""
        for proc in self.procs.values():
            processes.stop(proc)
        self.procs.clear()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "FluxControllers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run both controllers in the foreground against ``--kubeconfig`` until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m agent_operator.testing.flux")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--state-dir", type=Path, default=None, help="logs and artifacts (default: a temp dir)")
    args = parser.parse_args(argv)
    flux = FluxControllers(args.kubeconfig, args.kubectl, workdir=args.state_dir)
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        flux.start()
        print(f"flux {FLUX.version} running; logs in {flux.workdir}", flush=True)
        while not stop["now"] and all(p.poll() is None for p in flux.procs.values()):
            time.sleep(0.5)
    except FluxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        flux.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
