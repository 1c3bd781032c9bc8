"""The only place that writes to the API server: AgentTask metadata and status, Events,
and the signing-key Secret.

The official ``kubernetes`` client is synchronous, so every call runs in a small thread
pool of its own (never the agents' pool).  Every object write is reported to the metrics
hook (``record_api_write``) so the write budget can be watched in production too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from agent_operator.controller import hooks
from agent_operator.core.clock import format_time
from agent_operator.core.signing import new_key
from agent_operator.crd import names

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "agent-operator"}
SIGNING_KEY_FIELD = "key"


class ApiError(Exception):
    """An API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def new_api_client(kubeconfig: str | None, pool_size: int = 32) -> Any:
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig`` (or in-cluster, or the default file)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeApi:
    """Async facade over the sync client for the handful of calls the controller makes.

    Requests go through the client's connection pool, authentication and TLS settings
    (``param_serialize``/``call_api``) but not its generated per-endpoint methods: those
    validate every argument with pydantic and deserialise answers into models, about 1 ms
    of CPU per call and a quarter of the operator's CPU in the bench profiles, for bodies
    the controller builds and reads as plain dicts anyway.
    """

    def __init__(self, api_client: Any, *, workers: int = 16, request_timeout: float = 30.0) -> None:
        self.api_client = api_client
        #: (connect, read) bound on every request: without it a frozen connection hangs a
        #: status write (and the task behind it) forever
        self.request_timeout = request_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        """One request in a worker thread: the decoded JSON answer, or ApiError."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api_client.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api_client.call_api(
            method, url, headers, body, post,
            _request_timeout=(min(10.0, self.request_timeout), self.request_timeout))
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiError(int(response.status), (data or b"").decode("utf-8", "replace")[:500] or str(response.reason))
        return json.loads(data) if data else {}

    async def _request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._call, method, path, body, content_type)
        except ApiError as e:
            error = e
        except ApiException as e:
            error = ApiError(int(e.status or 0), str(e.body or e.reason)[:500])
        except (OSError, Urllib3Error, ValueError) as e:
            error = ApiError(0, f"{type(e).__name__}: {e}")
        hooks.record_api_error(method, error.status)
        raise error from None

    @staticmethod
    def _path(prefix: str, namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
        """``prefix/namespaces/NS/plural[/name[/subresource]]`` with every segment escaped."""
        path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"
        if name:
            path += f"/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path

    @classmethod
    def _task_path(cls, namespace: str, name: str, subresource: str = "") -> str:
        return cls._path(f"/apis/{names.GROUP}/{names.VERSION}", namespace, names.PLURAL, name, subresource)

    # ------------------------------------------------------------------ AgentTasks
    async def get_task(self, namespace: str, name: str) -> dict[str, Any]:
        """The AgentTask as stored."""
        body: dict[str, Any] = await self._request("GET", self._task_path(namespace, name))
        return body

    async def patch_task(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        """Merge patch (a dict) or JSON patch (a list) of the object's metadata."""
        hooks.record_api_write("patch", names.PLURAL)
        ctype = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        body: dict[str, Any] = await self._request("PATCH", self._task_path(namespace, name), patch, ctype)
        return body

    async def patch_status(self, namespace: str, name: str, status_patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge patch of the status subresource."""
        hooks.record_api_write("patch", f"{names.PLURAL}/status")
        body: dict[str, Any] = await self._request("PATCH", self._task_path(namespace, name, "status"),
                                                   {"status": dict(status_patch)}, "application/merge-patch+json")
        return body

    async def crd_served(self) -> bool:
        """Whether the API server serves AgentTasks (the CRD is installed and established)."""
        try:
            group = await self._request("GET", f"/apis/{names.GROUP}/{names.VERSION}")
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return any(isinstance(r, dict) and r.get("name") == names.PLURAL for r in group.get("resources") or ())

    # ------------------------------------------------------------------ Events
    async def create_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str,
                           component: str = "agent-operator") -> None:
        """A core/v1 Event about ``involved`` (an AgentTask body); failures are logged, not raised."""
        meta = involved.get("metadata") or {}
        now = format_time(time.time())
        event = {
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
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": f"{names.GROUP}/{component}",
            "reportingInstance": component,
        }
        try:
            await self._request("POST", self._path("/api/v1", str(meta.get("namespace")), "events"),
                                event, "application/json")
        except ApiError as e:
            # e.g. the namespace is terminating: an Event must never block the task
            log.debug("event %s for %s/%s not recorded: %s", reason, meta.get("namespace"), meta.get("name"), e)

    # ------------------------------------------------------------------ Secrets
    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded (binary values as latin-1 so nothing is lost)."""
        secret = await self._request("GET", self._path("/api/v1", namespace, "secrets", name))
        out: dict[str, str] = {}
        for key, value in (secret.get("data") or {}).items():
            raw = base64.b64decode(value)
            try:
                out[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                out[key] = raw.decode("latin-1")
        return out

    async def ensure_signing_key(self, namespace: str, name: str) -> bytes:
        """The resourceMeta signing key from Secret ``namespace/name``, created when missing."""
        for _ in range(3):
            try:
                secret = await self._request("GET", self._path("/api/v1", namespace, "secrets", name))
                value = (secret.get("data") or {}).get(SIGNING_KEY_FIELD)
                if not value:
                    raise ApiError(0, f"Secret {namespace}/{name} has no data.{SIGNING_KEY_FIELD}")
                return base64.b64decode(value)
            except ApiError as e:
                if e.status != 404:
                    raise
            body = {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "data": {SIGNING_KEY_FIELD: base64.b64encode(new_key()).decode()},
            }
            try:
                await self._request("POST", self._path("/api/v1", namespace, "secrets"), body, "application/json")
                log.info("created signing-key Secret %s/%s", namespace, name)
            except ApiError as e:
                if e.status != 409:  # created concurrently by another replica: read it
                    raise
        raise ApiError(0, f"could not read or create signing-key Secret {namespace}/{name}")
