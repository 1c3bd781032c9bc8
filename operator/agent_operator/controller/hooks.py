"""Extension hooks owned by other rooms: metrics (observability), health, leader election.

The controller calls these names; until the owning module exists (or if it fails to
import) the calls are no-ops, so the operator runs with whatever is installed.
"""

from __future__ import annotations

import importlib
import logging
from functools import lru_cache
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        log.debug("optional module %s not available: %s", name, e)
        return None


def _call(module: str, func: str, *args: Any, **kwargs: Any) -> Any:
    mod = _module(module)
    fn = getattr(mod, func, None) if mod is not None else None
    if fn is None:
        return None
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - metrics must never break reconciliation
        log.debug("hook %s.%s failed", module, func, exc_info=True)
        return None


METRICS = "agent_operator.observability.metrics"


def observe_agent_call(agent: str, method: str, seconds: float, error_kind: str | None) -> None:
    """One agent call finished (error_kind None: it succeeded)."""
    _call(METRICS, "observe_agent_call", agent, method, seconds, error_kind)


def record_transition(agent: str, phase: str) -> None:
    """A task entered ``phase``."""
    _call(METRICS, "record_transition", agent, phase)


def set_tasks_by_phase(counts: dict[tuple[str, str], int]) -> None:
    """Tasks per (agent, phase)."""
    _call(METRICS, "set_tasks_by_phase", counts)


def record_retry(agent: str, reason: str) -> None:
    """A retry (transient error or new attempt)."""
    _call(METRICS, "record_retry", agent, reason)


def record_api_write(verb: str, resource: str) -> None:
    """One write to the API server."""
    _call(METRICS, "record_api_write", verb, resource)


def record_watch_event() -> None:
    """The controller received one AgentTask watch event."""
    _call(METRICS, "record_watch_event")


def record_api_error(method: str, code: int) -> None:
    """One API request failed with HTTP ``code`` (0: no answer)."""
    _call(METRICS, "record_api_error", method, code)


def set_leader(is_leader: bool) -> None:
    """Whether this replica is active (leader, or running without leader election)."""
    _call(METRICS, "set_leader", is_leader)


def set_queue_depth(n: int) -> None:
    """Scheduled tasks waiting for their next step."""
    _call(METRICS, "set_queue_depth", n)


def health_module() -> ModuleType | None:
    """``agent_operator.observability.health`` when installed."""
    return _module("agent_operator.observability.health")


def leader_module() -> ModuleType | None:
    """``agent_operator.ha.leader`` when installed."""
    return _module("agent_operator.ha.leader")


def logging_module() -> ModuleType | None:
    """``agent_operator.observability.logging`` when installed."""
    return _module("agent_operator.observability.logging")
