"""Agents for tests and benchmarks, driven entirely by their TaskTemplate, with a call ledger.

Four task types:

``test-async``    plain-method async agent (the operator runs its calls in threads)
``test-latency``  the same behaviour with ``async def`` methods and a default latency
``test-sync``     sync agent: one ``do`` returning the final step
``test-instant``  async agent whose job is done on the first ``get`` (for benchmarks)

What a job does is read from the template's ``custom`` fields (build them with
:func:`task_template`):

``phases``        steps returned by successive ``get`` calls of one attempt; a step is a phase
                  name (``"RUNNING"``) or ``{phase, message, logLinks, customInfo, outputs}``;
                  the last step repeats. Default ``["RUNNING", "SUCCEEDED"]``.
``runSeconds``    the last step is only reached once this long has passed since ``create``
                  (the step before it repeats meanwhile)
``retryableFailures``  attempts 1..N end in RETRYABLE_FAILED instead of the last step
``latency``       seconds every call sleeps first
``errors``        ``{method: {kind: transient|permanent, times: N}}``: the first N calls of
                  ``method`` for this idempotency key raise (N omitted: always)
``hang``          a method name that sleeps ``hangSeconds`` (default 3600) before answering
``outputValues``  plain outputs of a successful job; ``outputBytes`` adds a string output
                  ``blob`` of that many bytes
``nextPollSeconds``  suggested next poll, sent as customInfo ``nextPollSeconds``
``leakSecret``    ``"secretName/key"``: put that secret's value into the message (scrub test)
``outageFile``    while this path exists every call raises TransientAgentError (an agent outage
                  shared by all jobs; the chaos suite creates and removes the file)

Every call is appended, durably and before the agent answers, to a sqlite ledger (path in
env ``AGENT_OPERATOR_TEST_LEDGER``) keyed by the idempotency key, so a test can count calls
across operator restarts (:class:`Ledger`).  Job progress (poll index) is derived from the
ledger too, so a restarted operator sees the job where it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.core.identity import key_of
from agent_operator.sdk import (
    AsyncAgentBase,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskExecution,
    TaskLog,
    TransientAgentError,
)
from agent_operator.testing.ledger import LEDGER_ENV, Call, Ledger

__all__ = [
    "AGENT_SPECS", "LEDGER_ENV", "TASK_TYPES", "Call", "Ledger", "PermanentTestError", "TestAsyncAgent",
    "TestInstantAgent", "TestJobMeta", "TestLatencyAgent", "TestSyncAgent", "agent_task_manifest", "task_template",
]
TASK_TYPES = ("test-async", "test-sync", "test-latency", "test-instant")
#: ``--agent`` specs loading every test agent
AGENT_SPECS = (
    "agent_operator.testing.agents:TestAsyncAgent",
    "agent_operator.testing.agents:TestSyncAgent",
    "agent_operator.testing.agents:TestLatencyAgent",
    "agent_operator.testing.agents:TestInstantAgent",
)


class PermanentTestError(RuntimeError):
    """What a test agent raises for ``errors: {m: {kind: permanent}}``."""


# --------------------------------------------------------------------------- templates
def task_template(
    task_type: str = "test-async",
    *,
    name: str = "test-task",
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A TaskTemplate (protobuf JSON mapping, for ``spec.taskTemplate``) of a test agent.

    ``config`` are the custom fields described in the module docstring (camelCase).
    ``inputs`` / ``outputs`` declare interface variables by simple type name
    (``{"n": "INTEGER"}``).
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown test task type {task_type!r} (one of {', '.join(TASK_TYPES)})")

    def variables(decl: Mapping[str, str] | None) -> dict[str, Any]:
        return {"variables": {k: {"type": {"simple": v}} for k, v in (decl or {}).items()}}

    tmpl: dict[str, Any] = {
        "id": {"resourceType": "TASK", "project": "test", "domain": "test", "name": name, "version": "1"},
        "type": task_type,
        "metadata": {"runtime": {"type": "OTHER", "version": "1", "flavor": "test"}},
        "interface": {"inputs": variables(inputs), "outputs": variables(outputs)},
        "custom": json.loads(json.dumps(config)),
    }
    return tmpl


def agent_task_manifest(name: str, template: Mapping[str, Any], *, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """An AgentTask manifest running ``template``; ``spec`` adds spec fields (camelCase)."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "flyteagents.dev/v1alpha1",
        "kind": "AgentTask",
        "metadata": meta,
        "spec": {"taskTemplate": dict(template), **spec},
    }


# --------------------------------------------------------------------------- behaviour
@dataclass
class TestJobMeta(ResourceMeta):
    """The handle of a test job: its key, attempt, config and creation time."""

    __test__ = False  # not a pytest test class

    key: str
    attempt: int
    task_type: str
    created_at: float
    config: dict[str, Any]


def _config(template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    return json_format.MessageToDict(template.custom) if template.HasField("custom") else {}


class _Behaviour:
    """What every test agent shares: ledger writes, injected errors, latency, steps."""

    task_type = "test-async"
    default_latency = 0.0

    def _ledger(self) -> Ledger | None:
        return Ledger.from_env()

    def _record(self, method: str, key: str, attempt: int, **detail: Any) -> int:
        """Append the call; return how many calls of ``method`` this key had before it."""
        ledger = self._ledger()
        if ledger is None:
            return 0
        before = ledger.count(method, key) if key else 0
        ledger.append(self.task_type, method, key, attempt, detail)
        return before

    def _latency(self, config: Mapping[str, Any]) -> float:
        return float(config.get("latency", self.default_latency))

    def _inject(self, method: str, config: Mapping[str, Any], calls_before: int) -> None:
        outage = config.get("outageFile")
        if outage and os.path.exists(str(outage)):
            raise TransientAgentError(f"agent service unavailable ({method}): outage in progress")
        errors = config.get("errors") or {}
        rule = errors.get(method)
        if not rule:
            return
        times = rule.get("times")
        if times is not None and calls_before >= int(times):
            return
        if rule.get("kind", "transient") == "transient":
            raise TransientAgentError(f"injected transient {method} error #{calls_before + 1}",
                                      retry_after=rule.get("retryAfter"))
        raise PermanentTestError(f"injected permanent {method} error")

    def _hang_seconds(self, method: str, config: Mapping[str, Any]) -> float:
        if config.get("hang") == method:
            return float(config.get("hangSeconds", 3600))
        return 0.0

    def _step(self, meta: TestJobMeta, poll_index: int, secrets: Mapping[str, Any] | None) -> Resource:
        """The Resource of the ``poll_index``-th get (0-based) of this attempt."""
        config = meta.config
        steps: list[Any] = list(config.get("phases") or ["RUNNING", "SUCCEEDED"])
        final_reached = poll_index >= len(steps) - 1
        run_seconds = float(config.get("runSeconds", 0))
        if run_seconds and time.time() - meta.created_at < run_seconds:
            final_reached = False
            poll_index = min(poll_index, max(len(steps) - 2, 0))
        step = steps[-1] if final_reached else steps[min(poll_index, len(steps) - 1)]
        if final_reached and meta.attempt <= int(config.get("retryableFailures", 0)):
            step = {"phase": "RETRYABLE_FAILED", "message": f"attempt {meta.attempt} failed (retryable)"}
        return self._resource(step, config, secrets)

    def _resource(self, step: Any, config: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> Resource:
        if isinstance(step, str):
            step = {"phase": step}
        phase = TaskExecution.Phase.Value(str(step.get("phase", "RUNNING")))
        message = step.get("message")
        leak = config.get("leakSecret")
        if leak and secrets:
            secret_name, _, key = str(leak).partition("/")
            message = f"{message or ''} secret={secrets.get(secret_name, {}).get(key, '')}"
        logs = [TaskLog(name=str(link["name"]), uri=str(link["uri"])) for link in step.get("logLinks") or []]
        custom = dict(step.get("customInfo") or {})
        if "nextPollSeconds" in config:
            custom["nextPollSeconds"] = config["nextPollSeconds"]
        outputs: dict[str, Any] | None = None
        if phase == TaskExecution.SUCCEEDED:
            outputs = dict(step.get("outputs") or config.get("outputValues") or {})
            if config.get("outputBytes"):
                outputs["blob"] = "x" * int(config["outputBytes"])
        return Resource(phase=phase, message=message, log_links=logs or None,
                        outputs=outputs or None, custom_info=custom or None)

    def _get_index(self, meta: TestJobMeta) -> int:
        ledger = self._ledger()
        return ledger.count("get", meta.key) if ledger is not None else 0


class TestAsyncAgent(_Behaviour, AsyncAgentBase):
    """``test-async``: a configurable async job with plain (thread-run) methods."""

    __test__ = False  # not a pytest test class

    name = "Test Async Agent"
    task_type = "test-async"

    def __init__(self) -> None:
        super().__init__(task_type_name=self.task_type, metadata_type=TestJobMeta)
        # without a ledger, poll counts live here (unit tests)
        self._polls: dict[str, int] = {}

    def _create_meta(self, task_template: tasks_pb2.TaskTemplate, metadata: Any, kwargs: Mapping[str, Any]) -> tuple[TestJobMeta, float]:
        config = _config(task_template)
        key = key_of(metadata)
        attempt = int(metadata.task_execution_id.retry_attempt) + 1 if metadata is not None else 1
        before = self._record("create", key, attempt, secrets=sorted((kwargs.get("secrets") or {}).keys()))
        self._inject("create", config, before)
        created_at = time.time()
        ledger = self._ledger()
        if ledger is not None and before:
            # idempotent like a real service: the same key finds the job created first
            first = ledger.calls(key=key, method="create")[0]
            created_at = first.ts
        meta = TestJobMeta(key=key, attempt=attempt, task_type=self.task_type, created_at=created_at, config=config)
        return meta, self._latency(config) + self._hang_seconds("create", config)

    def _get_resource(self, resource_meta: ResourceMeta, kwargs: Mapping[str, Any]) -> tuple[Resource, float]:
        assert isinstance(resource_meta, TestJobMeta)
        index = self._get_index(resource_meta)
        if self._ledger() is None:
            index = self._polls.get(resource_meta.key, 0)
            self._polls[resource_meta.key] = index + 1
        before = self._record("get", resource_meta.key, resource_meta.attempt, index=index)
        self._inject("get", resource_meta.config, before)
        res = self._step(resource_meta, index, kwargs.get("secrets"))
        return res, self._latency(resource_meta.config) + self._hang_seconds("get", resource_meta.config)

    def _delete_job(self, resource_meta: ResourceMeta) -> float:
        assert isinstance(resource_meta, TestJobMeta)
        before = self._record("delete", resource_meta.key, resource_meta.attempt)
        self._inject("delete", resource_meta.config, before)
        return self._latency(resource_meta.config) + self._hang_seconds("delete", resource_meta.config)

    def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
               inputs: literals_pb2.LiteralMap | None = None, task_execution_metadata: Any = None,
               **kwargs: Any) -> ResourceMeta:
        """Record the call, maybe fail or wait, return the job handle."""
        meta, wait = self._create_meta(task_template, task_execution_metadata, kwargs)
        time.sleep(wait)
        return meta

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """The next step of the job."""
        res, wait = self._get_resource(resource_meta, kwargs)
        time.sleep(wait)
        return res

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Record the cancellation."""
        time.sleep(self._delete_job(resource_meta))


class TestLatencyAgent(TestAsyncAgent):
    """``test-latency``: ``async def`` methods with a default latency of 0.2 s per call."""

    name = "Test Latency Agent"
    task_type = "test-latency"
    default_latency = 0.2

    async def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,  # type: ignore[override]
                     inputs: literals_pb2.LiteralMap | None = None, task_execution_metadata: Any = None,
                     **kwargs: Any) -> ResourceMeta:
        """Like test-async, sleeping on the event loop."""
        meta, wait = await asyncio.to_thread(self._create_meta, task_template, task_execution_metadata, kwargs)
        await asyncio.sleep(wait)
        return meta

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """Like test-async, sleeping on the event loop."""
        res, wait = await asyncio.to_thread(self._get_resource, resource_meta, kwargs)
        await asyncio.sleep(wait)
        return res

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """Like test-async, sleeping on the event loop."""
        await asyncio.sleep(await asyncio.to_thread(self._delete_job, resource_meta))


class TestInstantAgent(TestAsyncAgent):
    """``test-instant``: done on the first ``get`` (unless ``phases`` says otherwise)."""

    name = "Test Instant Agent"
    task_type = "test-instant"

    def _step(self, meta: TestJobMeta, poll_index: int, secrets: Mapping[str, Any] | None) -> Resource:
        if not meta.config.get("phases"):
            meta = TestJobMeta(meta.key, meta.attempt, meta.task_type, meta.created_at,
                               {**meta.config, "phases": ["SUCCEEDED"]})
        return super()._step(meta, poll_index, secrets)


class TestSyncAgent(_Behaviour, SyncAgentBase):
    """``test-sync``: one ``do`` that sleeps ``runSeconds`` and returns the last step."""

    __test__ = False  # not a pytest test class

    name = "Test Sync Agent"
    task_type = "test-sync"

    def __init__(self) -> None:
        super().__init__(task_type_name=self.task_type)

    def do(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
           inputs: literals_pb2.LiteralMap | None = None, **kwargs: Any) -> Resource:
        """Record the call, maybe fail or wait, return the final step."""
        config = _config(task_template)
        metadata = kwargs.get("task_execution_metadata")
        key = key_of(metadata)
        attempt = int(metadata.task_execution_id.retry_attempt) + 1 if metadata is not None else 1
        before = self._record("do", key, attempt, secrets=sorted((kwargs.get("secrets") or {}).keys()))
        self._inject("do", config, before)
        time.sleep(self._latency(config) + float(config.get("runSeconds", 0)) + self._hang_seconds("do", config))
        steps = list(config.get("phases") or ["SUCCEEDED"])
        meta = TestJobMeta(key=key, attempt=attempt, task_type=self.task_type, created_at=0.0,
                           config={**config, "phases": steps, "runSeconds": 0})
        return self._step(meta, len(steps) - 1, kwargs.get("secrets"))
