"""Build the operator image from the Dockerfile with buildah, without a daemon, into an OCI archive.

The Dockerfile stays the source of truth: it is built as it is for users, with buildah (chroot
isolation, vfs storage, its storage and run directories under our cache, not the host's), and
pushed into an OCI archive cached under ``<cache>/image/`` keyed by a hash of the Dockerfile and
its build context, so a second call reuses it and any change to those inputs builds anew.

The official Python base cannot be pulled here, so an equivalent base is made from Debian
packages (mmdebstrap of the suite and Python the Dockerfile's ``PYTHON_IMAGE`` default names)
and passed as ``--build-arg PYTHON_IMAGE``; users with a registry keep the official base.
pip inside the build trusts the host's CA bundle through a build secret (``ca-bundle``) that
is mounted for one RUN and never stored in a layer.

``image_archive()`` returns the archive and the reference recorded in it (node tests import it
into containerd); ``AGENT_OPERATOR_IMAGE_ARCHIVE`` brings an OCI archive built elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .assets import cache_root

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: the repository name the archive's image carries (``docker.io/library/<name>:<tag>``)
IMAGE_NAME = "flyte-agent-operator"
DEFAULT_TAG = "dev"
#: the local stand-in for the official base, passed as ``--build-arg PYTHON_IMAGE``
BASE_REPOSITORY = "localhost/agent-operator/python"
#: Debian packages of the local base: the official slim image's Python plus what the Dockerfile runs
BASE_EXTRA_PACKAGES = ("passwd", "ca-certificates", "netbase", "tzdata")
#: bump when the base recipe below changes in a way the package list does not show
BASE_RECIPE = "1"
BASE_KEY_LABEL = "dev.flyteagents.base-key"
#: Bring-your-own: an OCI archive of the image built elsewhere (docker buildx --output type=oci, ...)
ARCHIVE_ENV = "AGENT_OPERATOR_IMAGE_ARCHIVE"
#: Bring-your-own: the CA bundle pip inside the build must trust (default: the host's bundle)
CA_BUNDLE_ENV = "AGENT_OPERATOR_CA_BUNDLE"
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
SOURCES_FILES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
DEPS_HINT = "run `make image-deps` (apt-get install buildah mmdebstrap umoci runc skopeo docker-registry)"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """The image cannot be built or found; the message says what to do."""


@dataclass(frozen=True)
class ImageArchive:
    """An OCI archive of the operator image and the reference recorded in its index."""

    path: Path
    ref: str  # e.g. docker.io/library/flyte-agent-operator:dev
    source: str  # "cache", "built", "retagged" or ARCHIVE_ENV


@dataclass(frozen=True)
class BaseSpec:
    """What the Dockerfile's default ``PYTHON_IMAGE`` stands for: a Python minor on a Debian suite."""

    python: str  # "3.11"
    suite: str  # "bookworm"

    @property
    def ref(self) -> str:
        return f"{BASE_REPOSITORY}:{self.python}-slim-{self.suite}"

    @property
    def packages(self) -> tuple[str, ...]:
        return (f"python{self.python}", f"python{self.python}-venv", "python-is-python3", *BASE_EXTRA_PACKAGES)

    @property
    def key(self) -> str:
        text = json.dumps([BASE_RECIPE, self.suite, self.packages])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_spec(dockerfile: Path | None = None) -> BaseSpec:
    """Read ``ARG PYTHON_IMAGE=...python:<X.Y>-slim-<suite>`` from the Dockerfile."""
    dockerfile = dockerfile or DOCKERFILE
    match = re.search(r"^ARG PYTHON_IMAGE=\S*python:(\d+\.\d+)-slim-([a-z]+)\s*$", dockerfile.read_text(), re.M)
    if match is None:
        raise ImageError(f"{dockerfile}: no `ARG PYTHON_IMAGE=...python:<X.Y>-slim-<debian suite>` line; "
                         "the local base is derived from that default")
    return BaseSpec(python=match.group(1), suite=match.group(2))


def image_ref(tag: str = DEFAULT_TAG) -> str:
    """The fully qualified reference the archive records (what kubelet resolves ``flyte-agent-operator:<tag>`` to)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise ImageError(f"tag {tag!r} is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
    return f"docker.io/library/{IMAGE_NAME}:{tag}"


def context_files() -> list[Path]:
    """The files of the build context: what ``.dockerignore`` re-includes, minus bytecode and egg-info."""
    files: list[Path] = []
    for line in DOCKERIGNORE.read_text().splitlines():
        if not line.startswith("!"):
            continue
        path = ROOT / line[1:].rstrip("/")
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in candidates:
            parts = f.relative_to(ROOT).parts
            if f.is_file() and "__pycache__" not in parts and not any(p.endswith(".egg-info") for p in parts):
                files.append(f)
    return files


def build_key() -> str:
    """Hash of the Dockerfile, .dockerignore, the build context and the base recipe."""
    digest = hashlib.sha256(base_spec().key.encode())
    for f in [DOCKERFILE, DOCKERIGNORE, *context_files()]:
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_dir() -> Path:
    """``<cache>/image``: buildah's storage and run directories, and the archives."""
    return cache_root() / "image"


def archive_path(tag: str = DEFAULT_TAG, key: str | None = None) -> Path:
    """Where the archive of the current inputs and ``tag`` is (or will be) cached."""
    return image_dir() / "archives" / f"{IMAGE_NAME}-{key or build_key()}-{tag}.oci.tar"


def archive_ref(path: Path) -> str:
    """The reference recorded in an OCI archive's index (``org.opencontainers.image.ref.name``)."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("index.json")
            index = json.load(member) if member else {}
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as exc:
        raise ImageError(f"{path} is not an OCI archive (no readable index.json): {exc}") from exc
    refs = [m.get("annotations", {}).get(REF_ANNOTATION) for m in index.get("manifests", [])]
    refs = [r for r in refs if r]
    if len(refs) != 1:
        raise ImageError(f"{path}: index.json names {len(refs)} references ({REF_ANNOTATION}); expected one")
    return str(refs[0])


def retag(source: Path, ref: str, target: Path) -> Path:
    """Copy an OCI archive with another reference in its index (no rebuild; blobs unchanged)."""
    staging = target.with_name(target.name + ".tmp")
    with tarfile.open(source) as src, tarfile.open(staging, "w") as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                index = json.load(data)
                for manifest in index.get("manifests", []):
                    manifest.setdefault("annotations", {})[REF_ANNOTATION] = ref
                raw = json.dumps(index, separators=(",", ":")).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    os.replace(staging, target)
    return target


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    directory = image_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageError(f"`{name}` is not installed; {DEPS_HINT}")
    return found


def buildah_args() -> list[str]:
    """buildah with vfs storage and run directories of our own (the host's storage is never touched)."""
    return [_tool("buildah"), "--root", str(image_dir() / "buildah" / "storage"),
            "--runroot", str(image_dir() / "buildah" / "run"), "--storage-driver", "vfs"]


def _run(cmd: list[str], what: str, **kwargs: object) -> str:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ImageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:6])} ...\n{proc.stdout[-6000:]}")
    return str(proc.stdout)


def ca_bundle() -> Path | None:
    """The CA bundle handed to pip in the build: ``$AGENT_OPERATOR_CA_BUNDLE`` or the host's."""
    env = os.environ.get(CA_BUNDLE_ENV)
    if env:
        if not Path(env).is_file():
            raise ImageError(f"{CA_BUNDLE_ENV}={env} is not a file; point it at a PEM bundle or unset it")
        return Path(env)
    return next((Path(p) for p in HOST_CA_BUNDLES if Path(p).is_file()), None)


def _base_key_of_stored(spec: BaseSpec) -> str | None:
    proc = subprocess.run([*buildah_args(), "inspect", "--type", "image", spec.ref],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}
    return labels.get(BASE_KEY_LABEL)


def ensure_base(spec: BaseSpec, log: Log) -> None:
    """Make the local base (mmdebstrap of ``spec``) in buildah's storage unless it is there already."""
    if _base_key_of_stored(spec) == spec.key:
        return
    sources = next((s for s in SOURCES_FILES if Path(s).is_file()), None)
    if sources is None:
        raise ImageError(f"no apt sources ({' or '.join(SOURCES_FILES)}) to make the local base from")
    work = Path(tempfile.mkdtemp(prefix="base-", dir=image_dir()))
    try:
        t0 = time.monotonic()
        log(f"making the local base {spec.ref} from Debian {spec.suite} ({', '.join(spec.packages)})")
        version_file = work / "python-version"
        _run([_tool("mmdebstrap"), "--variant=minbase", f"--include={','.join(spec.packages)}",
              # as the official slim images: no manuals, docs (copyrights kept) or translations
              "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/locale/*",
              f"--customize-hook=chroot \"$1\" python --version > {version_file}",
              spec.suite, str(work / "base.tar"), sources], "mmdebstrap")
        version = version_file.read_text().strip()
        if not version.startswith(f"Python {spec.python}."):
            raise ImageError(f"Debian {spec.suite} gave {version!r}, but the Dockerfile's PYTHON_IMAGE "
                             f"default is Python {spec.python}; change the suite or the ARG default")
        buildah = buildah_args()
        ctr = _run([*buildah, "from", "scratch"], "buildah from scratch").strip().splitlines()[-1]
        try:
            _run([*buildah, "add", ctr, str(work / "base.tar"), "/"], "buildah add")
            _run([*buildah, "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "--env", "LANG=C.UTF-8", "--cmd", '["python3"]', "--label", f"{BASE_KEY_LABEL}={spec.key}",
                  ctr], "buildah config")
            _run([*buildah, "commit", "--quiet", "--rm", ctr, spec.ref], "buildah commit")
        except BaseException:
            subprocess.run([*buildah, "rm", ctr], capture_output=True)
            raise
        log(f"made the local base ({version}) in {time.monotonic() - t0:.0f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_archive(tag: str = DEFAULT_TAG, log: Log = print) -> ImageArchive:
    """Build the Dockerfile with buildah into the cached OCI archive for ``tag`` (no-op when cached)."""
    ref = image_ref(tag)
    with _lock():
        key = build_key()
        target = archive_path(tag, key)
        if target.is_file():
            os.utime(target)  # recently used: kept by _prune
            return ImageArchive(target, ref, "cache")
        target.parent.mkdir(parents=True, exist_ok=True)
        siblings = sorted(target.parent.glob(f"{IMAGE_NAME}-{key}-*.oci.tar"))
        if siblings:  # same inputs under another tag: a retag, not a build
            return ImageArchive(retag(siblings[0], ref, target), ref, "retagged")
        spec = base_spec()
        started = time.monotonic()
        ensure_base(spec, log)
        buildah = buildah_args()
        local = f"localhost/{IMAGE_NAME}:build-{key}"
        cmd = [*buildah, "build", "--isolation", "chroot", "--pull=never", "--layers=false",
               "--build-arg", f"PYTHON_IMAGE={spec.ref}", "--file", str(DOCKERFILE), "--tag", local]
        bundle = ca_bundle()
        if bundle is not None:
            cmd += ["--secret", f"id=ca-bundle,src={bundle}"]
        t0 = time.monotonic()
        log(f"building {DOCKERFILE.name} with buildah (chroot isolation, vfs) as {ref}")
        _run([*cmd, str(ROOT)], "buildah build", env=dict(os.environ, BUILDAH_ISOLATION="chroot"))
        log(f"built the image in {time.monotonic() - t0:.0f}s")
        staging = target.with_name(target.name + ".tmp")
        staging.unlink(missing_ok=True)
        try:
            _run([*buildah, "push", "--quiet", local, f"oci-archive:{staging}:{ref}"], "buildah push")
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
            # the archive is the cache: keep only the base in storage (vfs copies every layer whole)
            subprocess.run([*buildah, "rmi", local], capture_output=True)
            subprocess.run([*buildah, "rmi", "--prune"], capture_output=True)
        _prune(target.parent)
        log(f"image archive {target} ({target.stat().st_size / 1e6:.0f} MB) ready "
            f"in {time.monotonic() - started:.0f}s")
        return ImageArchive(target, ref, "built")


#: archives of this many input sets are kept (checkouts and branches sharing one cache don't
#: rebuild each other's), the least recently used go
KEEP_KEYS = 4


def _prune(directory: Path) -> None:
    archives = sorted(directory.glob(f"{IMAGE_NAME}-*.oci.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    keys: list[str] = []
    for archive in archives:
        key = archive.name.removeprefix(f"{IMAGE_NAME}-").split("-", 1)[0]
        if key not in keys:
            keys.append(key)
        if keys.index(key) >= KEEP_KEYS:
            archive.unlink(missing_ok=True)


def image_archive(tag: str = DEFAULT_TAG, log: Log = print) -> ImageArchive:
    """The operator image as an OCI archive: ``$AGENT_OPERATOR_IMAGE_ARCHIVE``, else cached, else built.

    With the env var set, ``tag`` is ignored and the reference is the one the archive records.
    """
    env = os.environ.get(ARCHIVE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ImageError(f"{ARCHIVE_ENV}={env} is not a file; point it at an OCI archive of the image "
                             "(e.g. docker buildx build --output type=oci,dest=...) or unset it to build one")
        return ImageArchive(path, archive_ref(path), ARCHIVE_ENV)
    return build_archive(tag, log)


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.image [build [TAG] | path [TAG]]``."""
    args = sys.argv[1:] if argv is None else argv
    cmd, tag = (args + ["build"])[0], (args[1:] + [DEFAULT_TAG])[0]
    try:
        if cmd == "build":
            started = time.monotonic()
            found = image_archive(tag, log=lambda m: print(m, file=sys.stderr))
            print(f"{found.source}: {found.path} {found.ref} ({time.monotonic() - started:.1f}s)")
        elif cmd == "path":
            path = archive_path(tag)
            if not path.is_file():
                print(f"error: no archive for the current inputs ({path}); run `make image`", file=sys.stderr)
                return 1
            print(path)
        else:
            print(f"unknown command {cmd!r}; use build [TAG] or path [TAG]", file=sys.stderr)
            return 2
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
