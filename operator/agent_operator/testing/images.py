"""Local container images for the node: an OCI archive writer and the pause image.

No image registry is reachable from the node, so every image a pod runs is built here and
imported into the node's containerd (``Node.import_image``).  The pod sandbox image
(``pause``) is a static C program compiled on first use and cached next to the Go binaries.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .assets import AssetsError, cache_root

#: Reference the node's containerd uses as sandbox image; imported, never pulled.
PAUSE_IMAGE = "localhost/agent-operator/pause:3.10-local"
PAUSE_SOURCE = Path(__file__).with_name("pause.c")


@dataclass(frozen=True)
class ImageFile:
    """One regular file of an image layer."""

    path: str  # absolute path inside the image
    data: bytes
    mode: int = 0o755


def _blob(out: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(files: list[ImageFile]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for item in files:
            info = tarfile.TarInfo(item.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(item.data), item.mode, 0
            layer.addfile(info, io.BytesIO(item.data))
    return raw.getvalue()


def write_oci_archive(path: Path, ref: str, files: list[ImageFile], entrypoint: list[str],
                      user: str = "65535:65535") -> Path:
    """Write a one-layer linux/amd64 OCI image archive named ``ref`` (``ctr images import`` reads it)."""
    layer = _layer(files)
    compressed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
        "history": [{"created_by": "agent_operator.testing.images"}],
    }, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w") as out:
        config_desc = _blob(out, config)
        layer_desc = _blob(out, compressed)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}],
        }, sort_keys=True).encode()
        manifest_desc = _blob(out, manifest)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
            }],
        }
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return path


def _build_cached(name: str, sources: list[Path], argv: list[str], *, cwd: Path | None = None,
                  env: dict[str, str] | None = None, hint: str = "") -> Path:
    """Run ``argv`` (its ``{out}`` replaced by a temporary path) unless ``name``'s binary for
    these ``sources`` is cached; the result is moved into the cache atomically."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    target = cache_root() / "node" / f"{name}-{digest.hexdigest()[:12]}"
    if os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-")
    os.close(fd)
    proc = subprocess.run([a.replace("{out}", tmp) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise AssetsError(f"building the node's {name} binary failed:\n{proc.stderr}\n{hint}")
    os.replace(tmp, target)
    return target


def _archive(binary: Path, ref: str, name: str) -> Path:
    archive = binary.with_name(binary.name + ".oci.tar")
    if not archive.exists():
        write_oci_archive(archive, ref, [ImageFile(f"/{name}", binary.read_bytes())], [f"/{name}"])
    return archive


def pause_binary() -> Path:
    """The static ``pause`` binary, compiled with the system C compiler on first use and cached."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise AssetsError("a C compiler (`cc`) with static libc is needed to build the node's pause "
                          "image; run `make node-prereqs` (installs gcc and libc6-dev)")
    return _build_cached("pause", [PAUSE_SOURCE], [cc, "-Os", "-static", "-o", "{out}", str(PAUSE_SOURCE)],
                         hint="run `make node-prereqs` (static libc comes with libc6-dev)")


def pause_archive() -> Path:
    """OCI archive of the pause image (``PAUSE_IMAGE``), cached next to its binary."""
    return _archive(pause_binary(), PAUSE_IMAGE, "pause")


#: The test workload image (``probe``, see probe/main.go); imported, never pulled.
PROBE_IMAGE = "localhost/agent-operator/probe:local"
PROBE_DIR = Path(__file__).with_name("probe")


def probe_binary() -> Path:
    """The static ``probe`` binary (Go standard library only), built on first use and cached."""
    go = shutil.which("go")
    if go is None:
        raise AssetsError("the Go toolchain (`go`) is needed to build the node's probe image")
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    return _build_cached("probe", [PROBE_DIR / "go.mod", PROBE_DIR / "main.go"],
                         [go, "build", "-trimpath", "-ldflags=-s -w", "-o", "{out}", "."], cwd=PROBE_DIR, env=env)


def probe_archive() -> Path:
    """OCI archive of the probe image (``PROBE_IMAGE``), cached next to its binary."""
    return _archive(probe_binary(), PROBE_IMAGE, "probe")
