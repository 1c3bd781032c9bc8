"""An in-house batch-job service as an agent: the example of docs/writing-agents.md.

The service speaks plain JSON over HTTP:

    POST   {base}/jobs        {"name", "command", "args"} -> {"id"}   (idempotent on "name")
    GET    {base}/jobs/{id}   -> {"state": queued|running|succeeded|failed, "result", "logUrl", "error"}
    DELETE {base}/jobs/{id}

Run it:  agent-operator run --agent batch_job_agent:BatchJobAgent   (with this directory on PYTHONPATH)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.sdk import (
    AsyncAgentBase,
    Resource,
    ResourceMeta,
    TaskExecution,
    TaskLog,
    TransientAgentError,
)
from agent_operator.serialization import literal_map_to_plain

PHASES = {
    "queued": TaskExecution.QUEUED,
    "running": TaskExecution.RUNNING,
    "succeeded": TaskExecution.SUCCEEDED,
    "failed": TaskExecution.FAILED,
}


@dataclass
class BatchJobMetadata(ResourceMeta):
    """All get/delete need to find the job again (stored, signed, in the AgentTask status)."""

    base_url: str
    job_id: str


class BatchJobAgent(AsyncAgentBase):
    """Task type ``batch_job``: template ``custom`` = {"baseUrl": ..., "command": ...}."""

    name = "Batch Job Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="batch_job", metadata_type=BatchJobMetadata)

    def create(
        self,
        task_template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> BatchJobMetadata:
        custom = json_format.MessageToDict(task_template.custom)
        # The operator passes the same idempotency key when it has to ask again (e.g. it
        # crashed between our answer and recording it): use it as the job's name so the
        # service returns the existing job instead of starting a second one.
        key = task_execution_metadata.task_execution_id.node_execution_id.execution_id.name
        job = _call("POST", f"{custom['baseUrl']}/jobs", _token(kwargs), {
            "name": key,
            "command": custom["command"],
            "args": literal_map_to_plain(inputs) if inputs is not None else {},
        })
        return BatchJobMetadata(base_url=custom["baseUrl"], job_id=job["id"])

    def get(self, resource_meta: BatchJobMetadata, **kwargs: Any) -> Resource:
        job = _call("GET", f"{resource_meta.base_url}/jobs/{resource_meta.job_id}", _token(kwargs))
        links = [TaskLog(name="job log", uri=job["logUrl"])] if job.get("logUrl") else None
        return Resource(
            phase=PHASES[job["state"]],
            message=job.get("error") or f"job {resource_meta.job_id} {job['state']}",
            log_links=links,
            outputs={"result": job["result"]} if job["state"] == "succeeded" else None,
        )

    def delete(self, resource_meta: BatchJobMetadata, **kwargs: Any) -> None:
        _call("DELETE", f"{resource_meta.base_url}/jobs/{resource_meta.job_id}", _token(kwargs))


def _token(kwargs: dict[str, Any]) -> str | None:
    """The API token from the Secret named in ``spec.secretRefs`` (never logged, never in status)."""
    return (kwargs.get("secrets") or {}).get("batch-api", {}).get("token")


def _call(method: str, url: str, token: str | None, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (429, 502, 503, 504):
            # the operator retries with backoff; the task neither fails nor is lost
            raise TransientAgentError(f"batch service busy: HTTP {e.code}") from None
        raise RuntimeError(f"batch service: {method} {url}: HTTP {e.code}: {e.read()[:200]!r}") from None
    except (urllib.error.URLError, TimeoutError) as e:
        raise TransientAgentError(f"batch service unreachable: {e}") from None
    return json.loads(data) if data else None
