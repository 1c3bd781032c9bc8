"""Time as the API server writes it (RFC 3339, seconds, UTC) and as the core computes (epoch floats)."""

from __future__ import annotations

import datetime as dt
import functools

from agent_operator.crd.durations import parse_time

__all__ = ["format_time", "parse_time"]


def format_time(ts: float) -> str:
    """``2026-01-02T03:04:05Z`` (metav1.Time precision: whole seconds)."""
    return _format_second(int(ts))


@functools.lru_cache(maxsize=256)  # a status holds several stamps of the same second (bench: strftime was 1.3%)
def _format_second(second: int) -> str:
    return dt.datetime.fromtimestamp(second, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
