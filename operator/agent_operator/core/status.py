"""Building the next status of an AgentTask: policy knobs, the decision context and the
helpers :mod:`~agent_operator.core.reconcile` and :mod:`~agent_operator.core.absorb` share
(phase/reason/message with kstatus conditions, failures, transient-error backoff, timing).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_operator.core import answers, conditions
from agent_operator.core.clock import format_time, parse_time
from agent_operator.core.messages import clean, scrub_json
from agent_operator.core.model import Action, ActionKind, Decision, EventRecord, TaskView
from agent_operator.core.prepare import PrepareFailure, Prepared
from agent_operator.core.signing import Signer
from agent_operator.crd.durations import format_duration
from agent_operator.crd.phases import TERMINAL_PHASES, Phase, Reason
from agent_operator.crd.spec import AgentTaskSpec

MAX_INLINE_OUTPUT_BYTES = 64 * 1024
#: upper bound on an agent's retry_after hint (seconds)
MAX_RETRY_AFTER = 3600.0


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


def phase_of(view: TaskView) -> Phase | None:
    try:
        return Phase(view.status.get("phase"))
    except ValueError:
        return None


def jitter(ctx: Context, view: TaskView, base: float) -> float:
    """Deterministic jitter per object and call, so re-deciding gives the same delay."""
    seed = f"{view.uid}/{ctx.last_call}".encode()
    frac = int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") / 2**32
    return base * ctx.settings.jitter * frac


def spread(view: TaskView) -> float:
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
    hint = float(retry_after) if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) else 0.0
    # an agent's hint may exceed our own cap, within reason (a Retry-After of days is a bug)
    return float(max(delay, min(hint, MAX_RETRY_AFTER)))


def _spec_of(ctx: Context) -> AgentTaskSpec | None:
    """The decoded spec: of a prepared task, or of one waiting for its agent to be known."""
    if ctx.prepared is not None:
        return ctx.prepared.spec
    return ctx.failure.spec if ctx.failure is not None else None


def deadline_of(view: TaskView, ctx: Context) -> float | None:
    spec = _spec_of(ctx)
    seconds = spec.timeout_seconds if spec is not None else None
    if seconds is None:
        return None
    start = view.status.get("startTime")
    begin = parse_time(start) if isinstance(start, str) else view.creation_time
    return None if begin is None else begin + seconds


def delay_from_last_call(ctx: Context, now: float, wait: float) -> float:
    if ctx.last_call is None:
        return 0.0
    return max(0.0, ctx.last_call + wait - now)


def failures_of(view: TaskView) -> int:
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


def changed(view: TaskView, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return None if dict(status) == dict(view.status) else status


def event_for(view: TaskView, status: Mapping[str, Any]) -> tuple[EventRecord, ...]:
    """One Event per phase or reason transition."""
    old = (view.status.get("phase"), view.status.get("reason"))
    new = (status.get("phase"), status.get("reason"))
    if old == new:
        return ()
    failed = status.get("phase") in (Phase.FAILED.value, Phase.TIMED_OUT.value) or bool(status.get("transientFailures"))
    final = status.get("phase") in TERMINAL_PHASES  # str enum: the stored strings match
    return (EventRecord("Warning" if failed else "Normal", str(status.get("reason")), str(status.get("message")),
                        final=final),)


def finish(view: TaskView, status: dict[str, Any], action: Action, **extra: Any) -> Decision:
    return Decision(action=action, status=changed(view, status), events=event_for(view, status), **extra)


def fail(view: TaskView, ctx: Context, now: float, reason: Reason, message: str, phase: Phase = Phase.FAILED) -> Decision:
    """A terminal status with ``reason`` and nothing more to do."""
    status = make_status(view, ctx, now, phase=phase, reason=reason, message=message, transientFailures=None)
    return finish(view, status, Action(ActionKind.DONE))


def transient(view: TaskView, ctx: Context, now: float, what: str, error: str, retry_after: float | None,
               action: ActionKind = ActionKind.REQUEUE) -> Decision:
    """Count a transient failure; Reconciling with the error, Stalled once over budget."""
    n = failures_of(view) + 1
    delay = backoff(n, ctx.settings, retry_after)
    phase = phase_of(view) or Phase.PENDING
    msg = f"{what} failed with a transient error ({n} in a row), retrying in {format_duration(delay)}: {error}"
    stalled = (str(Reason.AGENT_UNAVAILABLE), msg) if n >= ctx.settings.transient_budget else None
    status = make_status(view, ctx, now, phase=phase, reason=Reason.AGENT_UNAVAILABLE, message=msg,
                         stalled=stalled, transientFailures=n)
    return finish(view, status, Action(action, delay=delay, attempt=view.attempt))


def timed_out(view: TaskView, ctx: Context, now: float, detail: str) -> Decision:
    spec = _spec_of(ctx)
    timeout = spec.timeout if spec is not None else "?"
    return fail(view, ctx, now, Reason.TIMED_OUT, f"spec.timeout ({timeout}) elapsed {detail}", Phase.TIMED_OUT)


def format_bytes(n: int) -> str:
    """``64 KiB`` style sizes for messages."""
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"
