"""One scheduler for every in-flight task: a heap of due times, bounded concurrency.

Instead of one asyncio task (or kopf timer) per object, which costs memory per object and
API writes per tick, every object that waits for something has one entry in a heap.  Due
entries run the driver's handler with at most ``max_concurrency`` handlers at a time and
at most ``per_group`` per agent, so one slow agent cannot starve the others.  A key is
never handled twice at once: scheduling a running key re-runs it right after it finishes.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)

#: a handler that raised is retried after this many seconds (it should never raise)
HANDLER_ERROR_RETRY = 10.0
#: timed entries (polls and backoffs, a second or more apart) are dispatched at most this
#: often: thousands of tasks polled every few seconds then share event-loop wake-ups
#: instead of taking one each (a wake-up costs 50-90 µs of CPU on a small VM, more than
#: deciding about a poll); keys scheduled with no delay (new objects, events) run at once
TIMER_RESOLUTION = 0.02


class PollScheduler(Generic[K]):
    """Runs ``handler(key)`` when a key is due."""

    def __init__(
        self,
        handler: Callable[[K], Awaitable[None]],
        *,
        max_concurrency: int = 64,
        per_group: int = 16,
        clock: Callable[[], float] = time.monotonic,
        resolution: float = TIMER_RESOLUTION,
    ) -> None:
        self._handler = handler
        self._clock = clock
        self._resolution = resolution
        self._heap: list[tuple[float, int, K]] = []
        self._entry: dict[K, tuple[float, int]] = {}
        self._group: dict[K, str] = {}
        self._running: set[K] = set()
        self._rerun: dict[K, float] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._global = asyncio.Semaphore(max_concurrency)
        self._per_group = per_group
        self._groups: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False

    # ------------------------------------------------------------------ API
    def schedule(self, key: K, delay: float = 0.0, group: str | None = None, *, earliest: bool = False) -> None:
        """Run ``key`` after ``delay`` seconds (replacing its entry; ``earliest``: only move it sooner)."""
        now = self._clock()
        due = now + max(delay, 0.0)
        if group is not None:
            self._group[key] = group
        if key in self._running:
            # whoever asks while it runs (the handler itself or a new event): re-run at the
            # soonest requested time; re-deciding early is harmless, missing an event is not
            prev = self._rerun.get(key)
            self._rerun[key] = due if prev is None else min(prev, due)
            return
        current = self._entry.get(key)
        if earliest and current is not None and current[0] <= due:
            return
        self._seq += 1
        self._entry[key] = (due, self._seq)
        heapq.heappush(self._heap, (due, self._seq, key))
        if due <= now or self._heap[0][2] == key:
            # due now: wake even when the head is an older entry the timer resolution holds
            self._wake.set()

    def cancel(self, key: K) -> None:
        """Forget ``key`` (a running handler finishes; it is not re-run)."""
        self._entry.pop(key, None)
        self._rerun.pop(key, None)
        self._group.pop(key, None)

    def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` is due (None: not scheduled)."""
        entry = self._entry.get(key)
        return None if entry is None else entry[0] - self._clock()

    @property
    def depth(self) -> int:
        """Scheduled keys (waiting or due)."""
        return len(self._entry)

    @property
    def busy(self) -> int:
        """Handlers running now."""
        return len(self._running)

    async def drain(self) -> None:
        """Stop starting handlers and wait until the running ones finished (shard handover)."""
        self._draining = True
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Dispatch due keys forever (cancel the task to stop; running handlers are cancelled)."""
        try:
            while True:
                self._dispatch_due()
                timeout = None
                if self._heap:
                    timeout = max(self._heap[0][0] - self._clock(), 0.0)
                    if 0.0 < timeout < self._resolution:
                        timeout = self._resolution  # due soon: wait for the others due by then
                self._wake.clear()
                try:
                    async with asyncio.timeout(timeout):  # no task per wake-up (wait_for makes one)
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _dispatch_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now and not self._draining:
            due, seq, key = heapq.heappop(self._heap)
            if self._entry.get(key) != (due, seq):
                continue  # replaced or cancelled
            del self._entry[key]
            self._running.add(key)
            task = asyncio.create_task(self._run_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_one(self, key: K) -> None:
        name = self._group.get(key, "")
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = asyncio.Semaphore(self._per_group)
        failed = False
        try:
            async with group, self._global:
                await self._handler(key)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad object must not stop the others
            log.exception("handler for %s failed; retrying in %ss", key, HANDLER_ERROR_RETRY)
            failed = True
        finally:
            self._running.discard(key)
        again = self._rerun.pop(key, None)
        if failed and key not in self._entry:
            self.schedule(key, HANDLER_ERROR_RETRY)
        elif again is not None and key not in self._entry:
            self.schedule(key, max(again - self._clock(), 0.0))
