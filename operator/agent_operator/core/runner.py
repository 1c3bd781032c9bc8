"""Driving one AgentTask through decide → agent call → absorb, shared by every driver.

:func:`advance` runs the state machine of one object until it has to wait (poll interval,
backoff) or is done, calling the agent and applying decisions through a :class:`Backend`:
the kopf controller's backend patches the API server, ``run-local``'s prints and keeps the
object in memory, unit tests record.  Deferred statuses (``Decision.defer_write``) are
held here and flushed with the next write or before waiting, which is what keeps a task
at three object writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from agent_operator.core.answers import classify
from agent_operator.core.identity import task_execution_metadata
from agent_operator.core.model import Action, ActionKind, Answer, Decision, EventRecord, MetadataChange
from agent_operator.core.reconcile import Context, absorb, decide, decode_meta, sync_running
from agent_operator.crd.phases import Phase
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.status import AgentTaskStatus
from agent_operator.sdk.invoke import invoke

#: immediate transitions one ``advance`` may take before yielding (guards against loops)
MAX_STEPS = 16
AGENT_CALLS = (ActionKind.CREATE, ActionKind.GET, ActionKind.DELETE, ActionKind.DO)


class Backend(Protocol):
    """Where decisions land (API server, memory, ...)."""

    async def patch_metadata(self, view: AgentTask, change: MetadataChange) -> AgentTask:
        """Apply finalizer / annotation changes; return the updated object."""

    async def write_status(self, view: AgentTask, status: AgentTaskStatus) -> AgentTask:
        """Replace the status (``view.status`` is what is stored now); return the updated object."""

    async def release(self, view: AgentTask) -> None:
        """Remove our finalizer (the object may then disappear)."""

    async def emit(self, view: AgentTask, event: EventRecord) -> None:
        """Record an Event about the object."""

    async def store_outputs(self, view: AgentTask, ref: str, data: bytes) -> None:
        """Write serialized outputs to ``ref`` (called before the status pointing at them)."""


@dataclass(frozen=True)
class CallLimits:
    """Bounds on agent calls: async methods and sync ``do``."""

    call_timeout: float = 60.0
    do_timeout: float = 300.0
    #: a sync ``do`` still running after this long gets a Running status (short ones cost
    #: no extra write; long ones do not leave the task without a phase)
    do_progress_after: float = 2.0


@dataclass(slots=True)
class Progress:
    """What a driver keeps per object between ``advance`` calls (in memory only)."""

    last_call: float | None = None
    first_seen: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where ``advance`` stopped: the object as stored and the pending action (None: nothing)."""

    view: AgentTask
    action: Action | None


Observer = Callable[[str, str, float, "str | None"], None]


class ContextMaker(Protocol):
    """Builds an object's :class:`Context` (:class:`~agent_operator.core.context.ContextFactory`)."""

    def __call__(self, task: AgentTask, last_call: float | None = None, *, first_seen: float | None = None,
                 secret_values: tuple[str, ...] = ()) -> Context:
        """The context to decide about ``task`` in."""


class AgentExited(RuntimeError):
    """An agent call raised SystemExit or KeyboardInterrupt: an agent error, not our exit."""


async def _contained(coro: Any) -> Any:
    """Await an agent call, turning SystemExit/KeyboardInterrupt into an ordinary error.

    Left alone, either escapes the asyncio task running the call and stops the event
    loop: one agent calling ``sys.exit()`` would take every other task down with it.
    """
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as e:
        raise AgentExited(f"the agent raised {type(e).__name__}({e})") from None


def _noop_observer(agent: str, method: str, seconds: float, error: str | None) -> None:
    return None


async def call_agent(view: AgentTask, ctx: Context, action: Action, secrets: Mapping[str, Mapping[str, str]],
                     limits: CallLimits, executor: Executor | None = None) -> Answer:
    """Make the agent call ``action`` names, bounded in time; never raises."""
    prepared = ctx.prepared
    assert prepared is not None
    agent = prepared.agent
    extra: dict[str, Any] = {"secrets": {k: dict(v) for k, v in secrets.items()}} if secrets else {}
    try:
        if action.kind in (ActionKind.CREATE, ActionKind.DO):
            template = prepared.template()
            md = task_execution_metadata(
                namespace=view.namespace, name=view.name, uid=view.uid, attempt=action.attempt,
                max_attempts=prepared.spec.max_attempts, template=template, labels=view.metadata.labels,
                service_account=prepared.spec.service_account_name,
            )
            method = agent.create if action.kind == ActionKind.CREATE else agent.do
            coro = invoke(method, executor, task_template=template,
                          output_prefix=prepared.spec.output_prefix or "",
                          inputs=prepared.inputs(template), task_execution_metadata=md, **extra)
        else:
            meta = decode_meta(view, ctx)
            method = agent.get if action.kind == ActionKind.GET else agent.delete
            coro = invoke(method, executor, resource_meta=meta, **extra)
    except Exception as e:  # noqa: BLE001 - a broken handle is the agent's error, not ours
        return Answer(error=e)
    bound = limits.do_timeout if action.kind == ActionKind.DO else limits.call_timeout
    try:
        # asyncio.timeout, not wait_for: the call runs in this task instead of a new one per
        # call (wait_for wraps every awaitable in a task; one per poll of every task)
        async with asyncio.timeout(bound):
            return Answer(value=await _contained(coro))
    except TimeoutError:
        return Answer(timed_out=True)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - classified by the core
        return Answer(error=e)


def _with_status(view: AgentTask, status: AgentTaskStatus) -> AgentTask:
    return dataclasses.replace(view, status=status)


def secret_text(secrets: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Secret values as flytekit reads them: surrounding whitespace stripped.

    ``echo TOKEN > file`` and ``kubectl create secret --from-file`` keep the file's trailing
    newline; flytekit's ``SecretsManager.get`` strips what it reads from files and env vars,
    and connectors rely on it (an ``Authorization`` header with a newline is illegal).  Both
    drivers (the controller's Secret cache, run-local's ``--secret-dir``) hand their Secrets
    to :func:`advance`, so this is the one place they are stripped.
    """
    return {name: {key: value.strip() for key, value in data.items()} for name, data in secrets.items()}


async def advance(
    view: AgentTask,
    make_context: ContextMaker,
    backend: Backend,
    progress: Progress,
    *,
    secrets: Callable[[AgentTask], Any] | None = None,
    limits: CallLimits = CallLimits(),
    clock: Callable[[], float] = time.time,
    observe: Observer = _noop_observer,
    executor_for: Callable[[Context], Executor | None] | None = None,
) -> Outcome:
    """Run ``view`` until it waits or is done; returns the pending action for the scheduler."""
    stored = view          # the object as the backend has it
    local = view           # with deferred status applied
    dirty = False

    async def flush() -> None:
        nonlocal stored, local, dirty
        if dirty:
            stored = await backend.write_status(stored, local.status)
            local, dirty = stored, False

    secret_values: tuple[str, ...] = ()

    if progress.first_seen is None:
        progress.first_seen = clock()

    def context() -> Context:
        return make_context(local, progress.last_call, first_seen=progress.first_seen, secret_values=secret_values)

    ctx = context()
    decision: Decision = decide(local, ctx, clock())
    answered = False  # whether ``decision`` is absorb's (about the agent's answer) or decide's
    for _ in range(MAX_STEPS):
        if decision.metadata is not None:
            stored = await backend.patch_metadata(stored, decision.metadata)
            local = dataclasses.replace(stored, status=local.status)
        if decision.store_outputs is not None:
            await backend.store_outputs(local, *decision.store_outputs)
        action = decision.action
        immediate = action.delay <= 0 and action.kind in (*AGENT_CALLS, ActionKind.REQUEUE)
        if decision.status is not None:
            local, dirty = _with_status(local, decision.status), True
            if not (decision.defer_write and immediate):
                await flush()
        for event in decision.events:
            await backend.emit(local, event)
        if action.kind == ActionKind.DONE and answered and local.deleting and local.metadata.has_finalizer:
            # the answer ended the task, but a deleted task still owes its finalizer: the
            # echo of this status write is our own and wakes nobody, so decide again now
            await flush()
            decision, answered = decide(local, context(), clock()), False
            continue
        if action.kind == ActionKind.DONE or not immediate and action.kind != ActionKind.RELEASE:
            await flush()
            return Outcome(stored, None if action.kind == ActionKind.DONE else action)
        if action.kind == ActionKind.RELEASE:
            await flush()
            await backend.release(stored)
            return Outcome(stored, None)
        ctx = context()
        if action.kind == ActionKind.REQUEUE:
            decision, answered = decide(local, ctx, clock()), False
            continue
        values: Mapping[str, Mapping[str, str]] = {}
        if secrets is not None:
            try:
                values = secret_text(await secrets(local))
                secret_values = tuple(v for data in values.values() for v in data.values())
                ctx = context()
            except Exception as e:  # noqa: BLE001 - a missing Secret is retried like a transient error
                decision, answered = absorb(local, ctx, action, Answer(error=e), clock()), True
                continue
        started = clock()
        executor = executor_for(ctx) if executor_for is not None else None
        if action.kind == ActionKind.DO and local.status.phase != Phase.RUNNING:
            # a sync do that takes a while gets a Running status meanwhile: the call runs
            # in a task of its own so that the status can be written while it runs
            call = asyncio.ensure_future(call_agent(local, ctx, action, values, limits, executor))
            done, _ = await asyncio.wait({call}, timeout=limits.do_progress_after)
            if not done:
                interim = sync_running(local, ctx, clock())
                if interim.status is not None:
                    local, dirty = _with_status(local, interim.status), True
                    await flush()
                    for event in interim.events:
                        await backend.emit(local, event)
            try:
                answer = await call
            except asyncio.CancelledError:
                call.cancel()
                raise
        else:
            # every other call (each poll's get among them) in this task: no task per call
            answer = await call_agent(local, ctx, action, values, limits, executor)
        progress.last_call = started
        kind = _error_kind(answer)
        observe((ctx.prepared.info.name or "") if ctx.prepared else "", action.kind.value, clock() - started, kind)
        ctx = context()
        decision, answered = absorb(local, ctx, action, answer, clock()), True
    await flush()
    return Outcome(stored, Action(ActionKind.REQUEUE, delay=0.0))


def _error_kind(answer: Answer) -> str | None:
    """The metrics label of a failed call: the core's own classification (a timed-out call
    is retried like a transient error), so dashboards agree with what the task does."""
    if answer.timed_out:
        return "transient"
    if answer.error is None:
        return None
    return classify(answer.error).kind.value
