"""Kubernetes Events about AgentTasks: deduplicated, and by default one per healthy task.

``kubectl describe agenttask`` shows the status conditions (phase, reason, message and
when each changed) and the Events.  The conditions already tell every transition of a
healthy task, so by default (``warnings``) the recorder posts Warnings (failures, retries,
rejected writes) and the final transition only, plus the rare notes a healthy task never gets (a create
resumed after a restart, an orphaned job): one Event per healthy task, which is what the
write budget allows and what ``kubectl get events`` readers scan for.  ``all`` posts every
phase or reason transition.  Every transition is logged either way.

Posting happens in the background, the way client-go's event broadcaster does it: Events
wait in one bounded FIFO and a single poster sends them one after another, so an Event never
holds a task's scheduler slot (bench profile: the Event post was 7% of the operator's CPU,
all of it inside a reconcile).  While the controller has a backlog (more tasks due than it
may drive at once: many tasks applied together) the poster holds Events back for up to
:data:`MAX_DEFER` seconds, so the API server spends its CPU on the tasks' status first, the
record of truth, and their Events follow once the backlog is gone (1,000 tasks at once: the
Event posts took 12-25% of the burst's throughput when they ran beside the status writes).
When the queue is full (a sustained overload, or an API server that does not answer) new
Events are dropped and counted (``agent_operator_events_dropped_total``), as client-go drops
them: every transition is still in the status conditions and in the operator log.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Protocol

from agent_operator.controller import hooks
from agent_operator.controller.cache import Key, ObjectCache
from agent_operator.core.model import EventRecord
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.phases import Reason

log = logging.getLogger(__name__)

#: the ``--events`` choices; the first is the default
EVENT_MODES = ("warnings", "all")
#: Normal Events posted in every mode: they tell what the conditions cannot
NOTEWORTHY = frozenset({str(Reason.CREATE_RESUMED), str(Reason.ORPHANED)})
#: Events waiting to be posted at most (a tuple of strings the task and its status already
#: hold, about 150 bytes each); newer ones are dropped
QUEUE_LIMIT = 50_000
#: how long an Event is held back at most while the controller has a backlog (seconds): long
#: enough for a 10,000-task burst to finish first, short enough that a sustained overload
#: still sees its Events within a minute
MAX_DEFER = 60.0
#: how often a held-back poster looks at the backlog again (seconds)
DEFER_STEP = 0.1


#: a queued Event: (when queued, namespace, name, uid, resourceVersion, type, reason, message)
_Queued = tuple[float, str, str, str, str, str, str, str]


def _no_backlog() -> bool:
    return False


class EventSink(Protocol):
    """Where Events are posted (the API)."""

    async def create_event(self, involved: dict[str, object], type_: str, reason: str, message: str) -> None:
        """Post one Event about ``involved`` (never raises for API errors)."""


class EventRecorder:
    """Posts an object's Events in the background, skipping repeats of its previous one."""

    def __init__(self, sink: EventSink, cache: ObjectCache, mode: str = EVENT_MODES[0], *,
                 backlog: Callable[[], bool] = _no_backlog, queue_limit: int = QUEUE_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in EVENT_MODES:
            raise ValueError(f"events mode {mode!r}: expected one of {', '.join(EVENT_MODES)}")
        self.sink = sink
        self.cache = cache
        self.mode = mode
        self.queue_limit = queue_limit
        self._backlog = backlog
        self._clock = clock
        self._last: dict[Key, tuple[str, str]] = {}
        self._queue: collections.deque[_Queued] = collections.deque()
        self._poster: asyncio.Task[None] | None = None
        self._dropping = False

    def forget(self, key: Key) -> None:
        """The object is gone: drop what was remembered about it."""
        self._last.pop(key, None)

    def wanted(self, event: EventRecord) -> bool:
        """Whether ``event`` is posted in this mode (it is logged regardless)."""
        return self.mode == "all" or event.type == "Warning" or event.final or event.reason in NOTEWORTHY

    async def record(self, view: AgentTask, event: EventRecord) -> None:
        """Log ``event`` and queue it for posting unless it repeats the object's previous one."""
        key = (view.namespace, view.name)
        if self._last.get(key) == (event.reason, event.message):
            return
        self._last[key] = (event.reason, event.message)
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "%s: %s: %s", view.key, event.reason, event.message)
        if not self.wanted(event):
            return
        if len(self._queue) >= self.queue_limit:
            hooks.record_event_dropped()
            if not self._dropping:
                self._dropping = True
                log.warning("%d Events are waiting to be posted: dropping new ones until the API server "
                            "takes them (the status conditions and this log keep every transition)",
                            len(self._queue))
            return
        version = ((self.cache.get(key) or {}).get("metadata") or {}).get("resourceVersion")  # the newest known
        self._queue.append((self._clock(), view.namespace, view.name, view.uid, str(version or ""),
                            event.type, event.reason, event.message))
        if self._poster is None or self._poster.done():
            self._poster = asyncio.get_running_loop().create_task(self._post_all())

    async def _post_all(self) -> None:
        """Post the queued Events one at a time until the queue is empty; while the controller
        has a backlog, hold each back until it is :data:`MAX_DEFER` seconds old."""
        while self._queue:
            queued, namespace, name, uid, version, type_, reason, message = self._queue[0]
            if self._backlog() and self._clock() - queued < MAX_DEFER:
                await asyncio.sleep(DEFER_STEP)
                continue
            involved: dict[str, object] = {"metadata": {
                "namespace": namespace, "name": name, "uid": uid, "resourceVersion": version or None}}
            try:
                await self.sink.create_event(involved, type_, reason, message)
            except Exception:  # noqa: BLE001 - the sink logs API errors; nothing may stop the poster
                log.debug("event %s not posted", reason, exc_info=True)
            finally:
                self._queue.popleft()
        self._dropping = False

    @property
    def pending(self) -> int:
        """Events queued or being posted now."""
        return len(self._queue)

    async def drain(self, timeout: float | None = None) -> None:
        """Post the queued Events now, backlog or not (up to ``timeout`` s; the rest are dropped)."""
        poster = self._poster
        if poster is None or poster.done():
            return
        self._backlog = _no_backlog  # stopping: nothing is held back any more
        try:
            await asyncio.wait_for(asyncio.shield(poster), timeout)
        except TimeoutError:
            log.warning("stopping with %d Events not posted", len(self._queue))
            poster.cancel()
            self._queue.clear()
