"""Values passed between the reconcile core and its drivers (controller, run-local).

All frozen: a decision is computed from a snapshot of the object and never mutated; the
driver applies it and feeds the result back in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_operator.crd import names


@dataclass(frozen=True)
class TaskView:
    """An AgentTask as the core sees it: identity, raw spec, status and lifecycle metadata."""

    namespace: str
    name: str
    uid: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    generation: int = 1
    resource_version: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deletion_requested: bool = False
    creation_time: float | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "TaskView":
        """Build from an API object (dict as the API server returns it)."""
        from agent_operator.core.clock import parse_time

        meta = body.get("metadata") or {}
        created = meta.get("creationTimestamp")
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            generation=int(meta.get("generation") or 1),
            resource_version=str(meta.get("resourceVersion") or ""),
            annotations=dict(meta.get("annotations") or {}),
            labels=dict(meta.get("labels") or {}),
            finalizers=tuple(meta.get("finalizers") or ()),
            deletion_requested=bool(meta.get("deletionTimestamp")),
            creation_time=parse_time(created) if created else None,
        )

    @property
    def ref(self) -> str:
        """``namespace/name`` for messages and logs."""
        return f"{self.namespace}/{self.name}"

    @property
    def has_finalizer(self) -> bool:
        """True when our finalizer is on the object."""
        return names.FINALIZER in self.finalizers

    @property
    def attempt(self) -> int:
        """The current attempt (1 before the first status write)."""
        value = self.status.get("attempt")
        return int(value) if isinstance(value, int) and value >= 1 else 1

    @property
    def create_pending_attempt(self) -> int | None:
        """The attempt whose ``create`` was about to be called, from the annotation."""
        raw = self.annotations.get(names.ANNOTATION_CREATE_PENDING)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class AgentInfo:
    """What the core needs to know about the agent serving a task."""

    name: str
    task_type: str
    task_type_version: int = 0
    sync: bool = False
    #: the agent class's own default poll interval, if it declares one
    poll_interval: float | None = None

    def status(self) -> dict[str, Any]:
        """``status.agent``."""
        return {"name": self.name, "taskType": self.task_type, "taskTypeVersion": self.task_type_version,
                "sync": self.sync}


class ActionKind(str, enum.Enum):
    """What the driver does next."""

    CREATE = "create"            # call agent.create for ``attempt`` (after the metadata patch)
    GET = "get"                  # call agent.get after ``delay`` seconds
    DELETE = "delete"            # call agent.delete (deletion or timeout), after ``delay``
    DO = "do"                    # call sync agent.do for ``attempt``
    REQUEUE = "requeue"          # decide again after ``delay`` seconds (backoff, timers)
    RELEASE = "release"          # remove our finalizer (deletion finished)
    DONE = "done"                # nothing to do until the object changes


@dataclass(frozen=True)
class Action:
    """The next step and when to take it."""

    kind: ActionKind
    delay: float = 0.0
    attempt: int = 1
    #: why a DELETE happens: "deletion" (finalizer) or "timeout"
    purpose: str = ""


@dataclass(frozen=True)
class EventRecord:
    """A Kubernetes Event to emit (the driver deduplicates consecutive equal ones)."""

    type: str  # Normal | Warning
    reason: str
    message: str
    #: ends the task's story (a terminal phase, the job deleted or orphaned): the Events a
    #: ``--events warnings`` operator still posts next to the Warnings
    final: bool = False


@dataclass(frozen=True)
class MetadataChange:
    """Changes to ``metadata`` (one patch): finalizer add/remove, create-pending marker."""

    add_finalizer: bool = False
    remove_finalizer: bool = False
    create_pending: int | None = None


@dataclass(frozen=True)
class Decision:
    """The core's answer: new status (None: unchanged), metadata change, events, next action."""

    action: Action
    status: Mapping[str, Any] | None = None
    metadata: MetadataChange | None = None
    events: tuple[EventRecord, ...] = ()
    #: outputs too large for status: (where, LiteralMap bytes) for the driver to store
    store_outputs: tuple[str, bytes] | None = None
    #: the status may be held back and merged into the next write, because the action
    #: right after it is an immediate agent call (see core/reconcile.py: write budget)
    defer_write: bool = False


@dataclass(frozen=True)
class Answer:
    """What an agent call returned: a value or an exception, and whether it ran out of time."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
