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
from agent_operator.core.model import EventRecord, MetadataChange, TaskView
from agent_operator.crd import names

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


def retried(stored: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether ``status`` starts a new attempt or counts one more transient failure than
    ``stored`` (a task's first status, attempt 1, is not a retry)."""
    new_attempt = stored.get("attempt") is not None and status.get("attempt") != stored.get("attempt")
    return new_attempt or (status.get("transientFailures") or 0) > (stored.get("transientFailures") or 0)


def stored_status_of(status: Mapping[str, Any]) -> dict[str, Any]:
    """The core's status as the JSON stored in the object: the only place the controller
    converts a status (typed status models plug in here)."""
    return dict(status)


def stored_status(view: TaskView) -> dict[str, Any]:
    """The status stored in ``view``'s object, as JSON."""
    return stored_status_of(view.status)


class KubeBackend:
    """Applies the core's decisions to the API server.

    ``wake(key)`` asks for the object to be reconciled again at once (a status write raced
    with another writer's).
    """

    def __init__(self, api: KubeApi, cache: ObjectCache, events: EventRecorder, wake: Callable[[Key], None]) -> None:
        self.api = api
        self.cache = cache
        self.events = events
        self.wake = wake

    async def patch_metadata(self, view: TaskView, change: MetadataChange) -> TaskView:
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
                return TaskView.from_body(body)
            except Conflict:
                body = await self.api.get_task(view.namespace, view.name)
                self.cache.remember(body)
        raise Conflict(f"{view.ref}: metadata patch kept conflicting")

    async def write_status(self, view: TaskView, new_status: Mapping[str, Any]) -> TaskView:
        """Merge-patch the status subresource with the difference to what is stored."""
        stored, status = stored_status(view), stored_status_of(new_status)
        patch = merge_diff(stored, status)
        if not patch:
            return view
        body = await self.api.patch_status(view.namespace, view.name, patch)
        self.cache.remember(body)
        if dict(body.get("status") or {}) != status:
            # another writer's status change landed between our read and this merge patch:
            # its watch event is older than this response and will be skipped as stale, so
            # decide again on what is stored now (found by the live fuzz: a forged reason
            # stuck next to our message)
            self.wake((view.namespace, view.name))
        agent = str((status.get("agent") or {}).get("name", ""))
        if status.get("phase") != stored.get("phase"):
            hooks.record_transition(agent, str(status.get("phase")))
        if retried(stored, status):
            hooks.record_retry(agent, str(status.get("reason")))
            # Events are per transition; each retry still deserves a line in the operator log
            log.info("%s: %s: %s", view.ref, status.get("reason"), status.get("message"))
        return TaskView.from_body(body)

    async def release(self, view: TaskView) -> None:
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
        raise Conflict(f"{view.ref}: finalizer removal kept conflicting")

    async def emit(self, view: TaskView, event: EventRecord) -> None:
        """Record an Event (deduplicated; see :mod:`agent_operator.controller.events`)."""
        await self.events.record(view, event)

    async def store_outputs(self, view: TaskView, ref: str, data: bytes) -> None:
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
