"""Remote task types as ordinary SDK agents.

One agent object per (deployment, task category); its ``resource_meta`` is the remote
service's bytes, stored and returned unchanged (:class:`OpaqueResourceMeta`).  The reconcile
core drives these exactly like a built-in agent.
"""

from __future__ import annotations

from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2

from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.bridges.remote.client import RemoteAgentClient
from agent_operator.sdk import (
    AsyncAgentBase,
    LiteralMap,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskCategory,
    TaskExecutionMetadata,
    TaskTemplate,
)

Phase = execution_pb2.TaskExecution

#: deprecated ``Resource.state`` -> phase, as FlytePropeller reads it when phase is UNDEFINED
_STATE_TO_PHASE: dict[int, int] = {
    agent_pb2.PENDING: Phase.INITIALIZING,
    agent_pb2.RUNNING: Phase.RUNNING,
    agent_pb2.SUCCEEDED: Phase.SUCCEEDED,
    agent_pb2.PERMANENT_FAILURE: Phase.FAILED,
    agent_pb2.RETRYABLE_FAILURE: Phase.RETRYABLE_FAILED,
}
_FAILURE_PHASES = frozenset({Phase.FAILED, Phase.RETRYABLE_FAILED, Phase.ABORTED})


def resource_from_remote(pb: agent_pb2.Resource) -> Resource:
    """Turn a remote ``admin.Resource`` into the SDK Resource the core understands.

    * ``phase`` UNDEFINED falls back to the deprecated ``state`` (old agent services);
    * an ``agent_error`` on a non-successful Resource decides the failure kind:
      RECOVERABLE -> RETRYABLE_FAILED (a new attempt may succeed), NON_RECOVERABLE ->
      FAILED, and its code prefixes the message so it reaches the AgentTask status.
    """
    resource = Resource.from_flyte_idl(pb)
    phase: int = pb.phase
    if phase == Phase.UNDEFINED:
        phase = _STATE_TO_PHASE.get(pb.state, Phase.RETRYABLE_FAILED)
    if pb.HasField("agent_error") and phase in _FAILURE_PHASES:
        error = pb.agent_error
        phase = Phase.RETRYABLE_FAILED if error.kind == agent_pb2.AgentError.RECOVERABLE else Phase.FAILED
        prefix = f"[{error.code}] " if error.code else ""
        suffix = ""
        if error.origin:
            suffix = f" (origin: {execution_pb2.ExecutionError.ErrorKind.Name(error.origin)})"
        resource.message = f"{prefix}{pb.message or 'agent error'}{suffix}"
    resource.phase = phase
    return resource


class _RemoteMixin:
    """What both remote agent kinds share: the client and a descriptive name."""

    client: RemoteAgentClient
    remote_name: str

    def _setup(self, client: RemoteAgentClient, remote_name: str, deployment_id: str) -> None:
        self.client = client
        self.remote_name = remote_name
        self.deployment_id = deployment_id
        # shown by `agent-operator agents`: which service runs the type
        self.name = f"{remote_name} @ {deployment_id}"


class RemoteAsyncAgent(_RemoteMixin, AsyncAgentBase):
    """An async task type served by a remote agent service (CreateTask / GetTask / DeleteTask)."""

    def __init__(self, client: RemoteAgentClient, category: TaskCategory, remote_name: str, deployment_id: str) -> None:
        super().__init__(
            task_type_name=category.name, task_type_version=category.version, metadata_type=OpaqueResourceMeta
        )
        self._setup(client, remote_name, deployment_id)

    async def create(  # type: ignore[override]  # the SDK accepts async methods (see sdk.invoke)
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> OpaqueResourceMeta:
        """Forward to ``CreateTask``; the returned bytes are the job handle."""
        data = await self.client.create_task(task_template, output_prefix, inputs, task_execution_metadata,
                                             kwargs.get("secrets"))
        return OpaqueResourceMeta(data=data)

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """Forward to ``GetTask``."""
        pb = await self.client.get_task(self.task_category, resource_meta.encode(), kwargs.get("secrets"))
        return resource_from_remote(pb)

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """Forward to ``DeleteTask``."""
        await self.client.delete_task(self.task_category, resource_meta.encode(), kwargs.get("secrets"))

    async def get_logs(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskLogsResponse:  # type: ignore[override]
        """Forward to ``GetTaskLogs`` (``lines``/``token`` keyword arguments pass through)."""
        return await self.client.get_task_logs(
            self.task_category, resource_meta.encode(), int(kwargs.get("lines", 0)), str(kwargs.get("token", ""))
        )


class RemoteSyncAgent(_RemoteMixin, SyncAgentBase):
    """A sync task type served by a remote agent service (ExecuteTaskSync)."""

    def __init__(self, client: RemoteAgentClient, category: TaskCategory, remote_name: str, deployment_id: str) -> None:
        super().__init__(task_type_name=category.name, task_type_version=category.version)
        self._setup(client, remote_name, deployment_id)

    async def do(  # type: ignore[override]  # the SDK accepts async methods (see sdk.invoke)
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        **kwargs: Any,
    ) -> Resource:
        """Forward to ``ExecuteTaskSync`` (``task_execution_metadata`` is passed when given)."""
        pb = await self.client.execute_task_sync(
            task_template, output_prefix, inputs, kwargs.get("task_execution_metadata")
        )
        return resource_from_remote(pb)
