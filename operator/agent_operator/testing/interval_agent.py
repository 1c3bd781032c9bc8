"""``test-interval``: the ``test-async`` agent that also ledgers when each call *ends*.

The shared ledger rows (``create``/``get``/``delete``) are written when a call starts; this
agent adds ``<method>@end`` when it returns or raises, so a test can rebuild every call's
interval per process and prove that no two replicas called one task's agent at the same
time (:func:`overlaps`).  Plain methods: the operator runs them in threads, which it cannot
cancel — the hard case for a fenced handover.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2

from agent_operator.core.identity import key_of
from agent_operator.sdk import Resource, ResourceMeta
from agent_operator.testing.agents import TestAsyncAgent, TestJobMeta, task_template
from agent_operator.testing.ledger import Ledger

TASK_TYPE = "test-interval"
SPEC = "agent_operator.testing.interval_agent:TestIntervalAgent"
METHODS = ("create", "get", "delete")


def interval_template(**config: Any) -> dict[str, Any]:
    """A TaskTemplate for this agent (``config`` as for :func:`task_template`)."""
    return dict(task_template("test-async", **config), type=TASK_TYPE)


class TestIntervalAgent(TestAsyncAgent):
    """``test-async`` behaviour, plus an end-of-call ledger row for every call."""

    __test__ = False
    name = "Test Interval Agent"
    task_type = TASK_TYPE

    def _end(self, method: str, key: str, attempt: int) -> None:
        ledger = self._ledger()
        if ledger is not None:
            ledger.append(self.task_type, f"{method}@end", key, attempt, {})

    def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
               inputs: literals_pb2.LiteralMap | None = None, task_execution_metadata: Any = None,
               **kwargs: Any) -> ResourceMeta:
        """Create, then ledger the end."""
        key = key_of(task_execution_metadata)
        attempt = int(task_execution_metadata.task_execution_id.retry_attempt) + 1 if task_execution_metadata else 1
        try:
            return super().create(task_template, output_prefix, inputs, task_execution_metadata, **kwargs)
        finally:
            self._end("create", key, attempt)

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """Get, then ledger the end."""
        assert isinstance(resource_meta, TestJobMeta)
        try:
            return super().get(resource_meta, **kwargs)
        finally:
            self._end("get", resource_meta.key, resource_meta.attempt)

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Delete, then ledger the end."""
        assert isinstance(resource_meta, TestJobMeta)
        try:
            super().delete(resource_meta, **kwargs)
        finally:
            self._end("delete", resource_meta.key, resource_meta.attempt)


@dataclass(frozen=True)
class Interval:
    """One agent call as the ledger saw it (``end`` is the process's death when it never ended)."""

    uid: str
    pid: int
    method: str
    start: float
    end: float


def intervals(ledger: Ledger, died_at: Mapping[int, float] | None = None,
              paused: Mapping[int, tuple[float, float]] | None = None) -> list[Interval]:
    """Every call of this agent, paired start→end per (process, key) (calls of one key never
    run twice at once in one process); an unfinished call lasts until its process died.

    ``paused`` (pid -> SIGSTOP, SIGCONT times): a frozen process executes nothing, so a call
    spanning its pause is split into the part before and the part after it.
    """
    starts: dict[tuple[int, str], list[tuple[str, float]]] = defaultdict(list)
    raw: list[Interval] = []
    for call in ledger.calls(task_type=TASK_TYPE):
        method, _, end = call.method.partition("@")
        uid = call.key.rsplit("-", 1)[0]
        if not end:
            starts[(call.pid, call.key)].append((method, call.ts))
        elif starts[(call.pid, call.key)]:
            m, ts = starts[(call.pid, call.key)].pop(0)
            raw.append(Interval(uid, call.pid, m, ts, call.ts))
    for (pid, key), pending in starts.items():
        for m, ts in pending:
            raw.append(Interval(key.rsplit("-", 1)[0], pid, m, ts, (died_at or {}).get(pid, float("inf"))))
    out: list[Interval] = []
    for c in raw:
        stop, cont = (paused or {}).get(c.pid, (float("inf"), float("inf")))
        if c.start < stop < c.end:
            out.append(Interval(c.uid, c.pid, c.method, c.start, stop))
            if cont < c.end:
                out.append(Interval(c.uid, c.pid, c.method, cont, c.end))
        else:
            out.append(c)
    return out


def overlaps(calls: list[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of calls for one task by two processes whose intervals intersect."""
    by_uid: dict[str, list[Interval]] = defaultdict(list)
    for c in calls:
        by_uid[c.uid].append(c)
    bad = []
    for group in by_uid.values():
        group.sort(key=lambda c: c.start)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if b.start >= a.end:
                    break
                if b.pid != a.pid:
                    bad.append((a, b))
    return bad
