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

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_operator.core import answers, conditions
from agent_operator.core.clock import format_time, parse_time
from agent_operator.core.messages import clean, describe_exception, scrub_json
from agent_operator.core.model import (
    Action,
    ActionKind,
    Answer,
    Decision,
    EventRecord,
    MetadataChange,
    TaskView,
)
from agent_operator.core.prepare import PrepareFailure, Prepared
from agent_operator.core.signing import Signer, TamperedResourceMeta
from agent_operator.crd import names
from agent_operator.crd.durations import format_duration
from agent_operator.crd.phases import Phase, Reason
from agent_operator.crd.spec import DeletionPolicy
from agent_operator.sdk import ResourceMeta, TaskExecution

MAX_INLINE_OUTPUT_BYTES = 64 * 1024
#: status.resourceMeta's schema bound (crd/status.py MAX_RESOURCE_META)
MAX_SIGNED_META = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """Operator-wide policy knobs (flags of ``agent-operator run``)."""

    default_poll_interval: float = 10.0
    min_poll_interval: float = 1.0
    jitter: float = 0.1
    transient_budget: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    max_inline_output_bytes: int = MAX_INLINE_OUTPUT_BYTES


@dataclass(frozen=True)
class Context:
    """Everything besides the object that a decision depends on."""

    signer: Signer
    prepared: Prepared | None = None
    failure: PrepareFailure | None = None
    settings: Settings = field(default_factory=Settings)
    #: secret values handed to the agent; scrubbed from every message
    secret_values: tuple[str, ...] = ()
    #: when the last agent call for this object was made (in memory; None after a restart)
    last_call: float | None = None
    #: when this process first handled the object (in memory)
    first_seen: float | None = None


# --------------------------------------------------------------------------- helpers
def _phase(view: TaskView) -> Phase | None:
    try:
        return Phase(view.status.get("phase"))
    except ValueError:
        return None


def _jitter(ctx: Context, view: TaskView, base: float) -> float:
    """Deterministic jitter per object and call, so re-deciding gives the same delay."""
    seed = f"{view.uid}/{ctx.last_call}".encode()
    frac = int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") / 2**32
    return base * ctx.settings.jitter * frac


def _spread(view: TaskView) -> float:
    """A stable fraction in [0, 1) per object."""
    return int.from_bytes(hashlib.sha256(view.uid.encode()).digest()[:4], "big") / 2**32


def poll_interval(view: TaskView, ctx: Context) -> float:
    """Agent hint > spec.pollInterval > agent default > operator default; floored."""
    s = ctx.settings
    chosen = answers.next_poll_hint(view.status)
    if chosen is None and ctx.prepared is not None:
        chosen = ctx.prepared.spec.poll_interval_seconds or ctx.prepared.info.poll_interval
    return float(max(chosen or s.default_poll_interval, s.min_poll_interval))


def backoff(failures: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential backoff after ``failures`` transient errors in a row (>= the agent's hint)."""
    # the exponent is capped: transientFailures comes from status, which anyone may edit
    delay = min(settings.backoff_base * 2.0 ** min(max(failures - 1, 0), 64), settings.backoff_max)
    return float(max(delay, retry_after or 0.0))


def _deadline(view: TaskView, ctx: Context) -> float | None:
    if ctx.prepared is None or ctx.prepared.spec.timeout_seconds is None:
        return None
    start = view.status.get("startTime")
    begin = parse_time(start) if isinstance(start, str) else view.creation_time
    return None if begin is None else begin + ctx.prepared.spec.timeout_seconds


def _delay_from_last_call(ctx: Context, now: float, wait: float) -> float:
    if ctx.last_call is None:
        return 0.0
    return max(0.0, ctx.last_call + wait - now)


def _failures(view: TaskView) -> int:
    value = view.status.get("transientFailures")
    return int(value) if isinstance(value, int) else 0


def make_status(view: TaskView, ctx: Context, now: float, *, phase: Phase, reason: Reason | str, message: str,
                stalled: tuple[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """The full new status: old fields, ``fields`` (None removes), phase, reason, message, conditions."""
    status: dict[str, Any] = {k: v for k, v in view.status.items() if k != "conditions"}
    for key, value in fields.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    message = clean(message, ctx.secret_values)
    if ctx.secret_values:
        # what the agent reported goes to status too: no Secret value may reach it
        for key in ("outputs", "customInfo", "logLinks"):
            if key in status:
                status[key] = scrub_json(status[key], ctx.secret_values)
    status.update(phase=phase.value, reason=str(reason), message=message, observedGeneration=view.generation)
    if ctx.prepared is not None:
        status["agent"] = ctx.prepared.info.status()
    if phase.terminal and "completionTime" not in status:
        status["completionTime"] = format_time(now)
    status.setdefault("attempt", view.attempt)
    wanted = conditions.desired(phase, str(reason), message, stalled=stalled is not None,
                                stalled_reason=stalled[0] if stalled else "",
                                stalled_message=clean(stalled[1], ctx.secret_values) if stalled else "")
    status["conditions"] = conditions.build(view.status.get("conditions"), wanted, generation=view.generation, now=now)
    return status


def _changed(view: TaskView, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return None if dict(status) == dict(view.status) else status


def _event_for(view: TaskView, status: Mapping[str, Any]) -> tuple[EventRecord, ...]:
    """One Event per phase or reason transition."""
    old = (view.status.get("phase"), view.status.get("reason"))
    new = (status.get("phase"), status.get("reason"))
    if old == new:
        return ()
    failed = status.get("phase") in (Phase.FAILED.value, Phase.TIMED_OUT.value) or bool(status.get("transientFailures"))
    return (EventRecord("Warning" if failed else "Normal", str(status.get("reason")), str(status.get("message"))),)


def _finish(view: TaskView, status: dict[str, Any], action: Action, **extra: Any) -> Decision:
    return Decision(action=action, status=_changed(view, status), events=_event_for(view, status), **extra)


def fail(view: TaskView, ctx: Context, now: float, reason: Reason, message: str, phase: Phase = Phase.FAILED) -> Decision:
    """A terminal status with ``reason`` and nothing more to do."""
    status = make_status(view, ctx, now, phase=phase, reason=reason, message=message, transientFailures=None)
    return _finish(view, status, Action(ActionKind.DONE))


def _transient(view: TaskView, ctx: Context, now: float, what: str, error: str, retry_after: float | None,
               action: ActionKind = ActionKind.REQUEUE) -> Decision:
    """Count a transient failure; Reconciling with the error, Stalled once over budget."""
    n = _failures(view) + 1
    delay = backoff(n, ctx.settings, retry_after)
    phase = _phase(view) or Phase.PENDING
    msg = f"{what} failed with a transient error ({n} in a row), retrying in {format_duration(delay)}: {error}"
    stalled = (str(Reason.AGENT_UNAVAILABLE), msg) if n >= ctx.settings.transient_budget else None
    status = make_status(view, ctx, now, phase=phase, reason=Reason.AGENT_UNAVAILABLE, message=msg,
                         stalled=stalled, transientFailures=n)
    return _finish(view, status, Action(action, delay=delay, attempt=view.attempt))


def _verify(view: TaskView, ctx: Context) -> bytes | TamperedResourceMeta:
    signed = view.status.get("resourceMeta")
    try:
        return ctx.signer.verify(str(signed), uid=view.uid, attempt=view.attempt)
    except TamperedResourceMeta as e:
        return e


def _tampered(view: TaskView, ctx: Context, now: float, err: TamperedResourceMeta) -> Decision:
    phase = _phase(view) or Phase.PENDING
    msg = (f"refusing to call the agent: {err}. The job handle cannot be trusted; delete the AgentTask "
           f"(annotate {names.ANNOTATION_SKIP_AGENT_DELETE}=true to skip the agent's delete)")
    stalled = (str(Reason.RESOURCE_META_TAMPERED), msg)
    status = make_status(view, ctx, now, phase=phase, reason=Reason.RESOURCE_META_TAMPERED, message=msg, stalled=stalled)
    return _finish(view, status, Action(ActionKind.DONE))


def decode_meta(view: TaskView, ctx: Context) -> ResourceMeta:
    """The agent's ResourceMeta from the verified status (call only after decide said GET/DELETE)."""
    data = _verify(view, ctx)
    if isinstance(data, TamperedResourceMeta):
        raise data
    assert ctx.prepared is not None
    meta_type: type[ResourceMeta] = ctx.prepared.agent.metadata_type
    return meta_type.decode(data)


# --------------------------------------------------------------------------- decide
def decide(view: TaskView, ctx: Context, now: float) -> Decision:
    """What to do with ``view`` now, before any agent call."""
    phase = _phase(view)
    if view.deletion_requested:
        return _decide_deletion(view, ctx, now, phase)
    if phase is not None and phase.terminal:
        return Decision(Action(ActionKind.DONE))
    if ctx.failure is not None:
        return fail(view, ctx, now, ctx.failure.reason, ctx.failure.message)
    assert ctx.prepared is not None
    deadline = _deadline(view, ctx)
    failures = _failures(view)
    if ctx.prepared.info.sync:
        if deadline is not None and now >= deadline:
            return _timed_out(view, ctx, now, "before the agent was called")
        wait = backoff(failures, ctx.settings) if failures else 0.0
        return Decision(Action(ActionKind.DO, delay=_delay_from_last_call(ctx, now, wait), attempt=view.attempt))
    if view.status.get("resourceMeta"):
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
            delay = max(0.0, seen + wait * _spread(view) - now)
        else:
            delay = _delay_from_last_call(ctx, now, wait + (0.0 if failures else _jitter(ctx, view, wait)))
        if deadline is not None:
            delay = min(delay, max(deadline - now, 0.0))
            if now + delay >= deadline:
                return Decision(Action(ActionKind.REQUEUE, delay=delay, attempt=view.attempt))
        return Decision(Action(ActionKind.GET, delay=delay, attempt=view.attempt))
    if deadline is not None and now >= deadline:
        return _timed_out(view, ctx, now, "before the job was created")
    return _decide_create(view, ctx, now, failures)


def _decide_create(view: TaskView, ctx: Context, now: float, failures: int) -> Decision:
    attempt = view.attempt
    metadata = None
    if not view.has_finalizer or view.create_pending_attempt != attempt:
        metadata = MetadataChange(add_finalizer=not view.has_finalizer, create_pending=attempt)
    events: tuple[EventRecord, ...] = ()
    if view.create_pending_attempt == attempt and ctx.last_call is None:
        events = (EventRecord("Normal", str(Reason.CREATE_RESUMED),
                              f"resuming create of attempt {attempt} with the same idempotency key"),)
    wait = backoff(failures, ctx.settings) if failures else 0.0
    return Decision(Action(ActionKind.CREATE, delay=_delay_from_last_call(ctx, now, wait), attempt=attempt),
                    metadata=metadata, events=events)


def _timed_out(view: TaskView, ctx: Context, now: float, detail: str) -> Decision:
    timeout = ctx.prepared.spec.timeout if ctx.prepared is not None else "?"
    return fail(view, ctx, now, Reason.TIMED_OUT, f"spec.timeout ({timeout}) elapsed {detail}", Phase.TIMED_OUT)


def _decide_deletion(view: TaskView, ctx: Context, now: float, phase: Phase | None) -> Decision:
    if not view.has_finalizer:
        return Decision(Action(ActionKind.DONE))
    skip = view.annotations.get(names.ANNOTATION_SKIP_AGENT_DELETE, "").lower() == "true"
    prepared = ctx.prepared
    orphan = prepared is not None and prepared.spec.deletion_policy == DeletionPolicy.ORPHAN
    terminal = phase is not None and phase.terminal
    if prepared is None or prepared.info.sync or terminal or skip:
        return Decision(Action(ActionKind.RELEASE))
    if orphan:
        event = EventRecord("Normal", str(Reason.ORPHANED), "deletionPolicy Orphan: the agent's job keeps running")
        return Decision(Action(ActionKind.RELEASE), events=(event,))
    if view.status.get("resourceMeta"):
        data = _verify(view, ctx)
        if isinstance(data, TamperedResourceMeta):
            return _tampered(view, ctx, now, data)
        failures = _failures(view)
        wait = backoff(failures, ctx.settings) if failures else 0.0
        return Decision(Action(ActionKind.DELETE, delay=_delay_from_last_call(ctx, now, wait),
                               attempt=view.attempt, purpose="deletion"))
    if view.create_pending_attempt == view.attempt:
        # a create may have reached the agent: learn its handle (same key) so it can be deleted
        return _decide_create(view, ctx, now, _failures(view))
    return Decision(Action(ActionKind.RELEASE))


# --------------------------------------------------------------------------- absorb
def absorb(view: TaskView, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    """The decision after the agent answered ``action`` (value, exception or time-out).

    Never raises for any answer: whatever an agent returns that the steps below do not
    expect ends the task with ``AgentError`` instead of a handler retried forever.
    """
    assert ctx.prepared is not None, "absorb needs a prepared task"
    if action.kind not in (ActionKind.CREATE, ActionKind.GET, ActionKind.DO, ActionKind.DELETE):
        raise ValueError(f"absorb: {action.kind} is not an agent call")
    try:
        return _absorb(view, ctx, action, answer, now)
    except Exception as e:  # noqa: BLE001 - one bad answer must not wedge the object
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"{action.kind.value}: the operator could not use the agent's answer: "
                    f"{describe_exception(e, ctx.secret_values)}")


def _absorb(view: TaskView, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    if action.kind == ActionKind.CREATE:
        return _absorb_create(view, ctx, answer, now)
    if action.kind in (ActionKind.GET, ActionKind.DO):
        return _absorb_resource(view, ctx, action, answer, now)
    if action.kind == ActionKind.DELETE:
        return _absorb_delete(view, ctx, action, answer, now)
    raise ValueError(f"absorb: {action.kind} is not an agent call")


def _error_text(answer: Answer, ctx: Context, what: str, bound: float | None = None) -> str:
    if answer.timed_out:
        return f"{what} did not answer in time" + (f" ({format_duration(bound)})" if bound else "")
    assert answer.error is not None
    return describe_exception(answer.error, ctx.secret_values)


def _absorb_create(view: TaskView, ctx: Context, answer: Answer, now: float) -> Decision:
    if answer.timed_out or answer.error is not None:
        err = _error_text(answer, ctx, "create")
        kind = answers.classify(answer.error) if answer.error is not None else None
        if kind is None or kind.kind == answers.ErrorKind.TRANSIENT:
            # a timed-out create may have reached the agent: retry with the same key
            return _transient(view, ctx, now, "create", err, kind.retry_after if kind else None)
        return fail(view, ctx, now, kind.reason, f"create failed: {err}")
    meta = answer.value
    if not isinstance(meta, ResourceMeta):
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"create returned {type(meta).__name__}, expected a ResourceMeta")
    try:
        encoded = meta.encode()
    except Exception as e:  # noqa: BLE001 - the agent's own metadata class is broken
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"create returned a {type(meta).__name__} that cannot be encoded: {describe_exception(e, ctx.secret_values)}")
    signed = ctx.signer.sign(encoded, uid=view.uid, attempt=view.attempt)
    if len(signed) > MAX_SIGNED_META:
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"create returned a {type(meta).__name__} of {format_bytes(len(encoded))}; status.resourceMeta "
                    f"holds at most {format_bytes(MAX_SIGNED_META)} once signed (the job's handle cannot be kept)")
    status = make_status(
        view, ctx, now, phase=Phase.QUEUED, reason=Reason.CREATED,
        message=f"attempt {view.attempt}: job created", resourceMeta=signed, attempt=view.attempt,
        startTime=view.status.get("startTime") or format_time(now), transientFailures=None,
    )
    # deferred: merged with the status after the first get (one write instead of two)
    return Decision(Action(ActionKind.GET, attempt=view.attempt), status=_changed(view, status),
                    events=_event_for(view, status), defer_write=True)


def _absorb_resource(view: TaskView, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    what = "do" if action.kind == ActionKind.DO else "get"
    if answer.timed_out and action.kind == ActionKind.DO:
        deadline = _deadline(view, ctx)
        if deadline is not None and now >= deadline:
            return _timed_out(view, ctx, now, "while the sync agent was running")
        return fail(view, ctx, now, Reason.AGENT_ERROR, "do did not finish within the operator's call limit")
    if answer.timed_out or answer.error is not None:
        err = _error_text(answer, ctx, what)
        kind = answers.classify(answer.error) if answer.error is not None else None
        if kind is None or kind.kind == answers.ErrorKind.TRANSIENT:
            return _transient(view, ctx, now, what, err, kind.retry_after if kind else None)
        return fail(view, ctx, now, kind.reason, f"{what} failed: {err}")
    try:
        resource = answers.to_resource(answer.value)
    except TypeError as e:
        return fail(view, ctx, now, Reason.AGENT_ERROR, f"{what}: {e}")
    flyte_phase = answers.flyte_phase_of(resource)
    if flyte_phase is None:
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"agent {what} returned phase {clean(repr(resource.phase)[:100])}, which is not a TaskExecution phase number")
    if flyte_phase == TaskExecution.RETRYABLE_FAILED:
        return _retry(view, ctx, now, answers.message_of(resource))
    phase = answers.FLYTE_PHASES.get(flyte_phase)
    if phase is None:
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"agent {what} returned phase {answers.phase_name(flyte_phase)}, which is not a task phase "
                    f"(an agent must report QUEUED, RUNNING, SUCCEEDED, FAILED, ... )")
    if action.kind == ActionKind.DO and not phase.terminal:
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"sync agent's do returned non-final phase {answers.phase_name(flyte_phase)}")
    fields: dict[str, Any] = {
        "transientFailures": None,
        "logLinks": answers.log_links(resource) or None,
        "customInfo": answers.custom_info(resource),
        "startTime": view.status.get("startTime") or format_time(now),
    }
    if action.kind == ActionKind.DO:
        fields["attempt"] = view.attempt
    message = answers.message_of(resource) or f"agent reports {phase.value}"
    store = None
    if phase == Phase.SUCCEEDED:
        assert ctx.prepared is not None
        try:
            lm = answers.outputs_literal_map(resource, ctx.prepared.template)
        except Exception as e:  # noqa: BLE001 - outputs the task's interface cannot hold
            return fail(view, ctx, now, Reason.AGENT_ERROR, f"outputs: {describe_exception(e, ctx.secret_values)}")
        if lm is not None:
            store, message = _outputs(view, ctx, lm, fields, message)
    status = make_status(view, ctx, now, phase=phase, reason=answers.PHASE_REASONS[phase], message=message, **fields)
    if phase.terminal:
        return _finish(view, status, Action(ActionKind.DONE), store_outputs=store)
    return _finish(view, status, Action(ActionKind.REQUEUE, attempt=view.attempt))


def _outputs(view: TaskView, ctx: Context, lm: Any, fields: dict[str, Any], message: str) -> tuple[tuple[str, bytes] | None, str]:
    """Inline small outputs; point at large ones (``outputPrefix``) instead."""
    import json

    plain = answers.outputs_json(lm)
    size = len(json.dumps(plain, separators=(",", ":")).encode())
    if size <= ctx.settings.max_inline_output_bytes:
        fields["outputs"] = plain
        return None, message
    assert ctx.prepared is not None
    prefix = ctx.prepared.spec.output_prefix
    limit = format_bytes(ctx.settings.max_inline_output_bytes)
    if not prefix:
        return None, f"{message}; outputs ({format_bytes(size)}) exceed {limit} and spec.outputPrefix is not set: not stored"
    ref = prefix.rstrip("/") + "/outputs.pb"
    fields["outputsRef"] = ref
    return (ref, lm.SerializeToString()), f"{message}; outputs ({format_bytes(size)}) exceed {limit}: stored at {ref}"


def format_bytes(n: int) -> str:
    """``64 KiB`` style sizes for messages."""
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"


def _retry(view: TaskView, ctx: Context, now: float, agent_message: str) -> Decision:
    assert ctx.prepared is not None
    attempt, limit = view.attempt, ctx.prepared.spec.max_attempts
    said = f": {agent_message}" if agent_message else ""
    if attempt >= limit:
        return fail(view, ctx, now, Reason.ATTEMPTS_EXHAUSTED,
                    f"attempt {attempt} of {limit} failed (retryable){said}; no attempts left (spec.maxAttempts)")
    status = make_status(
        view, ctx, now, phase=Phase.PENDING, reason=Reason.RETRYING,
        message=f"attempt {attempt} of {limit} failed (retryable){said}; starting attempt {attempt + 1}",
        attempt=attempt + 1, resourceMeta=None, transientFailures=None, logLinks=None, customInfo=None,
    )
    event = EventRecord("Warning", str(Reason.RETRYING), str(status["message"]))
    return Decision(Action(ActionKind.REQUEUE, attempt=attempt + 1), status=_changed(view, status),
                    events=(event,), defer_write=True)


def _absorb_delete(view: TaskView, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    failed = answer.timed_out or answer.error is not None
    if action.purpose == "timeout":
        if not failed:
            return _timed_out(view, ctx, now, "; the agent's job was deleted")
        err = _error_text(answer, ctx, "delete")
        kind = answers.classify(answer.error) if answer.error is not None else None
        if kind is None or kind.kind == answers.ErrorKind.TRANSIENT:
            return _transient(view, ctx, now, "delete (timeout)", err, kind.retry_after if kind else None)
        return _timed_out(view, ctx, now, f"; the agent's delete failed: {err}")
    if not failed:
        return Decision(Action(ActionKind.RELEASE),
                        events=(EventRecord("Normal", str(Reason.DELETED), "agent's job deleted"),))
    err = _error_text(answer, ctx, "delete")
    retry_after = answer.error.retry_after if isinstance(answer.error, Exception) and hasattr(answer.error, "retry_after") else None
    decision = _transient(view, ctx, now, "delete", err, retry_after)
    event = EventRecord("Warning", str(Reason.DELETE_FAILED),
                        f"agent delete failed, retrying (annotate {names.ANNOTATION_SKIP_AGENT_DELETE}=true to give up): {err}")
    return Decision(decision.action, status=decision.status, events=(event,))


Clock = Callable[[], float]
