"""Kubernetes Events about AgentTasks: deduplicated, and by default one per healthy task.

``kubectl describe agenttask`` shows the status conditions (phase, reason, message and
when each changed) and the Events.  The conditions already tell every transition of a
healthy task, so by default (``warnings``) the recorder posts Warnings (failures, retries,
rejected writes) and the final transition only, plus the rare notes a healthy task never gets (a create
resumed after a restart, an orphaned job): one Event per healthy task, which is what the
write budget allows and what ``kubectl get events`` readers scan for.  ``all`` posts every
phase or reason transition.  Every transition is logged either way.

Posting happens in the background: an Event never holds a task's scheduler slot (bench
profile: the Event post was 7% of the operator's CPU, all of it inside a reconcile).  As
client-go's event broadcaster does, Events wait in one queue that a few workers post in
order, so in a burst they never take the connections and API-server time the status writes
need (a task per Event once put a thousand Event posts in front of them); a queue full
beyond :data:`QUEUE_LIMIT` drops new Events with a warning, as client-go does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from agent_operator.controller.cache import Key, ObjectCache
from agent_operator.core.model import EventRecord
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.phases import Reason

log = logging.getLogger(__name__)

#: the ``--events`` choices; the first is the default
EVENT_MODES = ("warnings", "all")
#: Normal Events posted in every mode: they tell what the conditions cannot
NOTEWORTHY = frozenset({str(Reason.CREATE_RESUMED), str(Reason.ORPHANED)})
#: Events posted at the same time (client-go: one); the API client's pool has more connections
WORKERS = 4
#: Events waiting to be posted before new ones are dropped (client-go: 1,000 per broadcaster)
QUEUE_LIMIT = 10_000
_Post = tuple[dict[str, object], str, str, str]


class EventSink(Protocol):
    """Where Events are posted (the API)."""

    async def create_event(self, involved: dict[str, object], type_: str, reason: str, message: str) -> None:
        """Post one Event about ``involved`` (never raises for API errors)."""


class EventRecorder:
    """Posts an object's Events, skipping repeats of its previous one."""

    def __init__(self, sink: EventSink, cache: ObjectCache, mode: str = EVENT_MODES[0]) -> None:
        if mode not in EVENT_MODES:
            raise ValueError(f"events mode {mode!r}: expected one of {', '.join(EVENT_MODES)}")
        self.sink = sink
        self.cache = cache
        self.mode = mode
        self._last: dict[Key, tuple[str, str]] = {}
        self._queue: asyncio.Queue[_Post] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.dropped = 0
        self._unposted = 0

    def forget(self, key: Key) -> None:
        """The object is gone: drop what was remembered about it."""
        self._last.pop(key, None)

    def wanted(self, event: EventRecord) -> bool:
        """Whether ``event`` is posted in this mode (it is logged regardless)."""
        return self.mode == "all" or event.type == "Warning" or event.final or event.reason in NOTEWORTHY

    async def record(self, view: AgentTask, event: EventRecord) -> None:
        """Log ``event`` and post it unless it repeats the object's previous one."""
        key = (view.namespace, view.name)
        if self._last.get(key) == (event.reason, event.message):
            return
        self._last[key] = (event.reason, event.message)
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "%s: %s: %s", view.key, event.reason, event.message)
        if not self.wanted(event):
            return
        body = self.cache.get(key) or {"metadata": {"namespace": view.namespace, "name": view.name, "uid": view.uid}}
        queue = self._started()
        try:
            queue.put_nowait((dict(body), event.type, event.reason, event.message))
            self._unposted += 1
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%d Events dropped so far: %d are waiting to be posted (the API server is slow to "
                            "take them); %s: %s not posted", self.dropped, queue.qsize(), view.key, event.reason)

    def _started(self) -> asyncio.Queue[_Post]:
        """The queue, with its workers running (made on first use: they belong to the running loop)."""
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._post(self._queue)) for _ in range(WORKERS)]
        return self._queue

    async def _post(self, queue: asyncio.Queue[_Post]) -> None:
        while True:
            involved, type_, reason, message = await queue.get()
            try:
                await self.sink.create_event(involved, type_, reason, message)
            except Exception:  # noqa: BLE001 - a worker must outlive any one Event
                log.exception("posting Event %s failed", reason)
            finally:
                self._unposted -= 1
                queue.task_done()

    @property
    def pending(self) -> int:
        """Events waiting or being posted now."""
        return self._unposted

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the Events queued (up to ``timeout`` s; the rest are dropped), then stop the workers."""
        if self._queue is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._queue.join()
            except TimeoutError:
                log.warning("%d Events not posted before stopping", self.pending)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers, self._queue, self._unposted = [], None, 0
