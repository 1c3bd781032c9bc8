"""Values passed between the reconcile core and its drivers (controller, run-local).

The object itself is :class:`agent_operator.crd.resource.AgentTask` and the status the
core computes an :class:`~agent_operator.crd.status.AgentTaskStatus`: the typed model
that also generates the CRD.  All frozen: a decision is computed from a snapshot of the object and never mutated; the
driver applies it and feeds the result back in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from agent_operator.crd.status import AgentTaskStatus


class ActionKind(str, enum.Enum):
    """What the driver does next."""

    CREATE = "create"            # call agent.create for ``attempt`` (after the metadata patch)
    GET = "get"                  # call agent.get after ``delay`` seconds
    DELETE = "delete"            # call agent.delete (deletion or timeout), after ``delay``
    DO = "do"                    # call sync agent.do for ``attempt``
    REQUEUE = "requeue"          # decide again after ``delay`` seconds (backoff, timers)
    RELEASE = "release"          # remove our finalizer (deletion finished)
    DONE = "done"                # nothing to do until the object changes


@dataclass(frozen=True, slots=True)
class Action:
    """The next step and when to take it."""

    kind: ActionKind
    delay: float = 0.0
    attempt: int = 1
    #: why a DELETE happens: "deletion" (finalizer) or "timeout"
    purpose: str = ""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A Kubernetes Event to emit (the driver deduplicates consecutive equal ones)."""

    type: str  # Normal | Warning
    reason: str
    message: str
    #: ends the task's story (a terminal phase, the job deleted or orphaned): the Events a
    #: ``--events warnings`` operator still posts next to the Warnings
    final: bool = False


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """Changes to ``metadata`` (one patch): our finalizer and the create-pending marker
    (the finalizer is removed by :attr:`ActionKind.RELEASE`, a patch of its own)."""

    add_finalizer: bool = False
    create_pending: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The core's answer: new status (None: unchanged), metadata change, events, next action."""

    action: Action
    status: AgentTaskStatus | None = None
    metadata: MetadataChange | None = None
    events: tuple[EventRecord, ...] = ()
    #: outputs too large for status: (where, LiteralMap bytes) for the driver to store
    store_outputs: tuple[str, bytes] | None = None
    #: the status may be held back and merged into the next write, because the action
    #: right after it is an immediate agent call (see core/reconcile.py: write budget)
    defer_write: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """What an agent call returned: a value or an exception, and whether it ran out of time."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
