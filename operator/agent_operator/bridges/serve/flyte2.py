"""This process's async agents as a Flyte 2 connector service (``flyteidl2.connector``).

Flyte 2's executor calls ``AsyncConnectorService`` (CreateTask / GetTask / DeleteTask /
GetTaskMetrics / GetTaskLogs) and ``ConnectorMetadataService`` (ListConnectors /
GetConnector); there is no sync service, so sync agents are not offered here (they stay
available to Flyte 1 on the same port).  The messages differ from flyteidl 1's in name
and in a few added fields, not in layout (:mod:`agent_operator.bridges.flyte2idl`), so each
request is carried over to the flyteidl 1 form the agents take and the answer back, byte
for byte, and the work is done by the same code as the Flyte 1 servicer (status codes
included: NOT_FOUND, UNAVAILABLE for a transient error, INTERNAL).

Secrets arrive as the request's ``Connection`` (``secrets``: key -> value); agents see them
as one Secret named :data:`CONNECTION_SECRET` in their ``secrets`` keyword, the shape the
operator gives them from ``spec.secretRefs``.

Needs flyteidl2 (extra ``flyte-agent-operator[flyte2]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.connector import service_pb2_grpc as s2

from agent_operator.bridges.flyte2idl import convert, resource_to_flyte2
from agent_operator.bridges.serve.servicer import (
    Context,
    _abort,
    _Abort,
    _async_agent,
    _call,
    _decode,
    resource_to_idl,
)
from agent_operator.sdk import AgentRegistry, SyncAgentBase, TaskCategory

#: the name under which a request's Connection secrets reach an agent's ``secrets`` keyword
CONNECTION_SECRET = "connection"

__all__ = ["AsyncConnectorServicer", "CONNECTION_SECRET", "ConnectorMetadataServicer", "add_to_server"]


def _secrets(request: Any) -> dict[str, Any]:
    """The agent keyword for the request's Connection (nothing when it has no secrets)."""
    if not request.HasField("connection") or not request.connection.secrets:
        return {}
    return {"secrets": {CONNECTION_SECRET: dict(request.connection.secrets)}}


def _category(request: Any) -> TaskCategory:
    return TaskCategory(request.task_category.name, request.task_category.version)


class AsyncConnectorServicer(s2.AsyncConnectorServiceServicer):
    """``flyteidl2.connector.AsyncConnectorService`` over the registry's async agents."""

    async def CreateTask(self, request: c2.CreateTaskRequest, context: Context) -> c2.CreateTaskResponse:  # noqa: N802
        template = convert(request.template, tasks_pb2.TaskTemplate)
        category = TaskCategory(template.type, template.task_type_version)
        try:
            agent = _async_agent(category)
            meta = await _call(
                "create", category, agent.create,
                task_template=template,
                output_prefix=request.output_prefix,
                inputs=convert(request.inputs, literals_pb2.LiteralMap) if request.HasField("inputs") else None,
                task_execution_metadata=(convert(request.task_execution_metadata, agent_pb2.TaskExecutionMetadata)
                                         if request.HasField("task_execution_metadata") else None),
                **_secrets(request),
            )
            return c2.CreateTaskResponse(resource_meta=meta.encode())
        except _Abort as e:
            await _abort(context, e)

    async def GetTask(self, request: c2.GetTaskRequest, context: Context) -> c2.GetTaskResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            resource = await _call("get", category, agent.get, resource_meta=_decode(agent, request.resource_meta),
                                   **_secrets(request))
            return c2.GetTaskResponse(resource=resource_to_flyte2(resource_to_idl(resource)))
        except _Abort as e:
            await _abort(context, e)

    async def DeleteTask(self, request: c2.DeleteTaskRequest, context: Context) -> c2.DeleteTaskResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            await _call("delete", category, agent.delete, resource_meta=_decode(agent, request.resource_meta),
                        **_secrets(request))
            return c2.DeleteTaskResponse()
        except _Abort as e:
            await _abort(context, e)

    async def GetTaskMetrics(self, request: c2.GetTaskMetricsRequest, context: Context) -> c2.GetTaskMetricsResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            result = await _call("get metrics of", category, agent.get_metrics,
                                 resource_meta=_decode(agent, request.resource_meta))
            return convert(result, c2.GetTaskMetricsResponse)
        except _Abort as e:
            await _abort(context, e)

    async def GetTaskLogs(self, request: c2.GetTaskLogsRequest, context: Context) -> AsyncIterator[c2.GetTaskLogsResponse]:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            result = await _call("get logs of", category, agent.get_logs,
                                 resource_meta=_decode(agent, request.resource_meta), token=request.token)
        except _Abort as e:
            await _abort(context, e)
        for part in result if isinstance(result, (list, tuple)) else [result]:
            yield _logs_to_flyte2(part)


def _logs_to_flyte2(part: Any) -> c2.GetTaskLogsResponse:
    """flyteidl 1 logs (``body.results``: text lines) as Flyte 2's structured ``body.lines``."""
    if isinstance(part, c2.GetTaskLogsResponse):
        return part
    out = c2.GetTaskLogsResponse()
    if part.HasField("header"):
        out.header.token = part.header.token
    elif part.HasField("body"):
        for text in part.body.results:
            out.body.lines.add(message=text)
    return out


def _connectors() -> list[c2.Connector]:
    """One Connector per agent name, with its async task categories (Flyte 2 has no sync service)."""
    connectors: dict[str, c2.Connector] = {}
    for agent in AgentRegistry.agents():
        if isinstance(agent, SyncAgentBase):
            continue
        entry = connectors.setdefault(agent.name, c2.Connector(name=agent.name))
        category = agent.task_category
        entry.supported_task_categories.add(name=category.name, version=category.version)
    return [connectors[name] for name in sorted(connectors)]


class ConnectorMetadataServicer(s2.ConnectorMetadataServiceServicer):
    """``ListConnectors`` / ``GetConnector``: the async agents, by name."""

    async def ListConnectors(self, request: c2.ListConnectorsRequest, context: Context) -> c2.ListConnectorsResponse:  # noqa: N802
        return c2.ListConnectorsResponse(connectors=_connectors())

    async def GetConnector(self, request: c2.GetConnectorRequest, context: Context) -> c2.GetConnectorResponse:  # noqa: N802
        for connector in _connectors():
            if connector.name == request.name:
                return c2.GetConnectorResponse(connector=connector)
        known = ", ".join(c.name for c in _connectors()) or "none"
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"Cannot find connector for name: {request.name}. Async connectors served: {known}.")


def add_to_server(server: grpc.aio.Server) -> list[str]:
    """Register both Flyte 2 services on ``server``; returns their full service names."""
    s2.add_AsyncConnectorServiceServicer_to_server(AsyncConnectorServicer(), server)
    s2.add_ConnectorMetadataServiceServicer_to_server(ConnectorMetadataServicer(), server)
    return ["flyteidl2.connector.AsyncConnectorService", "flyteidl2.connector.ConnectorMetadataService"]

