"""What the controller reports to observability: metrics calls that can never break reconciling.

Plain imports (the layers contract in ``.importlinter`` sees every edge); a metrics call that
raises is logged at debug level and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agent_operator.observability import logging as structured_logging
from agent_operator.observability import metrics

log = logging.getLogger(__name__)


def _call(func: Callable[..., Any], *args: Any) -> None:
    try:
        func(*args)
    except Exception:  # noqa: BLE001 - metrics must never break reconciliation
        log.debug("metrics hook %s failed", getattr(func, "__name__", func), exc_info=True)


def observe_agent_call(agent: str, method: str, seconds: float, error_kind: str | None) -> None:
    """One agent call finished (error_kind None: it succeeded)."""
    _call(metrics.observe_agent_call, agent, method, seconds, error_kind)


def record_transition(agent: str, phase: str) -> None:
    """A task entered ``phase``."""
    _call(metrics.record_transition, agent, phase)


def set_tasks_by_phase(counts: dict[tuple[str, str], int]) -> None:
    """Tasks per (agent, phase)."""
    _call(metrics.set_tasks_by_phase, counts)


def record_retry(agent: str, reason: str) -> None:
    """A retry (transient error or new attempt)."""
    _call(metrics.record_retry, agent, reason)


def record_api_write(verb: str, resource: str) -> None:
    """One write to the API server."""
    _call(metrics.record_api_write, verb, resource)


def record_event_dropped() -> None:
    """An Event was dropped: the queue of Events waiting to be posted was full."""
    _call(metrics.record_event_dropped)


def record_watch_event() -> None:
    """The controller received one AgentTask watch event."""
    _call(metrics.record_watch_event)


def record_api_error(method: str, code: int) -> None:
    """One API request failed with HTTP ``code`` (0: no answer)."""
    _call(metrics.record_api_error, method, code)


def set_leader(is_leader: bool) -> None:
    """Whether this replica is active (leader, or running without leader election)."""
    _call(metrics.set_leader, is_leader)


def set_queue_depth(n: int) -> None:
    """Scheduled tasks waiting for their next step."""
    _call(metrics.set_queue_depth, n)


def logging_module() -> ModuleType:
    """``agent_operator.observability.logging`` (structured logs, per-task log context)."""
    return structured_logging
