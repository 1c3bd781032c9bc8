"""Prometheus metrics of the operator (served on ``/metrics`` by :mod:`.health`).

The controller calls the small functions below; it never touches a metric object, so the
names, labels and buckets live in this one module and the README's metrics reference can be
checked against :data:`METRICS`.  All metrics go to prometheus-client's default registry, so
the process/GC collectors and anything a bridged library registers appear on ``/metrics`` too.

Label values are bounded by construction: agents come from the registry, phases and reasons
from fixed enums, verbs/resources from the controller's code.  Error kinds outside
:data:`ERROR_KINDS` are folded into ``other`` so a bug cannot explode the series count.
"""

from __future__ import annotations

import threading
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX: Final = "agent_operator"

#: error kinds an agent call can end with (``observe_agent_call(error_kind=...)``)
ERROR_KINDS: Final = frozenset({"transient", "permanent"})

#: latency buckets for agent calls: in-process agents answer in microseconds, remote/HTTP
#: agents in tens of milliseconds to tens of seconds
CALL_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TASKS = Gauge(
    f"{PREFIX}_tasks", "AgentTasks known to this replica, by agent and phase.",
    ["agent", "phase"],
)
TRANSITIONS = Counter(
    f"{PREFIX}_task_transitions_total", "Phase transitions written, by agent and the phase entered.",
    ["agent", "phase"],
)
AGENT_CALL_SECONDS = Histogram(
    f"{PREFIX}_agent_call_duration_seconds", "Latency of agent calls (create/get/delete/do), by agent and method.",
    ["agent", "method"], buckets=CALL_BUCKETS,
)
AGENT_ERRORS = Counter(
    f"{PREFIX}_agent_errors_total", "Agent calls that raised, by agent, method and kind (transient|permanent).",
    ["agent", "method", "kind"],
)
RETRIES = Counter(
    f"{PREFIX}_retries_total", "Retries scheduled (transient errors, retryable failures), by agent and reason.",
    ["agent", "reason"],
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_reconcile_queue_depth", "Tasks waiting in the poll scheduler (due or not yet due).",
)
API_WRITES = Counter(
    f"{PREFIX}_api_writes_total", "Writes this replica sent to the Kubernetes API, by verb and resource.",
    ["verb", "resource"],
)
LEADER = Gauge(
    f"{PREFIX}_leader", "1 while this replica holds the leader Lease (or runs without leader election), else 0.",
)
BUILD = Info(f"{PREFIX}_build", "Version of the running operator.")
WATCH_EVENTS = Counter(
    f"{PREFIX}_watch_events_total",
    "AgentTask watch events (and initial-listing items) this replica received; every status write "
    "echoes back as one, so writes without events mean a dead watch.",
)
API_ERRORS = Counter(
    f"{PREFIX}_api_errors_total",
    "Kubernetes API requests that failed, by HTTP method and status code (0: no answer).",
    ["method", "code"],
)
EVENTS_DROPPED = Counter(
    f"{PREFIX}_events_dropped_total",
    "Kubernetes Events dropped because too many were waiting to be posted (the status conditions "
    "and the log still carry every transition).",
)

#: every metric family name this module exports (the README reference is tested against it)
METRICS: Final = (
    f"{PREFIX}_tasks",
    f"{PREFIX}_task_transitions_total",
    f"{PREFIX}_agent_call_duration_seconds",
    f"{PREFIX}_agent_errors_total",
    f"{PREFIX}_retries_total",
    f"{PREFIX}_reconcile_queue_depth",
    f"{PREFIX}_api_writes_total",
    f"{PREFIX}_leader",
    f"{PREFIX}_build_info",
    f"{PREFIX}_watch_events_total",
    f"{PREFIX}_api_errors_total",
    f"{PREFIX}_events_dropped_total",
)

_tasks_lock = threading.Lock()
_tasks_keys: set[tuple[str, str]] = set()


def observe_agent_call(agent: str, method: str, seconds: float, error_kind: str | None) -> None:
    """Record one agent call: its latency, and its error kind when it raised.

    ``error_kind`` is ``None`` for success, else ``"transient"`` or ``"permanent"`` (anything
    else is counted as ``"other"``).
    """
    AGENT_CALL_SECONDS.labels(agent, method).observe(max(0.0, seconds))
    if error_kind is not None:
        kind = error_kind if error_kind in ERROR_KINDS else "other"
        AGENT_ERRORS.labels(agent, method, kind).inc()


def record_transition(agent: str, phase: str) -> None:
    """Count a task entering ``phase`` (called once per phase write, not per poll)."""
    TRANSITIONS.labels(agent, phase).inc()


def set_tasks_by_phase(counts: dict[tuple[str, str], int]) -> None:
    """Replace the task gauge with ``{(agent, phase): count}``.

    Series present before but missing now are set to 0 (not removed) so that dashboards
    see a phase drain to zero instead of a gap.
    """
    with _tasks_lock:
        for key in _tasks_keys - counts.keys():
            TASKS.labels(*key).set(0)
        for (agent, phase), n in counts.items():
            TASKS.labels(agent, phase).set(n)
        _tasks_keys.update(counts)


def record_retry(agent: str, reason: str) -> None:
    """Count a retry the operator scheduled for a task of ``agent`` (``reason`` is the status reason)."""
    RETRIES.labels(agent, reason).inc()


def record_api_write(verb: str, resource: str) -> None:
    """Count one write to the API server, e.g. ``("patch", "agenttasks/status")`` or ``("create", "events")``."""
    API_WRITES.labels(verb, resource).inc()


def record_event_dropped() -> None:
    """One Event dropped (queue full)."""
    EVENTS_DROPPED.inc()


def record_watch_event() -> None:
    """Count one AgentTask watch event (or initial-listing item) handed to the controller."""
    WATCH_EVENTS.inc()


def record_api_error(method: str, code: int) -> None:
    """Count one failed API request; ``code`` is the HTTP status, 0 when the server never answered."""
    API_ERRORS.labels(method.upper(), str(code) if 0 <= code <= 599 else "other").inc()


def set_queue_depth(n: int) -> None:
    """Set the number of tasks held by the poll scheduler."""
    QUEUE_DEPTH.set(n)


def set_leader(is_leader: bool) -> None:
    """Set the leader gauge (1 = this replica is active)."""
    LEADER.set(1 if is_leader else 0)


def set_build_info(version: str) -> None:
    """Publish the operator version as ``agent_operator_build_info{version=...} 1``."""
    BUILD.info({"version": version})


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flyte-agent-operator")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


set_build_info(_package_version())


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition body and its content type, for an HTTP handler."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
