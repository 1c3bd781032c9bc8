"""The benchmark's agents: an instant one and one with configurable latency and run time.

Both run inside the contender's process (they are loaded with ``--agent bench.agents:...``
by the operator, imported by the baselines), so an agent call costs what the contender's
own code path costs and nothing else.  Every call is counted in memory and appended as a
line to the file named by ``BENCH_AGENT_LOG`` (one ``write`` per call, line-buffered, so the
record survives SIGKILL); the harness reads it afterwards for call counts and for the
timestamps of ``create`` and of the first terminal ``get`` of each task.

A task's name and its latency settings travel in the TaskTemplate's ``custom`` struct, so
the agents need nothing from the contender beyond the template: the same agent code serves
the operator, the naive kopf baseline and the ceiling.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass
from typing import IO, Any

from flyteidl.core import tasks_pb2
from google.protobuf import struct_pb2

from agent_operator.sdk import AsyncAgentBase, Resource, ResourceMeta
from agent_operator.sdk.resource import TaskExecution

INSTANT_TYPE = "bench-instant"
LATENCY_TYPE = "bench-latency"

#: method -> number of calls made in this process
CALLS: collections.Counter[str] = collections.Counter()
_log: IO[str] | None = None


def _record(method: str, name: str, outcome: str = "") -> None:
    """Count a call and append ``<unix time>\\t<method>\\t<task>\\t<outcome>`` to the call log."""
    global _log
    CALLS[method] += 1
    if _log is None:
        path = os.environ.get("BENCH_AGENT_LOG")
        if not path:
            return
        _log = open(path, "a", buffering=1, encoding="utf-8")
    _log.write(f"{time.time():.6f}\t{method}\t{name}\t{outcome}\n")


def _custom(template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    fields = template.custom.fields
    out: dict[str, Any] = {}
    for key in ("name", "createLatency", "getLatency", "runSeconds"):
        if key in fields:
            value: struct_pb2.Value = fields[key]
            kind = value.WhichOneof("kind")
            out[key] = value.string_value if kind == "string_value" else value.number_value
    return out


@dataclass
class BenchMeta(ResourceMeta):
    """The fake job: which task, when it started, how long it runs, how slow ``get`` is."""

    name: str
    started: float
    run_seconds: float = 0.0
    get_latency: float = 0.0


class InstantAgent(AsyncAgentBase):
    """``create`` returns at once; the first ``get`` reports SUCCEEDED."""

    name = "Bench Instant Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name=INSTANT_TYPE, metadata_type=BenchMeta)

    # async methods, as real I/O agents write them (the operator awaits them via sdk.invoke)
    async def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,  # type: ignore[override]
                     inputs: Any = None, task_execution_metadata: Any = None, **kwargs: Any) -> BenchMeta:
        """Start nothing; remember the task's name."""
        name = str(_custom(task_template).get("name", ""))
        _record("create", name)
        return BenchMeta(name=name, started=time.time())

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """Always terminal."""
        assert isinstance(resource_meta, BenchMeta)
        _record("get", resource_meta.name, "SUCCEEDED")
        return Resource(phase=TaskExecution.SUCCEEDED, message="done")

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """Nothing to stop."""
        assert isinstance(resource_meta, BenchMeta)
        _record("delete", resource_meta.name)


class LatencyAgent(AsyncAgentBase):
    """A remote service stand-in: slow ``create``/``get`` and a job that runs for a while.

    ``custom.createLatency`` / ``custom.getLatency`` (seconds, default 0.05 / 0.02) are
    awaited inside the calls, like a network round trip; the job reports RUNNING until
    ``custom.runSeconds`` (default 2) after ``create``, then SUCCEEDED.
    """

    name = "Bench Latency Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name=LATENCY_TYPE, metadata_type=BenchMeta)

    # async methods, as real I/O agents write them (the operator awaits them via sdk.invoke)
    async def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,  # type: ignore[override]
                     inputs: Any = None, task_execution_metadata: Any = None, **kwargs: Any) -> BenchMeta:
        """Start the fake job after the create latency."""
        custom = _custom(task_template)
        name = str(custom.get("name", ""))
        _record("create", name)
        await asyncio.sleep(float(custom.get("createLatency", 0.05)))
        return BenchMeta(name=name, started=time.time(), run_seconds=float(custom.get("runSeconds", 2.0)),
                         get_latency=float(custom.get("getLatency", 0.02)))

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """RUNNING until the run time has passed, then SUCCEEDED."""
        assert isinstance(resource_meta, BenchMeta)
        await asyncio.sleep(resource_meta.get_latency)
        if time.time() - resource_meta.started >= resource_meta.run_seconds:
            _record("get", resource_meta.name, "SUCCEEDED")
            return Resource(phase=TaskExecution.SUCCEEDED, message="done")
        _record("get", resource_meta.name, "RUNNING")
        return Resource(phase=TaskExecution.RUNNING, message="running")

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """Stop the fake job (nothing to do but count)."""
        assert isinstance(resource_meta, BenchMeta)
        _record("delete", resource_meta.name)


def by_task_type() -> dict[str, AsyncAgentBase]:
    """One instance of each bench agent keyed by task type (what the baselines use)."""
    agents: list[AsyncAgentBase] = [InstantAgent(), LatencyAgent()]
    return {agent.task_type_name: agent for agent in agents}


@dataclass
class CallRecord:
    """What the harness learns from one contender's call log."""

    counts: dict[str, int]
    first_create: dict[str, float]
    first_terminal_get: dict[str, float]
    gets_by_task: dict[str, list[float]]


def read_call_log(path: str | os.PathLike[str], since: float = 0.0) -> CallRecord:
    """Parse a ``BENCH_AGENT_LOG`` file (calls at or after ``since`` only)."""
    counts: collections.Counter[str] = collections.Counter()
    creates: dict[str, float] = {}
    terminal: dict[str, float] = {}
    gets: dict[str, list[float]] = collections.defaultdict(list)
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 4:
            continue  # a line cut by SIGKILL
        t, method, name, outcome = float(parts[0]), parts[1], parts[2], parts[3]
        if t < since:
            continue
        counts[method] += 1
        if method == "create":
            creates.setdefault(name, t)
        elif method == "get":
            gets[name].append(t)
            if outcome == "SUCCEEDED":
                terminal.setdefault(name, t)
    return CallRecord(dict(counts), creates, terminal, dict(gets))
