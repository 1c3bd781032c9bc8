"""The operator's one Kubernetes API client: async, on aiohttp, one connection pool.

Every request the operator makes itself goes through :class:`KubeClient` (AgentTask
metadata and status patches, Events, Secrets, Leases, the CRD check); kopf keeps its own
watch connections.  Bodies are plain JSON (dicts in, dicts out): the controller builds and
reads them as such, and skipping model classes is what made the API calls cheap (bench).

Answers other than 2xx raise the typed errors of :mod:`agent_operator.controller.errors`.
The ``Authorization`` header comes from :class:`~agent_operator.controller.config.ClusterConfig`
and is refreshed off the event loop (a thread) every :data:`AUTH_REFRESH` seconds and after
a 401, so rotated service-account tokens and expiring exec-plugin credentials keep working.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from agent_operator import __version__
from agent_operator.controller import hooks
from agent_operator.controller.config import ClusterConfig
from agent_operator.controller.errors import ApiError, Unauthorized, Unreachable, error_for

#: the API server names a writer in ``metadata.managedFields`` (and audit logs) after the
#: part of its User-Agent before the first ``/``: ``agent-operator``, not ``Python`` (aiohttp's)
USER_AGENT = f"agent-operator/{__version__}"
#: seconds between credential refreshes (client-go re-reads the service-account token every minute)
AUTH_REFRESH = 60.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def to_json(body: Any) -> bytes:
    """``body`` as compact JSON.

    orjson, not the standard library: 2-3x faster both ways, and it decodes every object key
    it has seen once to the same string, where ``json`` makes new ones per document: the
    ~40 keys of each cached AgentTask were ~2 KB of every task in flight (bench, 10,000 in
    flight: 274 -> 254 MB RSS).  What orjson refuses to encode and ``json`` takes (an
    integer beyond 64 bits, a non-string key: an agent's outputs may hold either) goes
    through ``json``, as before."""
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(body, separators=(",", ":")).encode()


def from_json(raw: bytes) -> Any:
    """A JSON document (see :func:`to_json`).  An integer beyond 64 bits reads as a float:
    the API server keeps such a number of a custom resource as a float64 anyway."""
    return orjson.loads(raw)


class KubeClient:
    """Async JSON requests to one API server, with its credentials and one connection pool."""

    def __init__(self, config: ClusterConfig, *, pool_size: int = 32, timeout: float = 30.0) -> None:
        self.config = config
        self.pool_size = pool_size
        #: bound on one request: a frozen connection must not hang a write forever
        self.timeout = timeout
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._authorization: str | None = None
        self._auth_at = float("-inf")
        self._auth_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> aiohttp.ClientSession:
        """The session (created on first use: it belongs to the running event loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, ssl=self._ssl if self._ssl is not None else False)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=json.dumps, headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(10.0, self.timeout)))
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "KubeClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ credentials
    async def authorization(self, *, refresh: bool = False) -> str | None:
        """The current ``Authorization`` value, refreshed in a thread when due (file reads,
        exec plugins and token refreshes block)."""
        if not refresh and time.monotonic() - self._auth_at < AUTH_REFRESH:
            return self._authorization
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        seen = self._auth_at
        async with self._auth_lock:
            if self._auth_at == seen:  # nobody refreshed while we waited
                self._authorization = await asyncio.to_thread(self.config.authorization)
                self._auth_at = time.monotonic()
        return self._authorization

    # ------------------------------------------------------------------ requests
    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      params: Mapping[str, str] | None = None, timeout: float | None = None,
                      decode: bool = True) -> dict[str, Any]:
        """One request; the decoded JSON answer (``{}`` for an empty one, or when not ``decode``)
        or a typed :class:`ApiError`."""
        data = None if body is None else to_json(body)
        answer: dict[str, Any] = {}
        for attempt in range(2):
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            auth = await self.authorization(refresh=attempt > 0)
            if auth:
                headers["Authorization"] = auth
            try:
                answer = await self._send(method, path, data, headers, params, timeout, decode)
                return answer
            except Unauthorized as e:
                if attempt:
                    hooks.record_api_error(method, e.code)
                    raise
            except ApiError as e:
                hooks.record_api_error(method, e.code)
                raise
        return answer  # pragma: no cover - the loop returns or raises

    async def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str],
                    params: Mapping[str, str] | None, timeout: float | None, decode: bool) -> dict[str, Any]:
        session = self._open()
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout))
        if self.config.tls_server_name:
            kwargs["server_hostname"] = self.config.tls_server_name
        try:
            async with session.request(method, self.config.server + path, data=data, headers=headers,
                                       params=params, **kwargs) as response:
                raw = await response.read()
                code = response.status
                retry_after = response.headers.get("Retry-After")
        except asyncio.TimeoutError:
            raise Unreachable(f"{method} {path}: no answer within "
                              f"{timeout if timeout is not None else self.timeout}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}") from None
        if 200 <= code < 300:
            if not raw or not decode:
                return {}
            decoded = from_json(raw)
            if not isinstance(decoded, dict):
                raise ApiError(f"{method} {path}: expected a JSON object, got {type(decoded).__name__}", code=code)
            return decoded
        raise error_for(code, raw, retry_after)

    async def get(self, path: str, *, timeout: float | None = None) -> dict[str, Any]:
        """GET ``path``."""
        return await self.request("GET", path, timeout=timeout)

    async def create(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None,
                     decode: bool = True) -> dict[str, Any]:
        """POST ``body`` to the collection ``path`` (``decode=False``: the created object is not needed)."""
        return await self.request("POST", path, dict(body), timeout=timeout, decode=decode)

    async def replace(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """PUT ``body`` at ``path`` (optimistic: ``metadata.resourceVersion`` must match)."""
        return await self.request("PUT", path, dict(body), timeout=timeout)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) of the object at ``path``."""
        return await self.request("PATCH", path, dict(patch), content_type=MERGE_PATCH)

    async def json_patch(self, path: str, ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """JSON patch (RFC 6902) of the object at ``path``."""
        return await self.request("PATCH", path, [dict(op) for op in ops], content_type=JSON_PATCH)
