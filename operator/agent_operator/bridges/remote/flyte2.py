"""Calls to a Flyte 2 connector service (``flyteidl2.connector``; the SDK's ``c0`` server).

A deployment with ``protocol: flyte2`` (``--remote-protocol flyte2``) gets this client
instead of the flyteidl 1 one; everything above it (discovery, the remote agents, the
reconcile core) is unchanged:

* discovery asks ``ConnectorMetadataService.ListConnectors``; every reported category is an
  async agent (Flyte 2 has no sync connector service);
* ``CreateTask`` / ``GetTask`` / ``DeleteTask`` go to ``AsyncConnectorService`` with the
  messages carried over byte for byte (:mod:`agent_operator.bridges.flyte2idl`), inputs as
  Flyte 2 ``Inputs``, outputs read back from ``Outputs``;
* the AgentTask's Secrets (``spec.secretRefs``) travel as the request's ``Connection``:
  ``task_type`` and ``secrets`` (key -> value, all referenced Secrets merged), which the SDK
  hands to the connector's methods as keyword arguments.  Two Secrets giving one key
  different values is an error naming both, not a silent pick.

Needs flyteidl2 (extra ``flyte-agent-operator[flyte2]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.connector import service_pb2_grpc as s2
from flyteidl2.core import security_pb2
from flyteidl2.core import tasks_pb2 as tasks2

from agent_operator.bridges.flyte2idl import convert, inputs_to_flyte2, resource_from_flyte2
from agent_operator.bridges.remote.client import RemoteAgentClient
from agent_operator.sdk import TaskCategory
from agent_operator.serialization import SpecError


def connection(task_type: str, secrets: Mapping[str, Mapping[str, str]] | None) -> security_pb2.Connection:
    """The ``Connection`` for a call: the task type and every key of the referenced Secrets."""
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for name in sorted(secrets or {}):
        for key, value in (secrets or {})[name].items():
            if key in merged and merged[key] != value:
                raise SpecError("spec.secretRefs", f"Secrets {origin[key]!r} and {name!r} both set key {key!r} with "
                                                   f"different values; a Flyte 2 Connection has one value per key")
            merged[key], origin[key] = value, name
    return security_pb2.Connection(task_type=task_type, secrets=merged)


def _category(category: TaskCategory) -> c2.TaskCategory:
    return c2.TaskCategory(name=category.name, version=category.version)


class Flyte2ConnectorClient(RemoteAgentClient):
    """The flyteidl2 twin of :class:`RemoteAgentClient` (async calls and discovery)."""

    async def create_task(
        self,
        template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> bytes:
        """``CreateTask`` with the template, Inputs and Connection; returns resource_meta."""
        request = c2.CreateTaskRequest(template=convert(template, tasks2.TaskTemplate), output_prefix=output_prefix,
                                       connection=connection(template.type, secrets))
        if inputs is not None:
            request.inputs.CopyFrom(inputs_to_flyte2(inputs))
        if task_execution_metadata is not None:
            request.task_execution_metadata.CopyFrom(convert(task_execution_metadata, c2.TaskExecutionMetadata))
        stub = s2.AsyncConnectorServiceStub(self.channels.aio())
        response = await self._unary(stub.CreateTask, request, "CreateTask")
        return bytes(response.resource_meta)

    async def get_task(self, category: TaskCategory, resource_meta: bytes,
                       secrets: Mapping[str, Mapping[str, str]] | None = None) -> agent_pb2.Resource:
        """``GetTask``; the Flyte 2 Resource read back as flyteidl 1's."""
        request = c2.GetTaskRequest(task_category=_category(category), resource_meta=resource_meta,
                                    connection=connection(category.name, secrets))
        stub = s2.AsyncConnectorServiceStub(self.channels.aio())
        response = await self._unary(stub.GetTask, request, "GetTask")
        return resource_from_flyte2(response.resource)

    async def delete_task(self, category: TaskCategory, resource_meta: bytes,
                          secrets: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """``DeleteTask``."""
        request = c2.DeleteTaskRequest(task_category=_category(category), resource_meta=resource_meta,
                                       connection=connection(category.name, secrets))
        stub = s2.AsyncConnectorServiceStub(self.channels.aio())
        await self._unary(stub.DeleteTask, request, "DeleteTask")

    async def execute_task_sync(self, *args: object, **kwargs: object) -> agent_pb2.Resource:
        """Flyte 2 has no sync connector service."""
        raise NotImplementedError(f"{self.endpoint} is a Flyte 2 connector service: it has no sync service")

    async def get_task_logs(self, category: TaskCategory, resource_meta: bytes, lines: int = 0,
                            token: str = "") -> agent_pb2.GetTaskLogsResponse:
        """``GetTaskLogs``: Flyte 2's structured lines folded into one flyteidl 1 body (messages in order)."""
        request = c2.GetTaskLogsRequest(task_category=_category(category), resource_meta=resource_meta, token=token)
        stub = s2.AsyncConnectorServiceStub(self.channels.aio())
        merged = agent_pb2.GetTaskLogsResponse()
        try:
            async for part in stub.GetTaskLogs(request, timeout=self.deployment.timeout_for("GetTaskLogs")):
                if part.HasField("body"):
                    merged.body.results.extend(line.message for line in part.body.lines)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
                raise NotImplementedError(f"connector service {self.endpoint} does not offer GetTaskLogs") from None
            raise self._error(err, "GetTaskLogs") from None
        return merged

    def list_agents_blocking(self) -> list[agent_pb2.Agent]:
        """``ListConnectors``, each connector as a flyteidl 1 ``Agent`` (async)."""
        stub = s2.ConnectorMetadataServiceStub(self.channels.blocking())
        try:
            response = stub.ListConnectors(c2.ListConnectorsRequest(),
                                           timeout=self.deployment.timeout_for("ListConnectors"))
        except grpc.RpcError as err:
            raise self._error(err, "ListConnectors") from None
        agents = []
        for connector in response.connectors:
            agent = agent_pb2.Agent(name=connector.name, is_sync=False)
            for cat in connector.supported_task_categories:
                agent.supported_task_categories.add(name=cat.name, version=cat.version)
            agents.append(agent)
        return agents
