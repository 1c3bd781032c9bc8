"""The controller: watch events in, core decisions out.

Wiring of narrow parts, each in its own module:

* :class:`~agent_operator.controller.cache.ObjectCache`: latest body per AgentTask;
* :class:`~agent_operator.controller.events.EventRecorder`: deduplicated Events;
* :class:`~agent_operator.controller.secrets.SecretCache`: Secrets named by tasks;
* :class:`~agent_operator.controller.contexts.ContextFactory` / ``AgentPools``: prepared
  specs and per-agent thread pools for the core runner;
* :class:`~agent_operator.controller.backend.KubeBackend`: applies decisions to the API;
* :mod:`~agent_operator.controller.kopf_adapter`: the watch (kopf), which only feeds
  :meth:`Controller.on_event`.

The poll schedule lives in memory (:class:`PollScheduler`), rebuilt from the initial
listing on start, so polling writes nothing; status is written by merge patch only when
the core computed a different one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent_operator.controller import hooks, kopf_adapter
from agent_operator.controller.api import KubeApi
from agent_operator.controller.backend import KubeBackend
from agent_operator.controller.cache import Key, ObjectCache
from agent_operator.controller.contexts import AgentPools
from agent_operator.controller.crd_wait import wait_for_crd
from agent_operator.controller.errors import ApiError, Invalid, NotFound, TooManyRequests
from agent_operator.controller.events import EVENT_MODES, EventRecorder
from agent_operator.controller.secrets import SecretCache
from agent_operator.controller.stats import report_stats
from agent_operator.core.context import ContextFactory
from agent_operator.core.model import EventRecord
from agent_operator.core.reconcile import Context, Settings
from agent_operator.core.runner import CallLimits, Progress, advance
from agent_operator.core.scheduler import PollScheduler
from agent_operator.core.signing import Signer
from agent_operator.crd.resource import AgentTask, AgentTaskCache

log = logging.getLogger(__name__)
READY_MARKER = kopf_adapter.READY_MARKER
API_ERROR_RETRY = 2.0
API_ERROR_MAX = 120.0
#: a task whose shard fence is closed is looked at again this much later (by then the
#: replica either drives its slot again or was restarted over other slots)
SHARD_FENCE_RETRY = 1.0


class ShardFenceClosed(Exception):
    """This replica may not call the agent of this task now (its uid slot is not driven here)."""


@dataclass(frozen=True)
class ControllerOptions:
    """What ``agent-operator run`` configures."""

    namespaces: tuple[str, ...] = ()
    settings: Settings = field(default_factory=Settings)
    limits: CallLimits = field(default_factory=CallLimits)
    max_concurrency: int = 64
    per_agent_concurrency: int = 32
    agent_threads: int = 64
    #: a watch stream silent this long (no event, no bookmark) is taken for dead and reopened
    watch_inactivity_timeout: float = 70.0
    #: bound on one API request (a frozen connection must not hang a write forever)
    api_timeout: float = 30.0
    #: which Events to post: "warnings" (Warnings and final transitions) or "all" transitions
    events: str = EVENT_MODES[0]
    #: uid sharding (``run --shards``, agent_operator.ha.shards): the server-side
    #: ``shardSelector`` of the list/watch, the same hash as a client-side filter (uid ->
    #: watched here), and the fence checked before every agent call (uid -> may call now)
    shard_selector: str = ""
    shard_covers: Callable[[str], bool] | None = None
    shard_gate: Callable[[str], bool] | None = None
    #: on stop, let running handlers (and their agent calls) finish before returning
    drain_on_stop: bool = False


def _group(spec: Mapping[str, Any]) -> str:
    """Concurrency group of a task: its task type (one agent per type), known before any call."""
    template = spec.get("taskTemplate")
    return str(template.get("type", "")) if isinstance(template, Mapping) else ""


class Controller:
    """Routes watch events to the scheduler and advances due objects through the core."""

    def __init__(self, api: KubeApi, signer: Signer, options: ControllerOptions) -> None:
        self.api = api
        self.options = options
        self.cache = ObjectCache()
        self.progress: dict[Key, Progress] = {}
        self.api_failures: dict[Key, int] = {}
        #: typed objects, parsed once per resourceVersion (spec once per generation)
        self.tasks = AgentTaskCache()
        self.contexts = ContextFactory(signer, options.settings)
        self.pools = AgentPools(options.per_agent_concurrency)
        self.secrets = SecretCache(api)
        # Events wait while more tasks are due than may run at once (see controller.events)
        self.events = EventRecorder(api, self.cache, options.events,
                                    backlog=lambda: self.scheduler.busy > options.max_concurrency)
        self.scheduler: PollScheduler[Key] = PollScheduler(
            self.handle, max_concurrency=options.max_concurrency, per_group=options.per_agent_concurrency)
        self.backend = KubeBackend(api, self.cache, self.tasks, self.events, self.wake)
        self.ready = False

    # ------------------------------------------------------------------ events
    def wake(self, key: Key) -> None:
        """Reconcile ``key`` as soon as possible."""
        self.scheduler.schedule(key, 0.0, earliest=True)

    def forget(self, key: Key) -> None:
        """Drop everything about an object that is gone."""
        self._drop_state(key, self.cache.pop(key))

    def _drop_state(self, key: Key, previous: Mapping[str, Any] | None) -> None:
        """Drop what is kept beside the cache about ``key`` (``previous``: its last body)."""
        if previous is not None:
            uid = str((previous.get("metadata") or {}).get("uid"))
            self.contexts.forget(uid)
            self.tasks.forget(uid)
        self.progress.pop(key, None)
        self.events.forget(key)
        self.api_failures.pop(key, None)
        self.scheduler.cancel(key)

    def on_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event (or initial listing, type None): update the cache, wake the object if needed."""
        hooks.record_watch_event()
        covers = self.options.shard_covers
        if covers is not None and not covers(str((body.get("metadata") or {}).get("uid") or "")):
            return  # another replica's slot (the API server did not filter it)
        seen = self.cache.observe(event_type, body)
        if seen.forget:
            self._drop_state(seen.key, seen.previous)
        if seen.wake:
            cached = self.cache.get(seen.key) or {}
            self.scheduler.schedule(seen.key, 0.0, group=_group(cached.get("spec") or {}), earliest=True)

    # ------------------------------------------------------------------ reconcile
    def _fenced_pool(self, uid: str, ctx: Context) -> ThreadPoolExecutor | None:
        """The agent's pool, asked right before each agent call: a closed shard fence -> no call."""
        gate = self.options.shard_gate
        if gate is not None and not gate(uid):
            raise ShardFenceClosed(uid)
        return self.pools(ctx)

    async def handle(self, key: Key) -> None:
        """Scheduler callback: advance one object until it waits, then schedule its next step."""
        body = self.cache.get(key)
        if body is None:
            return
        view = self.tasks.load(body)
        progress = self.progress.setdefault(key, Progress())
        logmod = hooks.logging_module()
        ctxmgr = logmod.task_context(view.namespace, view.name, view.uid) if logmod is not None else None
        if ctxmgr is not None:
            ctxmgr.__enter__()
        executor_for: Callable[[Context], ThreadPoolExecutor | None] = self.pools
        if self.options.shard_gate is not None:
            executor_for = functools.partial(self._fenced_pool, view.uid)
        try:
            outcome = await advance(view, self.contexts, self.backend, progress,
                                    secrets=self.secrets.secrets_for, limits=self.options.limits,
                                    observe=hooks.observe_agent_call, executor_for=executor_for)
        except ShardFenceClosed:
            self.scheduler.schedule(key, SHARD_FENCE_RETRY)
            return
        except NotFound:
            self.forget(key)
            return
        except ApiError as e:
            await self._retry_later(key, view, e)
            return
        finally:
            if ctxmgr is not None:
                ctxmgr.__exit__(None, None, None)
        self.api_failures.pop(key, None)
        if outcome.action is not None:
            self.scheduler.schedule(key, outcome.action.delay, group=_group(body.get("spec") or {}))

    async def _retry_later(self, key: Key, view: AgentTask, error: ApiError) -> None:
        """Back off after a failed write (the API server's Retry-After when it sent one)."""
        n = self.api_failures.get(key, 0) + 1
        self.api_failures[key] = n
        delay = min(API_ERROR_RETRY * 2 ** min(n - 1, 6), API_ERROR_MAX)
        if isinstance(error, TooManyRequests) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        log.warning("%s/%s: API error (%d in a row), retrying in %ss: %s", *key, n, delay, error)
        if isinstance(error, Invalid) and n == 1:
            await self._report_rejected_status(view, error)
        self.scheduler.schedule(key, delay)

    async def _report_rejected_status(self, view: AgentTask, error: Invalid) -> None:
        """The API server refused a write (schema): say so where the user looks, as an Event."""
        causes = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in error.causes)
        await self.events.record(view, EventRecord(
            "Warning", "StatusRejected",
            f"the API server rejected the operator's write: {(causes or error.message)[:800]}"))

    # ------------------------------------------------------------------ run
    def _set_ready(self) -> None:
        self.ready = True
        log.info("%s (namespaces: %s)", READY_MARKER, ", ".join(self.options.namespaces) or "all")

    async def run(self, stop_flag: asyncio.Event | None = None) -> None:
        """Watch and reconcile until stopped (SIGTERM/SIGINT or ``stop_flag``)."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=self.options.agent_threads,
                                                     thread_name_prefix="agent-call"))
        if not await wait_for_crd(self.api.crd_served, stop_flag):
            return
        tasks = [asyncio.create_task(self.scheduler.run()),
                 asyncio.create_task(report_stats(self.cache.values, lambda: self.scheduler.depth))]
        try:
            await kopf_adapter.run(
                kopf_adapter.registry(self.on_event, self.api.client, self._set_ready),
                kopf_adapter.settings(watch_inactivity_timeout=self.options.watch_inactivity_timeout,
                                      api_timeout=self.options.api_timeout,
                                      shard_selector=self.options.shard_selector),
                self.options.namespaces, stop_flag)
        finally:
            self.ready = False
            if self.options.drain_on_stop:
                await self.scheduler.drain()
            await self.events.drain(timeout=5.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.pools.shutdown()
