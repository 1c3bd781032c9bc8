"""A small asyncio Kubernetes client (aiohttp) for the load generator, observer and ceiling.

The benchmark must not measure a client library instead of the contenders, so the harness
and the ceiling talk to the API server with the thinnest client possible: one pooled
aiohttp session, JSON bodies, merge patches, and a watch that reconnects from its last
resourceVersion.  Only kubeconfigs with client certificates or a bearer token are read
(what the local control plane writes).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

GROUP = "flyteagents.dev"
VERSION = "v1alpha1"
PLURAL = "agenttasks"


class ApiError(RuntimeError):
    """A non-2xx answer; ``status`` is the HTTP code."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status


def tasks_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """URL path of the AgentTask collection (or one object / its subresource) in ``namespace``."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class Kube:
    """One aiohttp session against the API server named by a kubeconfig."""

    def __init__(self, kubeconfig: str | Path, *, limit: int = 100) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context = _named(config["contexts"], config["current-context"])["context"]
        cluster = _named(config["clusters"], context["cluster"])["cluster"]
        user = _named(config["users"], context["user"])["user"]
        self.server: str = cluster["server"].rstrip("/")
        self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.headers: dict[str, str] = {}
        if "client-certificate" in user:
            self.ssl.load_cert_chain(user["client-certificate"], user["client-key"])
        if "token" in user:
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session (created lazily inside the running loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=self.limit)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Kube":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json", timeout: float = 60.0) -> Any:
        """Send one request; returns the decoded JSON answer, raises ApiError on non-2xx."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(method, self.server + path, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(resp.status, text)
            return json.loads(text) if text else None

    async def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST an AgentTask."""
        result: dict[str, Any] = await self.request("POST", tasks_path(namespace), body)
        return result

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (what ``kubectl patch --type merge`` sends)."""
        result: dict[str, Any] = await self.request(
            "PATCH", path, body, content_type="application/merge-patch+json")
        return result

    async def list(self, namespace: str) -> dict[str, Any]:
        """LIST the AgentTasks of ``namespace``."""
        result: dict[str, Any] = await self.request("GET", tasks_path(namespace), timeout=300)
        return result

    async def text(self, path: str) -> str:
        """GET a non-JSON endpoint (``/metrics``)."""
        async with self.session.get(self.server + path, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(resp.status, text)
            return text

    async def watch(self, namespace: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events from ``resource_version`` on, reconnecting until cancelled.

        A 410 Gone (the version fell out of the watch cache) ends the iteration with an
        ``{"type": "RELIST"}`` event so the caller can list again.
        """
        rv = resource_version
        while True:
            url = (f"{self.server}{tasks_path(namespace)}?watch=1&allowWatchBookmarks=true"
                   f"&timeoutSeconds=1800&resourceVersion={rv}")
            try:
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                    if resp.status == 410:
                        yield {"type": "RELIST"}
                        return
                    if resp.status >= 300:
                        raise ApiError(resp.status, await resp.text())
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            if event.get("object", {}).get("code") == 410:
                                yield {"type": "RELIST"}
                                return
                            continue
                        rv = event["object"]["metadata"].get("resourceVersion", rv)
                        if event.get("type") != "BOOKMARK":
                            yield event
            except (aiohttp.ClientError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item["name"] == name:
            return item
    raise KeyError(f"kubeconfig has no entry named {name!r}")
