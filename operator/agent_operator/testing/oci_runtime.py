"""Run the image from its OCI archive with runc, no daemon: unpack with umoci, start with runc.

This is how the image tests exercise the container as a runtime would (the image's own
user, entrypoint and environment, a read-only root filesystem, every capability dropped),
without a node::

    with unpacked(archive.path, archive.ref, tmp) as bundle:
        proc = run_once(bundle, ["agent-operator", "version"])
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .image import DEPS_HINT, ImageError

#: the bundle's pristine runtime config (umoci's, from the image); config.json is per run
IMAGE_CONFIG = "image-config.json"


@dataclass(frozen=True)
class Bundle:
    """An OCI runtime bundle (``config.json`` + ``rootfs/``) unpacked from the image."""

    path: Path

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def image_config(self) -> dict[str, Any]:
        """The runtime config umoci derived from the image (user, entrypoint, env), as unpacked:
        each run writes its own ``config.json`` from this one."""
        data: dict[str, Any] = json.loads((self.path / IMAGE_CONFIG).read_text())
        return data


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into the container (read-only unless ``writable``)."""

    source: Path
    destination: str
    writable: bool = False


@dataclass(frozen=True)
class RunSpec:
    """How to run the container: what the Deployment's container spec sets, in runtime terms."""

    args: Sequence[str] | None = None  # None: the image's entrypoint and cmd
    env: Mapping[str, str] = field(default_factory=dict)
    read_only_root: bool = True
    host_network: bool = False  # share the host's network namespace (reach loopback servers)
    tmpfs: Sequence[str] = ("/tmp",)
    mounts: Sequence[Mount] = ()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageError(f"`{name}` is not installed; {DEPS_HINT}")
    return found


@contextlib.contextmanager
def unpacked(archive: Path, ref: str, workdir: Path) -> Iterator[Bundle]:
    """Unpack ``ref`` of an OCI archive into a runtime bundle under ``workdir`` (removed afterwards)."""
    layout = workdir / "layout"
    bundle = workdir / "bundle"
    layout.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="tar")
    proc = subprocess.run([_tool("umoci"), "unpack", "--image", f"{layout}:{ref}", str(bundle)],
                          capture_output=True, text=True)
    shutil.rmtree(layout, ignore_errors=True)
    if proc.returncode != 0:
        raise ImageError(f"umoci unpack {archive} ({ref}) failed: {proc.stderr[-3000:]}")
    shutil.copyfile(bundle / "config.json", bundle / IMAGE_CONFIG)
    try:
        yield Bundle(bundle)
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def write_config(bundle: Bundle, spec: RunSpec) -> None:
    """Turn the image's runtime config into the container ``spec`` asks for (restricted-PSS style)."""
    config = bundle.image_config()
    process = config["process"]
    if spec.args is not None:
        process["args"] = list(spec.args)
    process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in spec.env]
    process["env"] += [f"{k}={v}" for k, v in spec.env.items()]
    process["terminal"] = False
    process["noNewPrivileges"] = True  # allowPrivilegeEscalation: false
    process["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    config["root"] = {"path": "rootfs", "readonly": spec.read_only_root}
    mounts = [m for m in config["mounts"] if m["destination"] not in spec.tmpfs]
    mounts += [{"destination": d, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=64m"]} for d in spec.tmpfs]
    mounts += [{"destination": m.destination, "type": "bind", "source": str(m.source),
                "options": ["rbind", "rw" if m.writable else "ro"]} for m in spec.mounts]
    config["mounts"] = mounts
    if spec.host_network:
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    (bundle.path / "config.json").write_text(json.dumps(config))


class Container:
    """One ``runc run`` of a bundle, in the foreground of a child process."""

    def __init__(self, bundle: Bundle, spec: RunSpec, state_dir: Path, log_path: Path) -> None:
        self.bundle = bundle
        self.spec = spec
        self.state_dir = state_dir
        self.log_path = log_path
        self.id = f"agent-operator-test-{uuid.uuid4().hex[:10]}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _runc(self) -> list[str]:
        return [_tool("runc"), "--root", str(self.state_dir)]

    def start(self) -> Container:
        write_config(self.bundle, self.spec)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*self._runc(), "run", "--no-new-keyring", "--bundle",
                                          str(self.bundle.path), self.id],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float) -> int:
        assert self.proc is not None, "not started"
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (as the kubelet does), then SIGKILL after ``timeout``; always removes the container."""
        code = None
        if self.proc is not None:
            subprocess.run([*self._runc(), "kill", self.id, "TERM"], capture_output=True)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                subprocess.run([*self._runc(), "kill", self.id, "KILL"], capture_output=True)
                code = self.proc.wait(timeout=10)
        subprocess.run([*self._runc(), "delete", "--force", self.id], capture_output=True)
        return code

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_once(bundle: Bundle, spec: RunSpec, workdir: Path, timeout: float = 120.0) -> tuple[int, str]:
    """Run the container to completion; returns its exit code and output."""
    container = Container(bundle, spec, workdir / "runc-state", workdir / f"run-{uuid.uuid4().hex[:6]}.log")
    with container:
        code = container.wait(timeout)
    return code, container.logs()
