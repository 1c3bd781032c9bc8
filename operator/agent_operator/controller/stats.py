"""Periodic gauges: tasks per (agent, phase) and the scheduler's queue depth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent_operator.controller import hooks

STATS_PERIOD = 15.0


def tasks_by_phase(bodies: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """How many cached tasks are in each (agent, phase)."""
    counts: dict[tuple[str, str], int] = {}
    for body in bodies:
        status = body.get("status") or {}
        k = (str((status.get("agent") or {}).get("name", "")), str(status.get("phase", "")))
        counts[k] = counts.get(k, 0) + 1
    return counts


async def report_stats(bodies: Callable[[], Iterable[Mapping[str, Any]]], depth: Callable[[], int],
                       period: float = STATS_PERIOD) -> None:
    """Publish the gauges every ``period`` seconds until cancelled."""
    while True:
        hooks.set_tasks_by_phase(tasks_by_phase(bodies()))
        hooks.set_queue_depth(depth())
        await asyncio.sleep(period)
