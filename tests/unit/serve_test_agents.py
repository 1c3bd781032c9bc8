"""Agents served by `agent-operator serve` in tests/unit/test_bridges_serve.py (loaded with --agent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_operator.sdk import (
    AsyncAgentBase,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskExecution,
    TransientAgentError,
)
from agent_operator.serialization import literal_map_to_plain

#: job id -> number of get() calls so far; deleted jobs are recorded
JOBS: dict[str, int] = {}
DELETED: list[str] = []


@dataclass
class CountMeta(ResourceMeta):
    job_id: str
    target: int


class CountingAgent(AsyncAgentBase):
    """Succeeds on the ``target``-th get with output ``total`` = sum of input ``n`` over polls."""

    name = "Counting Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="counting", metadata_type=CountMeta)

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> CountMeta:
        job_id = task_execution_metadata.task_execution_id.task_id.name if task_execution_metadata else "anon"
        if task_template.custom["mode"] == "transient":
            raise TransientAgentError("warehouse throttled", retry_after=3)
        if task_template.custom["mode"] == "broken":
            raise RuntimeError("warehouse rejected the query")
        JOBS[job_id] = 0
        n = literal_map_to_plain(inputs)["n"] if inputs is not None else 1
        return CountMeta(job_id=job_id, target=int(n))

    async def get(self, resource_meta: CountMeta, **kwargs: Any) -> Resource:
        JOBS[resource_meta.job_id] = JOBS.get(resource_meta.job_id, 0) + 1
        polls = JOBS[resource_meta.job_id]
        if polls < resource_meta.target:
            return Resource(phase=TaskExecution.RUNNING, message=f"poll {polls}")
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"polls": polls}, custom_info={"job": resource_meta.job_id})

    def delete(self, resource_meta: CountMeta, **kwargs: Any) -> None:
        DELETED.append(resource_meta.job_id)


class GreetAgent(SyncAgentBase):
    """Sync: output ``greeting`` from input ``name``, typed by the template's declared outputs."""

    name = "Greet Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="greet")

    def do(self, task_template: Any, output_prefix: str, inputs: Any = None, **kwargs: Any) -> Resource:
        name = literal_map_to_plain(inputs)["name"] if inputs is not None else "nobody"
        meta = kwargs.get("task_execution_metadata")
        suffix = f" ({meta.task_execution_id.task_id.name})" if meta is not None else ""
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"greeting": f"hello {name}{suffix}", "score": 1})
