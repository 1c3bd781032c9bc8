"""The AgentTask state machine: :func:`decide` (what next?) and :func:`absorb` (what did the
agent's answer change?).

Both are pure: same object, same answer, same clock → same decision.  The driver (kopf
controller or ``run-local``) applies a :class:`Decision` in this order: metadata change,
status (unless ``defer_write``), events, then the action.  Write budget of a task without
intra-phase changes: metadata patch (finalizer + create-pending marker), status after the
create *and the first get* (the create's status is deferred into it), terminal status.

Create-pending protocol (DESIGN.md): the annotation ``create-pending=<attempt>`` is
written before ``create``; ``resourceMeta`` of that attempt in status proves it finished.
An object with the marker and no resourceMeta resumes by calling ``create`` again with the
same idempotency key (``uid-attempt``), which the agent answers with the existing job.
"""

from __future__ import annotations

import dataclasses

from agent_operator.core.absorb import absorb
from agent_operator.core.clock import format_time
from agent_operator.core.model import Action, ActionKind, Decision, EventRecord, MetadataChange
from agent_operator.core.signing import TamperedResourceMeta
from agent_operator.core.transitions import (
    Context,
    Settings,
    backoff,
    deadline_of,
    delay_from_last_call,
    fail,
    failures_of,
    finish,
    jitter,
    make_status,
    poll_interval,
    spread,
    timed_out,
    transient,
)
from agent_operator.crd import names
from agent_operator.crd.phases import Phase, Reason
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.spec import DeletionPolicy
from agent_operator.sdk import ResourceMeta

__all__ = ["Context", "Settings", "absorb", "backoff", "decide", "decode_meta", "poll_interval", "sync_running"]


def _verify(view: AgentTask, ctx: Context) -> bytes | TamperedResourceMeta:
    try:
        return ctx.signer.verify(view.status.resource_meta or "", uid=view.uid, attempt=view.attempt)
    except TamperedResourceMeta as e:
        return e


def _tampered(view: AgentTask, ctx: Context, now: float, err: TamperedResourceMeta) -> Decision:
    phase = view.status.phase or Phase.PENDING
    msg = (f"refusing to call the agent: {err}. The job handle cannot be trusted; delete the AgentTask "
           f"(annotate {names.ANNOTATION_SKIP_AGENT_DELETE}=true to skip the agent's delete)")
    stalled = (str(Reason.RESOURCE_META_TAMPERED), msg)
    status = make_status(view, ctx, now, phase=phase, reason=Reason.RESOURCE_META_TAMPERED, message=msg, stalled=stalled)
    return finish(view, status, Action(ActionKind.DONE))


def decode_meta(view: AgentTask, ctx: Context) -> ResourceMeta:
    """The agent's ResourceMeta from the verified status (call only after decide said GET/DELETE)."""
    data = _verify(view, ctx)
    if isinstance(data, TamperedResourceMeta):
        raise data
    assert ctx.prepared is not None
    meta_type: type[ResourceMeta] = ctx.prepared.agent.metadata_type
    return meta_type.decode(data)


# --------------------------------------------------------------------------- decide
def decide(view: AgentTask, ctx: Context, now: float) -> Decision:
    """What to do with ``view`` now, before any agent call."""
    phase = view.status.phase
    if view.deleting:
        return _decide_deletion(view, ctx, now, phase)
    if phase is not None and phase.terminal:
        return Decision(Action(ActionKind.DONE))
    if ctx.failure is not None:
        if ctx.failure.transient:
            # e.g. the remote agent service that would serve this type is unreachable: the
            # task waits (Reconciling, Stalled after the budget) instead of failing, for at
            # most its spec.timeout
            deadline = deadline_of(view, ctx)
            if deadline is not None and now >= deadline:
                return timed_out(view, ctx, now, f"while no agent was known: {ctx.failure.message}")
            decision = transient(view, ctx, now, "agent lookup", ctx.failure.message, None)
            if deadline is not None and decision.action.delay > deadline - now:
                decision = dataclasses.replace(
                    decision, action=dataclasses.replace(decision.action, delay=max(deadline - now, 0.0)))
            return decision
        return fail(view, ctx, now, ctx.failure.reason, ctx.failure.message)
    assert ctx.prepared is not None
    deadline = deadline_of(view, ctx)
    failures = failures_of(view)
    if ctx.prepared.info.sync:
        if deadline is not None and now >= deadline:
            return timed_out(view, ctx, now, "before the agent was called")
        wait = backoff(failures, ctx.settings) if failures else 0.0
        return Decision(Action(ActionKind.DO, delay=delay_from_last_call(ctx, now, wait), attempt=view.attempt))
    if view.status.resource_meta:
        data = _verify(view, ctx)
        if isinstance(data, TamperedResourceMeta):
            return _tampered(view, ctx, now, data)
        if deadline is not None and now >= deadline:
            return Decision(Action(ActionKind.DELETE, attempt=view.attempt, purpose="timeout"))
        wait = backoff(failures, ctx.settings) if failures else poll_interval(view, ctx)
        if ctx.last_call is None:
            # nothing polled it in this process yet (a restart): spreading the first polls over
            # one interval, counted from when this process first saw it, keeps thousands of
            # running tasks from being due in the same instant
            seen = ctx.first_seen if ctx.first_seen is not None else now
            delay = max(0.0, seen + wait * spread(view) - now)
        else:
            delay = delay_from_last_call(ctx, now, wait + (0.0 if failures else jitter(ctx, view, wait)))
        if deadline is not None:
            delay = min(delay, max(deadline - now, 0.0))
            if now + delay >= deadline:
                return Decision(Action(ActionKind.REQUEUE, delay=delay, attempt=view.attempt))
        return Decision(Action(ActionKind.GET, delay=delay, attempt=view.attempt))
    if deadline is not None and now >= deadline:
        return timed_out(view, ctx, now, "before the job was created")
    return _decide_create(view, ctx, now, failures)


def _decide_create(view: AgentTask, ctx: Context, now: float, failures: int) -> Decision:
    attempt = view.attempt
    metadata = None
    meta = view.metadata
    if not meta.has_finalizer or meta.create_pending_attempt != attempt:
        metadata = MetadataChange(add_finalizer=not meta.has_finalizer, create_pending=attempt)
    events: tuple[EventRecord, ...] = ()
    if meta.create_pending_attempt == attempt and ctx.last_call is None:
        events = (EventRecord("Normal", str(Reason.CREATE_RESUMED),
                              f"resuming create of attempt {attempt} with the same idempotency key"),)
    wait = backoff(failures, ctx.settings) if failures else 0.0
    return Decision(Action(ActionKind.CREATE, delay=delay_from_last_call(ctx, now, wait), attempt=attempt),
                    metadata=metadata, events=events)


def _decide_deletion(view: AgentTask, ctx: Context, now: float, phase: Phase | None) -> Decision:
    if not view.metadata.has_finalizer:
        return Decision(Action(ActionKind.DONE))
    skip = view.metadata.annotations.get(names.ANNOTATION_SKIP_AGENT_DELETE, "").lower() == "true"
    prepared = ctx.prepared
    orphan = prepared is not None and prepared.spec.deletion_policy == DeletionPolicy.ORPHAN
    terminal = phase is not None and phase.terminal
    if prepared is None or prepared.info.sync or terminal or skip:
        return Decision(Action(ActionKind.RELEASE))
    if orphan:
        event = EventRecord("Normal", str(Reason.ORPHANED), "deletionPolicy Orphan: the agent's job keeps running",
                            final=True)
        return Decision(Action(ActionKind.RELEASE), events=(event,))
    if view.status.resource_meta:
        data = _verify(view, ctx)
        if isinstance(data, TamperedResourceMeta):
            return _tampered(view, ctx, now, data)
        failures = failures_of(view)
        wait = backoff(failures, ctx.settings) if failures else 0.0
        return Decision(Action(ActionKind.DELETE, delay=delay_from_last_call(ctx, now, wait),
                               attempt=view.attempt, purpose="deletion"))
    if view.metadata.create_pending_attempt == view.attempt:
        # a create may have reached the agent: learn its handle (same key) so it can be deleted
        return _decide_create(view, ctx, now, failures_of(view))
    return Decision(Action(ActionKind.RELEASE))


def sync_running(view: AgentTask, ctx: Context, now: float) -> Decision:
    """The status of a task whose sync ``do`` is taking a while: phase Running."""
    status = make_status(view, ctx, now, phase=Phase.RUNNING, reason=Reason.RUNNING,
                         message=f"attempt {view.attempt}: the sync agent is working", attempt=view.attempt,
                         start_time=view.status.start_time or format_time(now))
    return finish(view, status, Action(ActionKind.DO, attempt=view.attempt))
