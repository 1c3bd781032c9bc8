"""The operator image as users get it: built from the Dockerfile with buildah (`make image`),
unpacked from its OCI archive with umoci and run by runc the way the Deployment runs it: the
image's own non-root user and entrypoint, a read-only root filesystem with /tmp as the only
writable place, no capabilities, in-cluster credentials; against the real API server."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_support import RBAC_KINDS, Kubectl, mint_token, one, pick, render_overlay, to_yaml

from agent_operator.testing import processes
from agent_operator.testing.image import ImageArchive, image_archive, image_ref
from agent_operator.testing.oci_runtime import Bundle, Container, Mount, RunSpec, run_once, unpacked

ROOT = Path(__file__).resolve().parents[2]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def built() -> ImageArchive:
    """The image archive `make image` builds (cached after the first build)."""
    return image_archive(log=lambda m: print(f"[image] {m}"))


@pytest.fixture(scope="module")
def bundle(built: ImageArchive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    with unpacked(built.path, built.ref, tmp_path_factory.mktemp("image")) as unpacked_bundle:
        yield unpacked_bundle


def test_make_image_reuses_the_cached_archive_and_a_new_tag_is_a_retag(built: ImageArchive) -> None:
    proc = subprocess.run(["make", "-s", "image"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"cache: {built.path} {built.ref} "), proc.stdout
    assert built.ref == image_ref("dev") == "docker.io/library/flyte-agent-operator:dev"
    tag = f"t{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(["make", "-s", "image", f"IMAGE_TAG={tag}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    other = image_archive(tag=tag)
    assert proc.stdout.startswith(f"retagged: {other.path} {other.ref} "), proc.stdout
    try:
        assert other.ref != built.ref and other.path != built.path
        with tarfile.open(built.path) as a, tarfile.open(other.path) as b:
            blobs_a = {m.name: m.size for m in a if m.name.startswith("blobs/")}
            blobs_b = {m.name: m.size for m in b if m.name.startswith("blobs/")}
        assert blobs_a == blobs_b and blobs_a, "a new tag is the same image: same blobs"
    finally:
        other.path.unlink(missing_ok=True)


def test_image_config_runs_agent_operator_as_the_deployments_non_root_user(bundle: Bundle) -> None:
    config = bundle.image_config()
    assert config["process"]["user"]["uid"] == 10001 and config["process"]["user"]["gid"] == 10001
    assert config["process"]["args"] == ["agent-operator", "run"]
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_entrypoint_works_on_a_read_only_root_filesystem(bundle: Bundle, tmp_path: Path) -> None:
    code, out = run_once(bundle, RunSpec(args=["agent-operator", "version"]), tmp_path)
    assert code == 0 and out.startswith("flyte-agent-operator 0.1.0"), out
    code, out = run_once(bundle, RunSpec(args=["agent-operator", "run", "--help"]), tmp_path)
    assert code == 0 and "--leader-elect" in out, out
    probe = ("import os, sys\n"
             "print('uid', os.getuid(), os.getgid())\n"
             "print(sys.version.split()[0])\n"
             "open('/tmp/ok', 'w').write('x')\n"
             "try:\n    open('/opt/venv/new', 'w')\nexcept OSError as e:\n    print('write /opt/venv', e.errno)\n")
    code, out = run_once(bundle, RunSpec(args=["python", "-c", probe]), tmp_path)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "uid 10001 10001" and lines[1].startswith("3.11.")
    # EROFS, not EACCES: the root filesystem itself is read-only, not merely not ours
    assert lines[2] == f"write /opt/venv {errno.EROFS}", out


def test_final_image_has_no_compilers_no_sources_and_no_build_secret(bundle: Bundle) -> None:
    root = bundle.rootfs
    names = {p.name for p in root.rglob("*") if p.is_file() or p.is_symlink()}
    compilers = {"gcc", "cc", "c++", "g++", "cc1", "clang", "x86_64-linux-gnu-gcc-12", "as", "ld"}
    assert not names & compilers, names & compilers
    assert not (root / "src").exists(), "the build stage's source tree stays in the build stage"
    site = list((root / "opt" / "venv" / "lib").glob("python3.*/site-packages"))[0]
    assert not list(site.glob("setuptools*")) and not list(site.glob("wheel*")), "build backend removed"
    assert list(site.glob("kopf-*.dist-info")) and list(site.glob("flyte_agent_operator-*.dist-info"))
    # the CA bundle handed to pip as a build secret is nowhere in the image
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    assert host_bundle.is_file()
    size, digest = host_bundle.stat().st_size, hashlib.sha256(host_bundle.read_bytes()).hexdigest()
    same = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size == size
            and hashlib.sha256(p.read_bytes()).hexdigest() == digest]
    assert same == [], f"host CA bundle baked into the image: {same}"
    assert not (root / "run" / "secrets").exists() or not any((root / "run" / "secrets").iterdir())


# ---------------------------------------------------------------- the container against the API server
def incluster_files(kubectl: Kubectl, kubeconfig: str, namespace: str, service_account: str,
                    directory: Path) -> tuple[str, str]:
    """A ServiceAccount token, CA and namespace laid out as the kubelet projects them; returns
    the API server's host and port (KUBERNETES_SERVICE_HOST/PORT)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = (base64.b64decode(cluster["certificate-authority-data"]) if "certificate-authority-data" in cluster
          else Path(cluster["certificate-authority"]).read_bytes())
    directory.mkdir(parents=True)
    (directory / "token").write_text(mint_token(kubectl, namespace, service_account))
    (directory / "ca.crt").write_bytes(ca)
    (directory / "namespace").write_text(namespace)
    for f in directory.iterdir():
        f.chmod(0o644)  # the container's user (10001) reads them, as with a projected volume
    hostport = cluster["server"].removeprefix("https://")
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), port


def webhook_task(name: str, url: str) -> dict[str, Any]:
    task: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "webhook-get.yaml").read_text())
    task["metadata"]["name"] = name
    task["spec"]["taskTemplate"]["custom"]["url"] = url
    return task


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.cluster
def test_image_runs_the_deployments_container_and_drives_an_agenttask(
        bundle: Bundle, kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/agenttasks.flyteagents.dev", "--timeout=60s")
    suffix = f"-{uuid.uuid4().hex[:6]}"
    objs = render_overlay(kubectl, "single-namespace", namespace=namespace, name_suffix=suffix)
    rbac = pick(objs, *RBAC_KINDS)
    kubectl("apply", "--server-side", "-f", "-", input=to_yaml(rbac))
    container_spec = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    health_port = processes.free_port()
    # what the kubelet does with the Deployment's args: expand $(POD_NAMESPACE); our port, since
    # this container shares the host's network to reach the API server on loopback
    args = [a.replace("$(POD_NAMESPACE)", namespace).replace("--health-port=8080", f"--health-port={health_port}")
            for a in container_spec["args"]]
    assert f"--health-port={health_port}" in args and f"--namespace={namespace}" in args
    host, port = incluster_files(kubectl, kubeconfig, namespace, f"agent-operator{suffix}", tmp_path / "sa")
    web_port = processes.free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "examples" / "webhook_server.py"),
                               "--port", str(web_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = RunSpec(args=[*bundle.image_config()["process"]["args"], *args], host_network=True,
                   env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                        "POD_NAMESPACE": namespace, "POD_NAME": "agent-operator-image-test"},
                   mounts=[Mount(tmp_path / "sa", SA_DIR)])
    container = Container(bundle, spec, tmp_path / "runc-state", tmp_path / "container.log")
    try:
        with container:
            deadline = time.monotonic() + 90
            while not http_ok(f"http://127.0.0.1:{health_port}/readyz"):
                assert container.proc and container.proc.poll() is None, container.logs()
                assert time.monotonic() < deadline, f"/readyz never answered:\n{container.logs()[-4000:]}"
                time.sleep(0.5)
            assert http_ok(f"http://127.0.0.1:{web_port}/healthz")
            kubectl("-n", namespace, "apply", "-f", "-",
                    input=json.dumps(webhook_task("from-image", f"http://127.0.0.1:{web_port}/status")))
            deadline = time.monotonic() + 90
            while True:
                out = kubectl("-n", namespace, "get", "agenttask", "from-image", "-o", "json").stdout
                status = json.loads(out).get("status") or {}
                if status.get("phase") in ("Succeeded", "Failed", "TimedOut", "Aborted"):
                    break
                assert time.monotonic() < deadline, f"no final phase: {status}\n{container.logs()[-4000:]}"
                time.sleep(0.5)
            assert status["phase"] == "Succeeded", f"{status}\n{container.logs()[-4000:]}"
            lease = json.loads(kubectl("-n", namespace, "get", "lease", "agent-operator", "-o", "json").stdout)
            assert lease["spec"]["holderIdentity"], "the container took the Lease with its in-cluster credentials"
        logs = [line for line in container.logs().splitlines() if line.strip()]
        parsed = [json.loads(line) for line in logs if line.startswith("{")]
        assert parsed and len(parsed) == len(logs), f"--log-format=json: every line is JSON\n{logs[:5]}"
        token = (tmp_path / "sa" / "token").read_text()
        assert token not in container.logs(), "the ServiceAccount token never appears in the logs"
    finally:
        processes.stop(server)
        for obj in rbac:
            if obj["kind"].startswith("Cluster"):
                kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", check=False)
