"""The operator's one API client against the real API server: every way it authenticates
(client certificates, bearer token, exec plugin, in-cluster service account with a rotated
token) and the typed errors it raises for the server's answers."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agent_operator.controller import config, errors
from agent_operator.controller.api import KubeApi, object_path
from agent_operator.controller.client import KubeClient
from agent_operator.controller.crd_wait import wait_for_crd

pytestmark = pytest.mark.cluster

REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def _cluster_of(kubeconfig: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(kubeconfig).read_text())
    current = next(c for c in data["contexts"] if c["name"] == data["current-context"])["context"]
    cluster: dict[str, Any] = next(c for c in data["clusters"] if c["name"] == current["cluster"])["cluster"]
    return cluster


def _ca_file(kubeconfig: str, tmp_path: Path) -> Path:
    cluster = _cluster_of(kubeconfig)
    if cluster.get("certificate-authority"):
        return Path(cluster["certificate-authority"])
    path = tmp_path / "ca.crt"
    path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return path


def _write_kubeconfig(path: Path, kubeconfig: str, tmp_path: Path, user: dict[str, Any]) -> str:
    cluster = {"server": _cluster_of(kubeconfig)["server"], "certificate-authority": str(_ca_file(kubeconfig, tmp_path))}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def _service_account(kubectl: Any, namespace: str, name: str, *verbs_on_configmaps: str) -> str:
    """A ServiceAccount (allowed ``verbs`` on ConfigMaps) and a fresh token for it."""
    kubectl("-n", namespace, "create", "serviceaccount", name)
    if verbs_on_configmaps:
        kubectl("-n", namespace, "create", "role", f"{name}-cm", f"--verb={','.join(verbs_on_configmaps)}",
                "--resource=configmaps")
        kubectl("-n", namespace, "create", "rolebinding", f"{name}-cm", f"--role={name}-cm",
                f"--serviceaccount={namespace}:{name}")
    return str(kubectl("-n", namespace, "create", "token", name).stdout.strip())


async def _whoami(client: KubeClient) -> str:
    review = await client.create("/apis/authentication.k8s.io/v1/selfsubjectreviews", REVIEW)
    return str(review["status"]["userInfo"]["username"])


def test_client_certificates_from_kubeconfig_and_typed_errors(kubeconfig: str, namespace: str) -> None:
    cm = object_path("/api/v1", namespace, "configmaps")

    async def scenario() -> None:
        async with KubeClient(config.load(kubeconfig)) as client:
            created = await client.create(cm, {"metadata": {"name": "one"}, "data": {"k": "v"}})
            with pytest.raises(errors.Conflict) as exists:
                await client.create(cm, {"metadata": {"name": "one"}})
            assert exists.value.reason == "AlreadyExists" and exists.value.code == 409
            with pytest.raises(errors.NotFound):
                await client.get(f"{cm}/missing")
            stale = dict(created, data={"k": "w"})
            await client.merge_patch(f"{cm}/one", {"data": {"k": "x"}})
            with pytest.raises(errors.Conflict):
                await client.replace(f"{cm}/one", stale)
            with pytest.raises(errors.Invalid) as invalid:
                await client.create(cm, {"metadata": {"name": "Not_A_Name"}})
            assert invalid.value.causes and invalid.value.causes[0]["field"] == "metadata.name"
            with pytest.raises(errors.Invalid):  # a JSON patch whose test op fails
                await client.json_patch(f"{cm}/one", [{"op": "test", "path": "/data/k", "value": "nope"}])
            stored = await client.get(f"{cm}/one")
            assert stored["data"] == {"k": "x"}
            # the API server names writers after their User-Agent: ours, not aiohttp's "Python"
            assert {m["manager"] for m in stored["metadata"]["managedFields"]} == {"agent-operator"}

    asyncio.run(scenario())


def test_bearer_token_from_kubeconfig_and_forbidden(kubeconfig: str, kubectl: Any, namespace: str,
                                                    tmp_path: Path) -> None:
    token = _service_account(kubectl, namespace, "reader", "get", "list")
    kc = _write_kubeconfig(tmp_path / "token.kubeconfig", kubeconfig, tmp_path, {"token": token})

    async def scenario() -> None:
        async with KubeClient(config.load(kc)) as client:
            assert await _whoami(client) == f"system:serviceaccount:{namespace}:reader"
            await client.get(object_path("/api/v1", namespace, "configmaps"))
            with pytest.raises(errors.Forbidden) as denied:
                await client.get(object_path("/api/v1", namespace, "secrets"))
            assert denied.value.reason == "Forbidden" and "secrets" in denied.value.message

    asyncio.run(scenario())


def test_exec_credential_plugin_from_kubeconfig(kubeconfig: str, kubectl: Any, namespace: str, tmp_path: Path) -> None:
    token = _service_account(kubectl, namespace, "plugged")
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
                      f"'kind': 'ExecCredential', 'status': {{'token': {token!r}}}}}))\n")
    kc = _write_kubeconfig(tmp_path / "exec.kubeconfig", kubeconfig, tmp_path, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)],
        "interactiveMode": "Never"}})

    async def scenario() -> None:
        async with KubeClient(config.load(kc)) as client:
            assert await _whoami(client) == f"system:serviceaccount:{namespace}:plugged"

    asyncio.run(scenario())


def test_in_cluster_service_account_and_rotated_token(kubeconfig: str, kubectl: Any, namespace: str,
                                                      tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(_service_account(kubectl, namespace, "robot"))
    (account / "ca.crt").write_bytes(_ca_file(kubeconfig, tmp_path).read_bytes())
    (account / "namespace").write_text(namespace)
    server = urlsplit(_cluster_of(kubeconfig)["server"])
    env = {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port)}
    with pytest.raises(config.ConfigError, match="KUBERNETES_SERVICE_HOST"):
        config.in_cluster(str(account), {})
    with pytest.raises(config.ConfigError, match="token does not exist"):
        config.in_cluster(str(tmp_path), env)
    cluster = config.load(None, service_account_dir=str(account), environ=env)
    assert cluster.namespace == namespace and cluster.source.startswith("in-cluster")

    async def scenario() -> None:
        async with KubeClient(cluster) as client:
            assert await _whoami(client) == f"system:serviceaccount:{namespace}:robot"
            # the account is re-created: its old token is refused (401) until the kubelet's
            # rotation writes a new one, which the client reads after that 401
            kubectl("-n", namespace, "delete", "serviceaccount", "robot")
            kubectl("-n", namespace, "create", "serviceaccount", "robot")
            await _refused(client)
            (account / "token").write_text(str(kubectl("-n", namespace, "create", "token", "robot").stdout.strip()))
            assert await _whoami(client) == f"system:serviceaccount:{namespace}:robot"

    asyncio.run(scenario())


async def _refused(client: KubeClient, attempts: int = 120) -> None:
    """Wait until the API server refuses the client's token (it caches authentications ~10 s)."""
    for _ in range(attempts):
        try:
            await _whoami(client)
        except errors.Unauthorized as e:
            assert e.code == 401
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the deleted account's token was never refused")


def test_unreachable_server_is_a_typed_error(tmp_path: Path) -> None:
    cluster = config.ClusterConfig(server="http://127.0.0.1:9")  # discard port: nothing listens

    async def scenario() -> None:
        async with KubeClient(cluster, timeout=5.0) as client:
            with pytest.raises(errors.Unreachable):
                await client.get("/version")

    asyncio.run(scenario())


def test_wait_for_crd_returns_once_the_crd_is_established(kubeconfig: str, kubectl: Any) -> None:
    group = f"w{uuid.uuid4().hex[:8]}.example.dev"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}

    async def scenario() -> None:
        async with KubeClient(config.load(kubeconfig)) as client:
            api = KubeApi(client)
            waiting = asyncio.ensure_future(wait_for_crd(lambda: api.crd_served(group, "v1", "widgets"), poll=0.2))
            for _ in range(10):  # a few polls happen while the CRD does not exist
                await asyncio.sleep(0.1)
                assert not waiting.done()
            await asyncio.to_thread(kubectl, "apply", "-f", "-", input=json.dumps(crd))
            assert await asyncio.wait_for(waiting, 60) is True
            stop = asyncio.Event()
            stop.set()
            assert await wait_for_crd(lambda: api.crd_served(group, "v2", "widgets"), stop, poll=0.1) is False

    try:
        asyncio.run(scenario())
    finally:
        kubectl("delete", "crd", f"widgets.{group}", "--ignore-not-found", "--wait=false")
