"""Every command docs/image.md shows, run as written: `make image` (cached after the first
build), the CA-bundle variant, the push to a registry (a real registry, Debian's
docker-registry with TLS, on loopback standing in for yours) and where to set the image (a kustomize
overlay of your own, Helm values)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from doc_support import ROOT, bash_blocks, replace_line, run_block

from agent_operator.testing import processes
from agent_operator.testing.assets import ensure_kubectl
from agent_operator.testing.certs import generate_pki
from agent_operator.testing.image import ImageArchive, image_archive

PAGE = ROOT / "docs" / "image.md"
BLOCKS = bash_blocks(PAGE)
MAKE_IMAGE, CA_BUNDLE, PUSH, KUSTOMIZE, HELM = range(5)


def test_page_shows_exactly_the_blocks_these_tests_run() -> None:
    assert len(BLOCKS) == 5, "a new command on docs/image.md needs a test here"
    assert BLOCKS[MAKE_IMAGE].strip() == "make image"
    assert "AGENT_OPERATOR_CA_BUNDLE=" in BLOCKS[CA_BUNDLE]
    assert "skopeo copy" in BLOCKS[PUSH] and "images:" in BLOCKS[KUSTOMIZE] and "image.repository" in BLOCKS[HELM]


@pytest.fixture(scope="module")
def built() -> ImageArchive:
    return image_archive(log=lambda m: print(f"[image] {m}"))


def test_make_image_and_the_ca_bundle_variant(built: ImageArchive) -> None:
    for block in (BLOCKS[MAKE_IMAGE], BLOCKS[CA_BUNDLE]):
        out = run_block(block, ROOT)
        assert out.startswith(f"cache: {built.path} {built.ref} "), out


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:<port>
    ca: Path  # the CA its TLS certificate chains to

    def get(self, path: str) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"https://{self.host}{path}", timeout=5, context=context) as resp:
            return json.load(resp)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real OCI registry (Debian's docker-registry) serving TLS on loopback, like yours would."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed; run `make image-deps`"
    pki = generate_pki(tmp_path / "pki")  # its serving certificate names 127.0.0.1
    port = processes.free_port()
    config = tmp_path / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}",
                 "tls": {"certificate": str(pki.serving_cert), "key": str(pki.serving_key)}}}))
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = Registry(f"127.0.0.1:{port}", pki.ca_cert)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                found.get("/v2/")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.2)
        yield found
    finally:
        processes.stop(proc)


def test_push_to_a_registry_keeps_the_tested_digest(built: ImageArchive, registry: Registry) -> None:
    block = replace_line(BLOCKS[PUSH], "REGISTRY=", f"REGISTRY={registry.host}/team")
    # skopeo trusts the registry's CA as it would your registry's (Go reads SSL_CERT_FILE)
    out = run_block(block, ROOT, env={"SSL_CERT_FILE": str(registry.ca)})
    with tarfile.open(built.path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        (manifest,) = json.load(member)["manifests"]
    assert out.strip().splitlines()[-1] == manifest["digest"], out
    assert registry.get("/v2/team/flyte-agent-operator/tags/list")["tags"] == ["0.1.0"]


def test_kustomize_overlay_sets_the_image(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    out = run_block(BLOCKS[KUSTOMIZE], tmp_path, path_dirs=(ensure_kubectl().parent,))
    assert out.split() == ["image:", "registry.example.com/team/flyte-agent-operator:0.1.0"], out


def test_helm_values_set_the_image() -> None:
    out = run_block(BLOCKS[HELM], ROOT)
    assert out.split() == ["image:", '"registry.example.com/team/flyte-agent-operator:0.1.0"'], out
