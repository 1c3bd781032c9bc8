"""Typed calls to one remote Flyte agent service (flyteidl ``service/agent.proto``).

Every call carries the deployment's per-call deadline, and every gRPC failure leaves
here already classified (``TransientAgentError`` or :class:`RemoteAgentError`), so the
agents built on top never see a raw ``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2
from flyteidl.service import agent_pb2_grpc

from agent_operator.bridges.remote.channel import Channels
from agent_operator.bridges.remote.config import Deployment
from agent_operator.bridges.remote.errors import RemoteAgentError, classify_rpc_error
from agent_operator.sdk import TaskCategory

T = TypeVar("T")
R = TypeVar("R")


class RemoteAgentClient:
    """Async (per event loop) and blocking (discovery) calls to one deployment."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.channels = Channels(deployment)

    @property
    def endpoint(self) -> str:
        """The configured target string (for messages)."""
        return self.deployment.endpoint

    def _error(self, err: grpc.RpcError, operation: str) -> Exception:
        return classify_rpc_error(err, operation, self.endpoint)

    async def _unary(self, method: Callable[..., Awaitable[R]], request: object, operation: str) -> R:
        """One unary call with the deployment's deadline; gRPC failures leave classified."""
        try:
            return await method(request, timeout=self.deployment.timeout_for(operation))
        except grpc.RpcError as err:
            raise self._error(err, operation) from None

    async def create_task(
        self,
        template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> bytes:
        """``CreateTask``: start the job; returns the service's resource_meta bytes.

        ``secrets`` (the task's Secrets) are not sent: flyteidl 1 requests have no field for
        them; a Flyte 1 service reads its own (:class:`Flyte2ConnectorClient` sends them)."""
        request = agent_pb2.CreateTaskRequest(template=template, output_prefix=output_prefix)
        if inputs is not None:
            request.inputs.CopyFrom(inputs)
        if task_execution_metadata is not None:
            request.task_execution_metadata.CopyFrom(task_execution_metadata)
        stub = agent_pb2_grpc.AsyncAgentServiceStub(self.channels.aio())
        response = await self._unary(stub.CreateTask, request, "CreateTask")
        return bytes(response.resource_meta)

    async def get_task(self, category: TaskCategory, resource_meta: bytes,
                       secrets: Mapping[str, Mapping[str, str]] | None = None) -> agent_pb2.Resource:
        """``GetTask``: the job's current Resource."""
        request = agent_pb2.GetTaskRequest(
            task_type=category.name, task_category=category.to_flyte_idl(), resource_meta=resource_meta
        )
        stub = agent_pb2_grpc.AsyncAgentServiceStub(self.channels.aio())
        response = await self._unary(stub.GetTask, request, "GetTask")
        resource: agent_pb2.Resource = response.resource
        return resource

    async def delete_task(self, category: TaskCategory, resource_meta: bytes,
                          secrets: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """``DeleteTask``: stop the job (the service must make this idempotent)."""
        request = agent_pb2.DeleteTaskRequest(
            task_type=category.name, task_category=category.to_flyte_idl(), resource_meta=resource_meta
        )
        stub = agent_pb2_grpc.AsyncAgentServiceStub(self.channels.aio())
        await self._unary(stub.DeleteTask, request, "DeleteTask")

    async def execute_task_sync(
        self,
        template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None,
    ) -> agent_pb2.Resource:
        """``ExecuteTaskSync``: header, then inputs (always sent, as propeller does); one Resource back.

        Outputs streamed after the header (the protocol allows it; flytekit does not use
        it) are merged into the Resource's outputs.
        """
        header = agent_pb2.CreateRequestHeader(template=template, output_prefix=output_prefix)
        if task_execution_metadata is not None:
            header.task_execution_metadata.CopyFrom(task_execution_metadata)
        parts = [
            agent_pb2.ExecuteTaskSyncRequest(header=header),
            agent_pb2.ExecuteTaskSyncRequest(inputs=inputs if inputs is not None else literals_pb2.LiteralMap()),
        ]

        async def requests() -> AsyncIterator[agent_pb2.ExecuteTaskSyncRequest]:
            for part in parts:
                yield part

        stub = agent_pb2_grpc.SyncAgentServiceStub(self.channels.aio())
        resource: agent_pb2.Resource | None = None
        try:
            call = stub.ExecuteTaskSync(requests(), timeout=self.deployment.timeout_for("ExecuteTaskSync"))
            async for response in call:
                if response.HasField("header"):
                    resource = agent_pb2.Resource()
                    resource.CopyFrom(response.header.resource)
                elif response.HasField("outputs") and resource is not None:
                    for name, literal in response.outputs.literals.items():
                        resource.outputs.literals[name].CopyFrom(literal)
        except grpc.RpcError as err:
            raise self._error(err, "ExecuteTaskSync") from None
        if resource is None:
            raise RemoteAgentError(
                f"ExecuteTaskSync on agent service {self.endpoint} returned no header (no Resource)",
                grpc.StatusCode.INTERNAL,
                "no header",
            )
        return resource

    async def get_task_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> agent_pb2.GetTaskLogsResponse:
        """``GetTaskLogs`` (server-streaming) folded into one response body (lines in order).

        Raises ``NotImplementedError`` when the service does not offer logs (UNIMPLEMENTED),
        the same signal a local agent without ``get_logs`` gives.
        """
        request = agent_pb2.GetTaskLogsRequest(
            task_type=category.name,
            task_category=category.to_flyte_idl(),
            resource_meta=resource_meta,
            lines=lines,
            token=token,
        )
        stub = agent_pb2_grpc.AsyncAgentServiceStub(self.channels.aio())
        merged = agent_pb2.GetTaskLogsResponse()
        try:
            async for part in stub.GetTaskLogs(request, timeout=self.deployment.timeout_for("GetTaskLogs")):
                if part.HasField("body"):
                    merged.body.results.extend(part.body.results)
                    merged.body.structured_lines.extend(part.body.structured_lines)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotImplementedError(f"agent service {self.endpoint} does not offer GetTaskLogs") from None
            raise self._error(err, "GetTaskLogs") from None
        return merged

    def list_agents_blocking(self) -> list[agent_pb2.Agent]:
        """``ListAgents`` on the blocking channel (discovery threads, CLI startup)."""
        stub = agent_pb2_grpc.AgentMetadataServiceStub(self.channels.blocking())
        try:
            response = stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=self.deployment.timeout_for("ListAgents"))
        except grpc.RpcError as err:
            raise self._error(err, "ListAgents") from None
        return list(response.agents)

    async def aclose(self) -> None:
        """Close this loop's channel."""
        await self.channels.aclose()

    def close_blocking(self) -> None:
        """Close the discovery channel."""
        self.channels.close_blocking()

