"""The API-server backend of the reconcile runner: metadata patches, status merge patches,
finalizer release and deduplicated Events for one controller.

Every write's response is put back into the controller's cache, so the watch event that
echoes it is recognised (same resourceVersion) and costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent_operator.controller import hooks
from agent_operator.controller.api import ApiError
from agent_operator.core.model import EventRecord, MetadataChange
from agent_operator.crd import names
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.status import AgentTaskStatus

if TYPE_CHECKING:
    from agent_operator.controller.operator import Controller

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


class KubeBackend:
    """Applies one controller's decisions to the API server."""

    def __init__(self, controller: "Controller") -> None:
        self.controller = controller
        self.api = controller.api

    async def patch_metadata(self, view: AgentTask, change: MetadataChange) -> AgentTask:
        """Finalizer and create-pending marker in one merge patch, guarded by resourceVersion."""
        body = self.controller.cache.get((view.namespace, view.name)) or {}
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
                self.controller.remember(body)
                return self.controller.tasks.load(body)
            except ApiError as e:
                if e.status != 409:
                    raise
                body = await self.api.get_task(view.namespace, view.name)
                self.controller.remember(body)
        raise ApiError(409, f"{view.key}: metadata patch kept conflicting")

    async def write_status(self, view: AgentTask, status: AgentTaskStatus) -> AgentTask:
        """Merge-patch the status subresource with the difference to what is stored."""
        wanted = status.to_dict()
        patch = status_write(view.status.to_dict(), wanted)
        if patch is None:
            return view
        body = await self.api.patch_status(view.namespace, view.name, patch)
        self.controller.remember(body)
        stored = self.controller.tasks.load(body, written=(wanted, status))
        if stored.status != status:
            # another writer's status change landed between our read and this merge patch:
            # its watch event is older than this response and will be skipped as stale, so
            # decide again on what is stored now (found by the live fuzz: a forged reason
            # stuck next to our message)
            self.controller.scheduler.schedule((view.namespace, view.name), 0.0, earliest=True)
        agent = (status.agent.name if status.agent else None) or ""
        if status.phase != view.status.phase:
            hooks.record_transition(agent, str(status.phase))
        if status.attempt != view.status.attempt or (
                (status.transient_failures or 0) > (view.status.transient_failures or 0)):
            hooks.record_retry(agent, str(status.reason))
            # Events are per transition; each retry still deserves a line in the operator log
            log.info("%s: %s: %s", view.key, status.reason, status.message)
        return stored

    async def release(self, view: AgentTask) -> None:
        """Remove our finalizer with a test-and-remove JSON patch (other finalizers untouched)."""
        body = self.controller.cache.get((view.namespace, view.name)) or {}
        for _ in range(CONFLICT_RETRIES):
            finalizers = list((body.get("metadata") or {}).get("finalizers") or [])
            if names.FINALIZER not in finalizers:
                return
            i = finalizers.index(names.FINALIZER)
            ops = [{"op": "test", "path": f"/metadata/finalizers/{i}", "value": names.FINALIZER},
                   {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
            try:
                body = await self.api.patch_task(view.namespace, view.name, ops)
                self.controller.remember(body)
                return
            except ApiError as e:
                if e.status == 404:
                    return
                if e.status not in (409, 422):
                    raise
                body = await self.api.get_task(view.namespace, view.name)
        raise ApiError(409, f"{view.key}: finalizer removal kept conflicting")

    async def emit(self, view: AgentTask, event: EventRecord) -> None:
        """Post an Event unless it repeats the previous one for this object (or ``--events
        warnings`` leaves out a healthy intermediate transition; it is still logged)."""
        key = (view.namespace, view.name)
        if self.controller.last_event.get(key) == (event.reason, event.message):
            return
        self.controller.last_event[key] = (event.reason, event.message)
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "%s: %s: %s", view.key, event.reason, event.message)
        if self.controller.options.events == "warnings" and event.type != "Warning" and not event.final:
            return
        body = self.controller.cache.get(key) or {
            "metadata": {"namespace": view.namespace, "name": view.name, "uid": view.uid}}
        hooks.record_api_write("create", "events")
        await self.api.create_event(body, event.type, event.reason, event.message)

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
