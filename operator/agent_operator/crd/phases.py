"""Phases, condition types and reasons of an AgentTask.

The phases are flyteidl's ``TaskExecution.Phase`` spelled as Kubernetes users expect
(CamelCase), plus ``Pending`` (accepted, no agent call yet) and ``TimedOut`` (the
operator, not the agent, ended the task).  Conditions follow kstatus: ``Reconciling``
and ``Stalled`` are "abnormal-true" conditions, ``Ready`` is the summary, and
``Succeeded`` exists so that ``kubectl wait --for=condition=Succeeded`` works.
"""

from __future__ import annotations

import enum


class Phase(str, enum.Enum):
    """``status.phase``."""

    PENDING = "Pending"
    QUEUED = "Queued"
    WAITING_FOR_RESOURCES = "WaitingForResources"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"
    TIMED_OUT = "TimedOut"

    @property
    def terminal(self) -> bool:
        """True once the task can never change phase again."""
        return self in TERMINAL_PHASES

    def __str__(self) -> str:
        return self.value


TERMINAL_PHASES: frozenset[Phase] = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.TIMED_OUT})
ALL_PHASES: tuple[str, ...] = tuple(p.value for p in Phase)


class ConditionType(str, enum.Enum):
    """``status.conditions[].type``."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    SUCCEEDED = "Succeeded"

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Machine-readable reasons used in conditions and Events (CamelCase, as Kubernetes does)."""

    CREATED = "Created"
    QUEUED = "Queued"
    WAITING_FOR_RESOURCES = "WaitingForResources"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"
    TIMED_OUT = "TimedOut"
    RETRYING = "Retrying"
    ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
    AGENT_NOT_FOUND = "AgentNotFound"
    INVALID_SPEC = "InvalidSpec"
    AGENT_ERROR = "AgentError"
    AGENT_UNAVAILABLE = "AgentUnavailable"
    RESOURCE_META_TAMPERED = "ResourceMetaTampered"
    DELETE_FAILED = "AgentDeleteFailed"
    DELETED = "AgentDeleted"
    ORPHANED = "Orphaned"
    CREATE_RESUMED = "CreateResumed"

    def __str__(self) -> str:
        return self.value
