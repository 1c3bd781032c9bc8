"""The API-server backend of the reconcile runner: metadata patches, status merge patches,
finalizer release and Events.

Every write's response is put back into the object cache, so the watch event that echoes
it is recognised (same resourceVersion) and costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Callable
from typing import Any

from agent_operator.controller import hooks
from agent_operator.controller.api import KubeApi
from agent_operator.controller.cache import Key, ObjectCache
from agent_operator.controller.errors import Conflict, Invalid, NotFound
from agent_operator.controller.events import EventRecorder
from agent_operator.core.model import EventRecord, MetadataChange
from agent_operator.crd import names
from agent_operator.crd.resource import AgentTask, AgentTaskCache
from agent_operator.crd.status import AgentTaskStatus

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 5


def merge_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_diff(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def contains_null(value: Any) -> bool:
    """Whether JSON ``value`` holds a null anywhere."""
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(contains_null(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_null(v) for v in value)
    return False


def status_write(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | list[dict[str, Any]] | None:
    """The patch turning stored status ``old`` into ``new``; None when they are equal.

    A JSON merge patch (only the difference) unless a changed value holds a JSON null (an
    output the agent returned as None): merge patch reads every null as "delete", so that
    write is a JSON patch replacing the status, which stores the null as it is.  The stored
    status then equals the computed one, so nothing is written again on the next pass."""
    patch = merge_diff(old, new)
    if not patch:
        return None
    changed = {k: v for k, v in new.items() if k in patch}
    if contains_null(changed):
        return [{"op": "add", "path": "/status", "value": dict(new)}]
    return patch


def retried(stored: AgentTaskStatus, status: AgentTaskStatus) -> bool:
    """Whether ``status`` starts a new attempt or counts one more transient failure than
    ``stored`` (a task's first status, attempt 1, is not a retry)."""
    new_attempt = stored.attempt is not None and status.attempt != stored.attempt
    return new_attempt or (status.transient_failures or 0) > (stored.transient_failures or 0)


class KubeBackend:
    """Applies the core's decisions to the API server.

    ``wake(key)`` asks for the object to be reconciled again at once (a status write raced
    with another writer's).
    """

    def __init__(self, api: KubeApi, cache: ObjectCache, tasks: AgentTaskCache, events: EventRecorder,
                 wake: Callable[[Key], None]) -> None:
        self.api = api
        self.cache = cache
        self.tasks = tasks
        self.events = events
        self.wake = wake

    async def patch_metadata(self, view: AgentTask, change: MetadataChange) -> AgentTask:
        """Finalizer and create-pending marker in one merge patch, guarded by resourceVersion."""
        body = self.cache.get((view.namespace, view.name)) or {}
        for _ in range(CONFLICT_RETRIES):
            meta = body.get("metadata") or {}
            finalizers = list(meta.get("finalizers") or [])
            patch: dict[str, Any] = {"resourceVersion": meta.get("resourceVersion")}
            if change.add_finalizer and names.FINALIZER not in finalizers:
                patch["finalizers"] = [*finalizers, names.FINALIZER]
            if change.create_pending is not None:
                patch["annotations"] = {names.ANNOTATION_CREATE_PENDING: str(change.create_pending)}
            if not meta.get("resourceVersion"):
                patch.pop("resourceVersion")
            try:
                body = await self.api.patch_task(view.namespace, view.name, {"metadata": patch})
                self.cache.remember(body)
                return self.tasks.load(body)
            except Conflict:
                body = await self.api.get_task(view.namespace, view.name)
                self.cache.remember(body)
        raise Conflict(f"{view.key}: metadata patch kept conflicting")

    async def write_status(self, view: AgentTask, status: AgentTaskStatus) -> AgentTask:
        """Patch the status subresource with the difference to what is stored (see :func:`status_write`)."""
        wanted = status.to_dict()
        patch = status_write(view.status.to_dict(), wanted)
        if patch is None:
            return view
        body = await self.api.patch_status(view.namespace, view.name, patch)
        self.cache.remember(body)
        stored = self.tasks.load(body, written=(wanted, status))
        if stored.status != status:
            # another writer's status change landed between our read and this merge patch:
            # its watch event is older than this response and will be skipped as stale, so
            # decide again on what is stored now (found by the live fuzz: a forged reason
            # stuck next to our message)
            self.wake((view.namespace, view.name))
        agent = (status.agent.name if status.agent else None) or ""
        if status.phase != view.status.phase:
            hooks.record_transition(agent, str(status.phase))
        if retried(view.status, status):
            hooks.record_retry(agent, str(status.reason))
            # Events are per transition; each retry still deserves a line in the operator log
            log.info("%s: %s: %s", view.key, status.reason, status.message)
        return stored

    async def release(self, view: AgentTask) -> None:
        """Remove our finalizer with a test-and-remove JSON patch (other finalizers untouched)."""
        body = self.cache.get((view.namespace, view.name)) or {}
        for _ in range(CONFLICT_RETRIES):
            finalizers = list((body.get("metadata") or {}).get("finalizers") or [])
            if names.FINALIZER not in finalizers:
                return
            i = finalizers.index(names.FINALIZER)
            ops = [{"op": "test", "path": f"/metadata/finalizers/{i}", "value": names.FINALIZER},
                   {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
            try:
                body = await self.api.patch_task(view.namespace, view.name, ops)
                self.cache.remember(body)
                return
            except NotFound:
                return
            except (Conflict, Invalid):  # the test op failed: the finalizers moved
                body = await self.api.get_task(view.namespace, view.name)
        raise Conflict(f"{view.key}: finalizer removal kept conflicting")

    async def emit(self, view: AgentTask, event: EventRecord) -> None:
        """Record an Event (deduplicated; see :mod:`agent_operator.controller.events`)."""
        await self.events.record(view, event)

    async def store_outputs(self, view: AgentTask, ref: str, data: bytes) -> None:
        """Write large outputs where ``spec.outputPrefix`` points (local paths and fsspec URLs)."""
        await store_outputs(ref, data)


async def store_outputs(ref: str, data: bytes) -> None:
    """Write ``data`` to ``ref`` (a local path, ``file://`` URL, or any fsspec URL)."""
    import asyncio
    import os
    import urllib.parse

    def write() -> None:
        parts = urllib.parse.urlsplit(ref)
        if parts.scheme in ("", "file"):
            path = parts.path if parts.scheme == "file" else ref
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            return
        import fsspec  # optional: remote object stores

        with fsspec.open(ref, "wb") as f:
            f.write(data)

    try:
        await asyncio.to_thread(write)
    except Exception as e:  # noqa: BLE001 - the status still says where they should be
        log.warning("could not store outputs at %s: %s", ref, e)
