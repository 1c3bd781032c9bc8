"""Transitions of an AgentTask's status: the helpers :mod:`~agent_operator.core.reconcile`
and :mod:`~agent_operator.core.absorb` share to build the next
:class:`~agent_operator.crd.status.AgentTaskStatus` (phase/reason/message with kstatus
conditions, failures, transient-error backoff, timing) and the decision that writes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from agent_operator.core import answers, conditions
from agent_operator.core.clock import format_time, parse_time
from agent_operator.core.messages import clean, scrub, scrub_json
from agent_operator.core.model import Action, ActionKind, Decision, EventRecord
from agent_operator.core.context import Context, Settings
from agent_operator.crd.durations import format_duration
from agent_operator.crd.phases import Phase, Reason
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.spec import AgentTaskSpec
from agent_operator.crd.status import AgentTaskStatus, LogLink

if TYPE_CHECKING:
    from typing import Unpack

#: upper bound on an agent's retry_after hint (seconds)
MAX_RETRY_AFTER = 3600.0

__all__ = ["Context", "Settings", "backoff", "fail", "finish", "make_status", "poll_interval", "transient"]


def jitter(ctx: Context, task: AgentTask, base: float) -> float:
    """Deterministic jitter per object and call, so re-deciding gives the same delay (CRC-32
    of uid and call time: evenly spread, and a tenth of a SHA-256 on a path every poll takes)."""
    frac = zlib.crc32(f"{task.uid}/{ctx.last_call}".encode()) / 2**32
    return base * ctx.settings.jitter * frac


def spread(task: AgentTask) -> float:
    """A stable fraction in [0, 1) per object."""
    return int.from_bytes(hashlib.sha256(task.uid.encode()).digest()[:4], "big") / 2**32


def poll_interval(task: AgentTask, ctx: Context) -> float:
    """Agent hint > spec.pollInterval > agent default > operator default; floored."""
    s = ctx.settings
    chosen = answers.next_poll_hint(task.status.custom_info)
    if chosen is None and ctx.prepared is not None:
        chosen = ctx.prepared.spec.poll_interval_seconds or ctx.prepared.poll_interval
    return float(max(chosen or s.default_poll_interval, s.min_poll_interval))


def backoff(failures: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential backoff after ``failures`` transient errors in a row (>= the agent's hint)."""
    # the exponent is capped: transientFailures comes from status, which anyone may edit
    delay = min(settings.backoff_base * 2.0 ** min(max(failures - 1, 0), 64), settings.backoff_max)
    hint = float(retry_after) if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) else 0.0
    # an agent's hint may exceed our own cap, within reason (a Retry-After of days is a bug)
    return float(max(delay, min(hint, MAX_RETRY_AFTER)))


def _spec_of(ctx: Context) -> AgentTaskSpec | None:
    """The decoded spec: of a prepared task, or of one waiting for its agent to be known."""
    if ctx.prepared is not None:
        return ctx.prepared.spec
    return ctx.failure.spec if ctx.failure is not None else None


def deadline_of(task: AgentTask, ctx: Context) -> float | None:
    """When ``spec.timeout`` runs out: counted from the first agent call (else creation)."""
    spec = _spec_of(ctx)
    seconds = spec.timeout_seconds if spec is not None else None
    if seconds is None:
        return None
    start = task.status.start_time
    begin = parse_time(start) if start else task.metadata.creation_time
    return None if begin is None else begin + seconds


def delay_from_last_call(ctx: Context, now: float, wait: float) -> float:
    """What is left of ``wait`` since the last agent call (0 when none was made here)."""
    if ctx.last_call is None:
        return 0.0
    return max(0.0, ctx.last_call + wait - now)


def failures_of(task: AgentTask) -> int:
    """Consecutive transient failures recorded in status."""
    return task.status.transient_failures or 0


def _scrubbed(status: AgentTaskStatus, secrets: tuple[str, ...]) -> StatusFields:
    """What the agent reported goes to status too: no Secret value may reach it."""
    links = tuple(dataclasses.replace(link, name=scrub(link.name, secrets), uri=scrub(link.uri, secrets))
                  for link in status.log_links)
    return {"log_links": links,
            "outputs": scrub_json(status.outputs, secrets) if status.outputs is not None else None,
            "custom_info": scrub_json(status.custom_info, secrets) if status.custom_info is not None else None}


class StatusFields(TypedDict, total=False):
    """The fields of :class:`AgentTaskStatus` an agent's answer changes (None / () clears one)."""

    resource_meta: str | None
    start_time: str | None
    transient_failures: int | None
    log_links: tuple[LogLink, ...]
    custom_info: Mapping[str, Any] | None
    outputs: Mapping[str, Any] | None
    outputs_ref: str | None


def make_status(task: AgentTask, ctx: Context, now: float, *, phase: Phase, reason: Reason | str, message: str,
                stalled: tuple[str, str] | None = None, attempt: int | None = None,
                **fields: Unpack[StatusFields]) -> AgentTaskStatus:
    """The full new status: the stored one with ``fields`` replaced, then phase, reason,
    message and the kstatus conditions that follow from them (``attempt`` None: as stored,
    else the task's current one)."""
    old = task.status
    message = clean(message, ctx.secret_values)
    if ctx.secret_values:
        fields = {**fields, **_scrubbed(dataclasses.replace(old, **fields), ctx.secret_values)}
    if attempt is None:
        attempt = old.attempt if old.attempt is not None else task.attempt
    wanted = conditions.desired(phase, str(reason), message, stalled=stalled is not None,
                                stalled_reason=stalled[0] if stalled else "",
                                stalled_message=clean(stalled[1], ctx.secret_values) if stalled else "")
    # one replace: building a status is on the path of every poll
    return dataclasses.replace(
        old, **fields, phase=phase, reason=str(reason), message=message, observed_generation=task.generation,
        agent=ctx.prepared.info if ctx.prepared is not None else old.agent,
        completion_time=old.completion_time or (format_time(now) if phase.terminal else None),
        attempt=attempt,
        conditions=conditions.build(old.conditions, wanted, generation=task.generation, now=now))


def changed(task: AgentTask, status: AgentTaskStatus) -> AgentTaskStatus | None:
    """``status`` unless it is what is stored already (then no write)."""
    return None if status == task.status else status


def event_for(task: AgentTask, status: AgentTaskStatus) -> tuple[EventRecord, ...]:
    """One Event per phase or reason transition."""
    if (task.status.phase, task.status.reason) == (status.phase, status.reason):
        return ()
    failed = status.phase in (Phase.FAILED, Phase.TIMED_OUT) or bool(status.transient_failures)
    return (EventRecord("Warning" if failed else "Normal", str(status.reason), str(status.message),
                        final=status.terminal),)


def finish(task: AgentTask, status: AgentTaskStatus, action: Action, **extra: Any) -> Decision:
    """The decision to write ``status`` (if it changed), with its Event, then ``action``."""
    return Decision(action=action, status=changed(task, status), events=event_for(task, status), **extra)


def fail(task: AgentTask, ctx: Context, now: float, reason: Reason, message: str,
         phase: Phase = Phase.FAILED) -> Decision:
    """A terminal status with ``reason`` and nothing more to do."""
    status = make_status(task, ctx, now, phase=phase, reason=reason, message=message, transient_failures=None)
    return finish(task, status, Action(ActionKind.DONE))


def transient(task: AgentTask, ctx: Context, now: float, what: str, error: str, retry_after: float | None,
              action: ActionKind = ActionKind.REQUEUE) -> Decision:
    """Count a transient failure; Reconciling with the error, Stalled once over budget."""
    n = failures_of(task) + 1
    delay = backoff(n, ctx.settings, retry_after)
    phase = task.status.phase or Phase.PENDING
    msg = f"{what} failed with a transient error ({n} in a row), retrying in {format_duration(delay)}: {error}"
    stalled = (str(Reason.AGENT_UNAVAILABLE), msg) if n >= ctx.settings.transient_budget else None
    status = make_status(task, ctx, now, phase=phase, reason=Reason.AGENT_UNAVAILABLE, message=msg,
                         stalled=stalled, transient_failures=n)
    return finish(task, status, Action(action, delay=delay, attempt=task.attempt))


def timed_out(task: AgentTask, ctx: Context, now: float, detail: str) -> Decision:
    """Phase TimedOut: ``spec.timeout`` elapsed (``detail`` says while doing what)."""
    spec = _spec_of(ctx)
    timeout = spec.timeout if spec is not None else "?"
    return fail(task, ctx, now, Reason.TIMED_OUT, f"spec.timeout ({timeout}) elapsed {detail}", Phase.TIMED_OUT)


def format_bytes(n: int) -> str:
    """``64 KiB`` style sizes for messages."""
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"
