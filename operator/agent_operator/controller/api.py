"""The calls the controller makes, as methods: AgentTask metadata and status, Events, the
signing-key Secret, Secrets named by tasks, the CRD check.

All go through one :class:`~agent_operator.controller.client.KubeClient` (one connection
pool, typed errors).  Every object write is reported to the metrics hook
(``record_api_write``) so the write budget can be watched in production too.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from agent_operator.controller import hooks
from agent_operator.controller.client import KubeClient
from agent_operator.controller.errors import ApiError, Conflict, NotFound
from agent_operator.core.clock import format_time
from agent_operator.core.signing import new_key
from agent_operator.crd import names

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "agent-operator"}
SIGNING_KEY_FIELD = "key"


def object_path(prefix: str, namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
    """``prefix/namespaces/NS/plural[/name[/subresource]]`` with every segment escaped."""
    path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path


def task_path(namespace: str, name: str, subresource: str = "") -> str:
    """The URL path of one AgentTask (or its subresource)."""
    return object_path(f"/apis/{names.GROUP}/{names.VERSION}", namespace, names.PLURAL, name, subresource)


def event_body(involved: Mapping[str, Any], type_: str, reason: str, message: str,
               component: str = "agent-operator", *, now: float | None = None) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (an AgentTask body)."""
    meta = involved.get("metadata") or {}
    stamp = format_time(time.time() if now is None else now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'agenttask')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": names.API_VERSION, "kind": names.KIND, "name": meta.get("name"),
            "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": f"{names.GROUP}/{component}",
        "reportingInstance": component,
    }


def decode_secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's data, decoded (binary values as latin-1 so nothing is lost)."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        raw = base64.b64decode(value)
        try:
            out[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            out[key] = raw.decode("latin-1")
    return out


class KubeApi:
    """The controller's API calls over one :class:`KubeClient`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    # ------------------------------------------------------------------ AgentTasks
    async def get_task(self, namespace: str, name: str) -> dict[str, Any]:
        """The AgentTask as stored."""
        return await self.client.get(task_path(namespace, name))

    async def patch_task(self, namespace: str, name: str, patch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Merge patch (a dict) or JSON patch (a list) of the object's metadata."""
        hooks.record_api_write("patch", names.PLURAL)
        if isinstance(patch, Mapping):
            return await self.client.merge_patch(task_path(namespace, name), patch)
        return await self.client.json_patch(task_path(namespace, name), patch)

    async def patch_status(self, namespace: str, name: str,
                           status_patch: Mapping[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        """Merge patch (a dict: the status fields) or JSON patch (a list of operations on the
        object) of the status subresource."""
        hooks.record_api_write("patch", f"{names.PLURAL}/status")
        path = task_path(namespace, name, "status")
        if isinstance(status_patch, list):
            return await self.client.json_patch(path, status_patch)
        return await self.client.merge_patch(path, {"status": dict(status_patch)})

    async def crd_served(self, group: str = names.GROUP, version: str = names.VERSION,
                         plural: str = names.PLURAL) -> bool:
        """Whether the API server serves ``plural`` (by default AgentTasks: the CRD is installed
        and established)."""
        try:
            listing = await self.client.get(f"/apis/{quote(group, safe='')}/{quote(version, safe='')}")
        except NotFound:
            return False
        return any(isinstance(r, dict) and r.get("name") == plural for r in listing.get("resources") or ())

    # ------------------------------------------------------------------ Events
    async def create_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about ``involved``; failures are logged, not raised."""
        body = event_body(involved, type_, reason, message)
        hooks.record_api_write("create", "events")
        try:
            await self.client.create(object_path("/api/v1", str(body["metadata"]["namespace"]), "events"), body,
                                     decode=False)
        except ApiError as e:
            # e.g. the namespace is terminating: an Event must never block the task
            meta = involved.get("metadata") or {}
            log.debug("event %s for %s/%s not recorded: %s", reason, meta.get("namespace"), meta.get("name"), e)

    # ------------------------------------------------------------------ Secrets
    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded."""
        return decode_secret_data(await self.client.get(object_path("/api/v1", namespace, "secrets", name)))

    async def ensure_signing_key(self, namespace: str, name: str) -> bytes:
        """The resourceMeta signing key from Secret ``namespace/name``, created when missing."""
        for _ in range(3):
            try:
                secret = await self.client.get(object_path("/api/v1", namespace, "secrets", name))
                value = (secret.get("data") or {}).get(SIGNING_KEY_FIELD)
                if not value:
                    raise ApiError(f"Secret {namespace}/{name} has no data.{SIGNING_KEY_FIELD}")
                return base64.b64decode(value)
            except NotFound:
                pass
            body = {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "data": {SIGNING_KEY_FIELD: base64.b64encode(new_key()).decode()},
            }
            try:
                await self.client.create(object_path("/api/v1", namespace, "secrets"), body)
                log.info("created signing-key Secret %s/%s", namespace, name)
            except Conflict:  # created concurrently by another replica: read it
                pass
        raise ApiError(f"could not read or create signing-key Secret {namespace}/{name}")
