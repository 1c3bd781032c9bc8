"""The image's inputs, checked without building: the dependency locks pin what pyproject asks
for (with hashes), the local base is derived from the Dockerfile's own ``PYTHON_IMAGE``
default, the build context and cache key follow .dockerignore, bring-your-own archives are
validated, and the user/group the Dockerfile creates cannot collide with Debian's own."""

from __future__ import annotations

import io
import json
import re
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agent_operator.testing import image

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def parse_lock(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) of a ``--generate-hashes`` requirements file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)(\s*;[^-]*)?(.*)$", line)
        assert match, f"{path.name}: unpinned line {line!r}"
        out[str(canonicalize_name(match.group(1)))] = (match.group(2), len(re.findall(r"--hash=sha256:[0-9a-f]{64}",
                                                                                   match.group(4))))
    return out


def assert_lock_satisfies(lock: dict[str, tuple[str, int]], requirements: list[str], lock_name: str) -> None:
    for spec in requirements:
        req = Requirement(spec)
        name = str(canonicalize_name(req.name))
        assert name in lock, f"{lock_name} lacks {req.name} ({spec}); run `make image-lock`"
        version, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), \
            f"{lock_name} pins {req.name}=={version}, pyproject asks {spec}; run `make image-lock`"


@pytest.mark.parametrize("lock_name, extras", [("image.lock", ()), ("image-flytekit.lock", ("flytekit",))])
def test_lock_pins_every_dependency_of_pyproject_with_hashes(lock_name: str, extras: tuple[str, ...]) -> None:
    lock = parse_lock(ROOT / "requirements" / lock_name)
    wanted = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        wanted += PYPROJECT["project"]["optional-dependencies"][extra]
    # the build backend is locked too: the package itself is built with --no-index
    wanted += PYPROJECT["build-system"]["requires"]
    assert_lock_satisfies(lock, wanted, lock_name)
    assert all(hashes >= 1 for _, hashes in lock.values()), "every pin carries its hashes (--require-hashes)"


def test_lock_check_fails_on_a_version_pyproject_excludes() -> None:
    lock = {"kopf": ("1.30.0", 2)}
    with pytest.raises(AssertionError, match="kopf==1.30.0"):
        assert_lock_satisfies(lock, ["kopf>=1.38"], "image.lock")


def test_local_base_follows_the_dockerfile_python_image_default(tmp_path: Path) -> None:
    spec = image.base_spec()
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", image.DOCKERFILE.read_text(), re.M)
    assert arg and arg.group(1) == f"docker.io/library/python:{spec.python}-slim-{spec.suite}"
    assert f"python{spec.python}" in spec.packages and f"python{spec.python}-venv" in spec.packages
    assert spec.ref == f"localhost/agent-operator/python:{spec.python}-slim-{spec.suite}"
    other = tmp_path / "Dockerfile"
    other.write_text("ARG PYTHON_IMAGE=python:3.12-slim-trixie\nFROM ${PYTHON_IMAGE}\n")
    assert image.base_spec(other) == image.BaseSpec("3.12", "trixie")
    assert image.base_spec(other).key != spec.key
    other.write_text("FROM python:3.11\n")
    with pytest.raises(image.ImageError, match="ARG PYTHON_IMAGE"):
        image.base_spec(other)


def test_build_context_is_what_dockerignore_admits() -> None:
    files = {str(f.relative_to(ROOT)) for f in image.context_files()}
    assert {"pyproject.toml", "README.md", "LICENSE", "requirements/image.lock",
            "requirements/image-flytekit.lock"} <= files
    assert "operator/agent_operator/cli/main.py" in files
    assert not [f for f in files if "__pycache__" in f or ".egg-info" in f]
    assert not [f for f in files if f.startswith(("tests/", "manifests/", "charts/", "docs/"))]
    # every file the Dockerfile COPYs from the context is in it (else the build fails for users)
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", image.DOCKERFILE.read_text(), re.M)
    for source in " ".join(copied).split():
        assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in files), source


def test_image_ref_is_fully_qualified_and_rejects_bad_tags() -> None:
    assert image.image_ref("dev") == "docker.io/library/flyte-agent-operator:dev"
    for bad in ("", "a:b", "-x", "x" * 129, "v1/2"):
        with pytest.raises(image.ImageError, match="tag"):
            image.image_ref(bad)


def oci_archive(path: Path, refs: list[str]) -> Path:
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1,
         "annotations": {image.REF_ANNOTATION: r}} for r in refs]}
    raw = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return path


def test_bring_your_own_archive_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(image.ARCHIVE_ENV, str(tmp_path / "missing.tar"))
    with pytest.raises(image.ImageError, match=image.ARCHIVE_ENV):
        image.image_archive()
    good = oci_archive(tmp_path / "good.tar", ["registry.example/flyte-agent-operator:1.2.3"])
    monkeypatch.setenv(image.ARCHIVE_ENV, str(good))
    found = image.image_archive(tag="ignored")
    assert (found.path, found.ref, found.source) == (good, "registry.example/flyte-agent-operator:1.2.3",
                                                     image.ARCHIVE_ENV)
    two = oci_archive(tmp_path / "two.tar", ["a:1", "b:2"])
    monkeypatch.setenv(image.ARCHIVE_ENV, str(two))
    with pytest.raises(image.ImageError, match="2 references"):
        image.image_archive()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    monkeypatch.setenv(image.ARCHIVE_ENV, str(junk))
    with pytest.raises(image.ImageError, match="not an OCI archive"):
        image.image_archive()


def test_retag_changes_only_the_recorded_reference(tmp_path: Path) -> None:
    source = oci_archive(tmp_path / "a.tar", ["docker.io/library/flyte-agent-operator:dev"])
    target = image.retag(source, "docker.io/library/flyte-agent-operator:v2", tmp_path / "b.tar")
    assert image.archive_ref(target) == "docker.io/library/flyte-agent-operator:v2"
    assert image.archive_ref(source) == "docker.io/library/flyte-agent-operator:dev"


def test_ca_bundle_override_must_be_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(image.CA_BUNDLE_ENV, str(tmp_path / "nope.pem"))
    with pytest.raises(image.ImageError, match=image.CA_BUNDLE_ENV):
        image.ca_bundle()
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(image.CA_BUNDLE_ENV, str(pem))
    assert image.ca_bundle() == pem


def test_dockerfile_user_and_group_do_not_collide_with_debian_ones() -> None:
    """Debian's base-passwd ships an `operator` group (gid 37), in every Debian-based python image."""
    text = image.DOCKERFILE.read_text()
    group = re.search(r"groupadd .*--gid (\d+) (\S+)", text)
    user = re.search(r"useradd .*--uid (\d+) .*?(\S+)\s*$", re.sub(r"\\\n\s*", " ", text), re.M)
    assert group and user
    master = Path("/usr/share/base-passwd/group.master")
    assert master.is_file(), "this check reads Debian's base-passwd (Debian hosts have it)"
    debian_groups = {line.split(":")[0]: line.split(":")[2] for line in master.read_text().splitlines()}
    debian_users = {line.split(":")[0] for line in Path("/usr/share/base-passwd/passwd.master").read_text().splitlines()}
    assert "operator" in debian_groups, "the collision this test guards against is real"
    assert group.group(2) not in debian_groups and group.group(1) not in debian_groups.values()
    assert user.group(2) not in debian_users


def test_cache_key_follows_the_build_context_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to what the build sees builds anew; bytecode and files outside the context do not."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE",
                 "requirements/image.lock", "requirements/image-flytekit.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "operator" / "agent_operator").mkdir(parents=True)
    module = tmp_path / "operator" / "agent_operator" / "x.py"
    module.write_text("A = 1\n")
    monkeypatch.setattr(image, "ROOT", tmp_path)
    monkeypatch.setattr(image, "DOCKERFILE", tmp_path / "Dockerfile")
    monkeypatch.setattr(image, "DOCKERIGNORE", tmp_path / ".dockerignore")
    first = image.build_key()
    (tmp_path / "operator" / "agent_operator" / "__pycache__").mkdir()
    (tmp_path / "operator" / "agent_operator" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("pass\n")
    assert image.build_key() == first, "bytecode and files outside the context keep the archive"
    module.write_text("A = 2\n")
    assert image.build_key() != first, "a source change builds anew"
    module.write_text("A = 1\n")
    assert image.build_key() == first
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("python:3.11-slim-bookworm", "python:3.12-slim-trixie"))
    assert image.build_key() != first, "another base builds anew"


def test_prune_keeps_the_archives_of_the_most_recently_used_inputs(tmp_path: Path) -> None:
    import os

    for age, key in enumerate(["k0", "k1", "k2", "k3", "k4", "k5"]):
        for tag in ("dev", "v2"):
            archive = tmp_path / f"{image.IMAGE_NAME}-{key}-{tag}.oci.tar"
            archive.write_bytes(b"")
            os.utime(archive, (1_000_000 - age * 10, 1_000_000 - age * 10))
    image._prune(tmp_path)
    kept = sorted(p.name.split("-")[3] for p in tmp_path.iterdir() if p.name.endswith("-dev.oci.tar"))
    assert kept == ["k0", "k1", "k2", "k3"][:image.KEEP_KEYS]
    assert len(list(tmp_path.iterdir())) == 2 * image.KEEP_KEYS, "every tag of a kept input set stays"
