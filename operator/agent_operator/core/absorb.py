"""What an agent's answer changes: :func:`absorb` turns the answer to a create / get / do /
delete call (a value, an exception or a time-out) into the next status and action.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flyteidl.core import literals_pb2

from agent_operator.core import answers
from agent_operator.core.clock import format_time
from agent_operator.core.messages import clean, describe_exception
from agent_operator.core.model import Action, ActionKind, Answer, Decision, EventRecord
from agent_operator.core.transitions import (
    Context,
    StatusFields,
    changed,
    deadline_of,
    event_for,
    fail,
    finish,
    format_bytes,
    make_status,
    timed_out,
    transient,
)
from agent_operator.crd import names
from agent_operator.crd.durations import format_duration
from agent_operator.crd.phases import Phase, Reason
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.status import MAX_RESOURCE_META
from agent_operator.sdk import ResourceMeta, TaskExecution
from agent_operator.sdk.errors import ErrorKind


def absorb(view: AgentTask, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
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


def _absorb(view: AgentTask, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
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


def _failed_call(view: AgentTask, ctx: Context, now: float, answer: Answer, call: str,
                 permanent: Callable[[Reason, str], Decision], what: str = "") -> Decision:
    """A call that raised or ran out of time: a transient error (or a time-out: the call may
    have reached the agent, and repeating it is safe with the same key or handle) is retried
    with backoff; any other error is ``permanent(reason, error text)``."""
    err = _error_text(answer, ctx, call)
    kind = answers.classify(answer.error) if answer.error is not None else None
    if kind is None or kind.kind == ErrorKind.TRANSIENT:
        return transient(view, ctx, now, what or call, err, kind.retry_after if kind else None)
    return permanent(kind.reason, err)


def _absorb_create(view: AgentTask, ctx: Context, answer: Answer, now: float) -> Decision:
    if answer.timed_out or answer.error is not None:
        return _failed_call(view, ctx, now, answer, "create",
                            lambda reason, err: fail(view, ctx, now, reason, f"create failed: {err}"))
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
    if len(signed) > MAX_RESOURCE_META:
        return fail(view, ctx, now, Reason.AGENT_ERROR,
                    f"create returned a {type(meta).__name__} of {format_bytes(len(encoded))}; status.resourceMeta "
                    f"holds at most {format_bytes(MAX_RESOURCE_META)} once signed (the job's handle cannot be kept)")
    status = make_status(
        view, ctx, now, phase=Phase.QUEUED, reason=Reason.CREATED,
        message=f"attempt {view.attempt}: job created", resource_meta=signed, attempt=view.attempt,
        start_time=view.status.start_time or format_time(now), transient_failures=None,
    )
    # deferred: merged with the status after the first get (one write instead of two)
    return Decision(Action(ActionKind.GET, attempt=view.attempt), status=changed(view, status),
                    events=event_for(view, status), defer_write=True)


def _absorb_resource(view: AgentTask, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    what = "do" if action.kind == ActionKind.DO else "get"
    if answer.timed_out and action.kind == ActionKind.DO:
        deadline = deadline_of(view, ctx)
        if deadline is not None and now >= deadline:
            return timed_out(view, ctx, now, "while the sync agent was running")
        return fail(view, ctx, now, Reason.AGENT_ERROR, "do did not finish within the operator's call limit")
    if answer.timed_out or answer.error is not None:
        return _failed_call(view, ctx, now, answer, what,
                            lambda reason, err: fail(view, ctx, now, reason, f"{what} failed: {err}"))
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
    fields: StatusFields = {
        "transient_failures": None,
        "log_links": answers.log_links(resource),
        "custom_info": answers.custom_info(resource),
        "start_time": view.status.start_time or format_time(now),
    }
    message = answers.message_of(resource) or f"agent reports {phase.value}"
    store = None
    if phase == Phase.SUCCEEDED:
        assert ctx.prepared is not None
        try:
            lm = answers.outputs_literal_map(resource, ctx.prepared.template())
        except Exception as e:  # noqa: BLE001 - outputs the task's interface cannot hold
            return fail(view, ctx, now, Reason.AGENT_ERROR, f"outputs: {describe_exception(e, ctx.secret_values)}")
        if lm is not None:
            store, message = _outputs(ctx, lm, fields, message)
    status = make_status(view, ctx, now, phase=phase, reason=answers.PHASE_REASONS[phase], message=message,
                         attempt=view.attempt if action.kind == ActionKind.DO else None, **fields)
    if phase.terminal:
        return finish(view, status, Action(ActionKind.DONE), store_outputs=store)
    return finish(view, status, Action(ActionKind.REQUEUE, attempt=view.attempt))


def _outputs(ctx: Context, lm: literals_pb2.LiteralMap, fields: StatusFields,
             message: str) -> tuple[tuple[str, bytes] | None, str]:
    """Inline small outputs; point at large ones (``outputPrefix``) instead."""
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
    fields["outputs_ref"] = ref
    return (ref, lm.SerializeToString()), f"{message}; outputs ({format_bytes(size)}) exceed {limit}: stored at {ref}"


def _retry(view: AgentTask, ctx: Context, now: float, agent_message: str) -> Decision:
    assert ctx.prepared is not None
    attempt, limit = view.attempt, ctx.prepared.spec.max_attempts
    said = f": {agent_message}" if agent_message else ""
    if attempt >= limit:
        return fail(view, ctx, now, Reason.ATTEMPTS_EXHAUSTED,
                    f"attempt {attempt} of {limit} failed (retryable){said}; no attempts left (spec.maxAttempts)")
    status = make_status(
        view, ctx, now, phase=Phase.PENDING, reason=Reason.RETRYING,
        message=f"attempt {attempt} of {limit} failed (retryable){said}; starting attempt {attempt + 1}",
        attempt=attempt + 1, resource_meta=None, transient_failures=None, log_links=(), custom_info=None,
    )
    event = EventRecord("Warning", str(Reason.RETRYING), str(status.message))
    return Decision(Action(ActionKind.REQUEUE, attempt=attempt + 1), status=changed(view, status),
                    events=(event,), defer_write=True)


def _absorb_delete(view: AgentTask, ctx: Context, action: Action, answer: Answer, now: float) -> Decision:
    failed = answer.timed_out or answer.error is not None
    if action.purpose == "timeout":
        if not failed:
            return timed_out(view, ctx, now, "; the agent's job was deleted")
        return _failed_call(view, ctx, now, answer, "delete",
                            lambda _, err: timed_out(view, ctx, now, f"; the agent's delete failed: {err}"),
                            what="delete (timeout)")
    if not failed:
        return Decision(Action(ActionKind.RELEASE),
                        events=(EventRecord("Normal", str(Reason.DELETED), "agent's job deleted", final=True),))
    err = _error_text(answer, ctx, "delete")
    retry_after = answer.error.retry_after if isinstance(answer.error, Exception) and hasattr(answer.error, "retry_after") else None
    decision = transient(view, ctx, now, "delete", err, retry_after)
    event = EventRecord("Warning", str(Reason.DELETE_FAILED),
                        f"agent delete failed, retrying (annotate {names.ANNOTATION_SKIP_AGENT_DELETE}=true to give up): {err}")
    return Decision(decision.action, status=decision.status, events=(event,))
