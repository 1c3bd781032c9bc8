"""Prometheus metrics of uid sharding (``run --shards``), on the same ``/metrics`` endpoint.

Kept out of :mod:`agent_operator.observability.metrics` so that module's reference table
stays about the single-replica operator; ``docs/scaling.md`` lists these (tested).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

PREFIX: Final = "agent_operator_shard"

SLOTS_DRIVEN = Gauge(f"{PREFIX}_slots", "Hash slots this replica drives now (0 while it hands over).")
MEMBERS = Gauge(f"{PREFIX}_members", "Live members of the shard ring, as this replica observes them.")
SERVER_SIDE = Gauge(
    f"{PREFIX}_server_side",
    "1 when the API server echoed the shard selector (server-side filtering), 0 when this replica "
    "filters client-side (ShardedListAndWatch off or unsupported).",
)
EVENTS = Counter(f"{PREFIX}_watch_events_total", "AgentTask watch events received (before any client-side filter).")
FILTERED = Counter(
    f"{PREFIX}_filtered_events_total",
    "AgentTask watch events dropped client-side because their uid hash is outside this replica's slots.",
)
HANDOVERS = Counter(
    f"{PREFIX}_handovers_total", "Slot ownership changes written by this replica, by kind (claim|release|confirm|reap).",
    ["kind"],
)

#: every metric family this module exports (docs/scaling.md is tested against it)
METRICS: Final = (
    f"{PREFIX}_slots",
    f"{PREFIX}_members",
    f"{PREFIX}_server_side",
    f"{PREFIX}_watch_events_total",
    f"{PREFIX}_filtered_events_total",
    f"{PREFIX}_handovers_total",
)


def record_event(kept: bool) -> None:
    """One watch event arrived; ``kept``: it is in this replica's slots."""
    EVENTS.inc()
    if not kept:
        FILTERED.inc()
