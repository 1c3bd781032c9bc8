"""This process's AgentRegistry as flyteidl ``AsyncAgentService``, ``SyncAgentService``
and ``AgentMetadataService`` — what FlytePropeller's agent plugin calls.

Status codes follow flytekit's connector service, so propeller sees the same thing from
us as from ``pyflyte serve connector``: NOT_FOUND for an unknown task type, INTERNAL with
the agent's error for a failed call.  Two additions: a :class:`TransientAgentError` is
UNAVAILABLE (with a ``google.rpc.RetryInfo`` detail when it carries ``retry_after``), so
propeller retries instead of failing the task; and undecodable ``resource_meta`` is
INVALID_ARGUMENT.  Resources carry the deprecated ``state`` next to ``phase`` so
propellers that predate ``phase`` read them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import grpc.aio
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, tasks_pb2
from flyteidl.service import agent_pb2_grpc

from agent_operator.sdk import (
    AgentRegistry,
    AsyncAgentBase,
    FlyteAgentNotFound,
    Resource,
    SyncAgentBase,
    TaskCategory,
    TransientAgentError,
    invoke,
)
from agent_operator.sdk.errors import ErrorKind
from agent_operator.sdk.invoke import accepts_keyword
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)
#: the servicer context; request/response types vary per RPC
Context = grpc.aio.ServicerContext[Any, Any]
Phase = execution_pb2.TaskExecution

_PHASE_TO_STATE: dict[int, int] = {
    Phase.QUEUED: agent_pb2.PENDING,
    Phase.WAITING_FOR_RESOURCES: agent_pb2.PENDING,
    Phase.INITIALIZING: agent_pb2.PENDING,
    Phase.RUNNING: agent_pb2.RUNNING,
    Phase.SUCCEEDED: agent_pb2.SUCCEEDED,
    Phase.FAILED: agent_pb2.PERMANENT_FAILURE,
    Phase.ABORTED: agent_pb2.PERMANENT_FAILURE,
    Phase.RETRYABLE_FAILED: agent_pb2.RETRYABLE_FAILURE,
}


class _Abort(Exception):
    """Internal: carry a status code to the RPC boundary."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after: float | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.retry_after = retry_after


def resource_to_idl(resource: Resource, template: tasks_pb2.TaskTemplate | None = None) -> agent_pb2.Resource:
    """SDK Resource -> ``admin.Resource`` with both ``phase`` and the deprecated ``state``."""
    types = None
    if template is not None:
        types = {k: v.type for k, v in template.interface.outputs.variables.items()} or None
    pb = resource.to_flyte_idl(types)
    state = _PHASE_TO_STATE.get(pb.phase)
    if state is not None:
        pb.state = state  # type: ignore[assignment]
    return pb


def _category(request: Any) -> TaskCategory:
    """GetTask/DeleteTask/GetTaskLogs name the type by ``task_category`` or (older) ``task_type``."""
    if request.HasField("task_category") and request.task_category.name:
        return TaskCategory(request.task_category.name, request.task_category.version)
    return TaskCategory(request.task_type, 0)


def _agent(category: TaskCategory) -> Agent:
    try:
        return AgentRegistry.get_agent(category.name, category.version)
    except FlyteAgentNotFound as e:
        raise _Abort(grpc.StatusCode.NOT_FOUND, str(e)) from None


def _async_agent(category: TaskCategory) -> AsyncAgentBase:
    agent = _agent(category)
    if not isinstance(agent, AsyncAgentBase):
        raise _Abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"agent {agent.name!r} for {category} is a sync agent: call SyncAgentService.ExecuteTaskSync "
            f"(FlytePropeller does when ListAgents reports is_sync)",
        )
    return agent


def _observe(func: Any, seconds: float, error_kind: str | None) -> None:
    """Agent call latency/errors on /metrics (``serve --health-port``), same families as ``run``."""
    try:
        from agent_operator.observability.metrics import observe_agent_call
    except ImportError:  # pragma: no cover - prometheus-client missing
        return
    agent = getattr(getattr(func, "__self__", None), "name", "?")
    observe_agent_call(str(agent), getattr(func, "__name__", "?"), seconds, error_kind)


async def _call(operation: str, category: TaskCategory, func: Any, **kwargs: Any) -> Any:
    """Invoke an agent method, turning its exceptions into status codes."""
    started = time.perf_counter()
    error_kind: str | None = ErrorKind.PERMANENT.value
    try:
        result = await invoke(func, **kwargs)
        error_kind = None
        return result
    except _Abort:
        raise
    except TransientAgentError as e:
        error_kind = ErrorKind.TRANSIENT.value
        raise _Abort(grpc.StatusCode.UNAVAILABLE, f"failed to {operation} {category} task (transient): {e}",
                     e.retry_after) from None
    except NotImplementedError as e:
        raise _Abort(grpc.StatusCode.UNIMPLEMENTED, f"{operation} is not implemented for {category}: {e}") from None
    except Exception as e:  # noqa: BLE001 - every agent failure becomes INTERNAL with its message
        log.warning("%s %s failed: %s: %s", operation, category, type(e).__name__, e)
        raise _Abort(grpc.StatusCode.INTERNAL, f"failed to {operation} {category} task with error: "
                     f"{type(e).__name__}: {e}") from None
    finally:
        _observe(func, time.perf_counter() - started, error_kind)


async def _abort(context: Context, err: _Abort) -> NoReturn:
    if err.retry_after is not None:
        from google.protobuf import any_pb2, duration_pb2
        from google.rpc import error_details_pb2, status_pb2

        detail = any_pb2.Any()
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        retry.retry_delay.FromNanoseconds(int(err.retry_after * 1e9))
        detail.Pack(retry)
        status = status_pb2.Status(code=err.code.value[0], message=err.details, details=[detail])
        context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    await context.abort(err.code, err.details)


def _decode(agent: AsyncAgentBase, data: bytes) -> Any:
    try:
        return agent.metadata_type.decode(data)
    except Exception as e:  # noqa: BLE001 - bad bytes from the caller, not an agent failure
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                     f"resource_meta is not a valid {agent.metadata_type.__name__}: {e}") from None


class AsyncAgentServicer(agent_pb2_grpc.AsyncAgentServiceServicer):
    """CreateTask / GetTask / DeleteTask / GetTaskLogs / GetTaskMetrics over the registry."""

    async def CreateTask(self, request: agent_pb2.CreateTaskRequest, context: Context) -> agent_pb2.CreateTaskResponse:  # noqa: N802
        category = TaskCategory(request.template.type, request.template.task_type_version)
        try:
            agent = _async_agent(category)
            meta = await _call(
                "create", category, agent.create,
                task_template=request.template,
                output_prefix=request.output_prefix,
                inputs=request.inputs if request.HasField("inputs") else None,
                task_execution_metadata=(
                    request.task_execution_metadata if request.HasField("task_execution_metadata") else None
                ),
            )
            return agent_pb2.CreateTaskResponse(resource_meta=meta.encode())
        except _Abort as e:
            await _abort(context, e)

    async def GetTask(self, request: agent_pb2.GetTaskRequest, context: Context) -> agent_pb2.GetTaskResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            resource = await _call("get", category, agent.get, resource_meta=_decode(agent, request.resource_meta))
            return agent_pb2.GetTaskResponse(resource=resource_to_idl(resource))
        except _Abort as e:
            await _abort(context, e)

    async def DeleteTask(self, request: agent_pb2.DeleteTaskRequest, context: Context) -> agent_pb2.DeleteTaskResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            await _call("delete", category, agent.delete, resource_meta=_decode(agent, request.resource_meta))
            return agent_pb2.DeleteTaskResponse()
        except _Abort as e:
            await _abort(context, e)

    async def GetTaskMetrics(self, request: agent_pb2.GetTaskMetricsRequest, context: Context) -> agent_pb2.GetTaskMetricsResponse:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            result: agent_pb2.GetTaskMetricsResponse = await _call(
                "get metrics of", category, agent.get_metrics, resource_meta=_decode(agent, request.resource_meta)
            )
            return result
        except _Abort as e:
            await _abort(context, e)

    async def GetTaskLogs(self, request: agent_pb2.GetTaskLogsRequest, context: Context) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:  # noqa: N802
        category = _category(request)
        try:
            agent = _async_agent(category)
            result = await _call(
                "get logs of", category, agent.get_logs,
                resource_meta=_decode(agent, request.resource_meta), lines=request.lines, token=request.token,
            )
        except _Abort as e:
            await _abort(context, e)
        for part in result if isinstance(result, (list, tuple)) else [result]:
            yield part


class SyncAgentServicer(agent_pb2_grpc.SyncAgentServiceServicer):
    """ExecuteTaskSync: header (template, output prefix), then inputs; one header back."""

    async def ExecuteTaskSync(self, request_iterator: AsyncIterator[agent_pb2.ExecuteTaskSyncRequest], context: Context) -> AsyncIterator[agent_pb2.ExecuteTaskSyncResponse]:  # noqa: N802
        try:
            first = await anext(request_iterator, None)
            if first is None or not first.HasField("header"):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "ExecuteTaskSync: the first message must be the header")
            header = first.header
            category = TaskCategory(header.template.type, header.template.task_type_version)
            agent = _agent(category)
            if not isinstance(agent, SyncAgentBase):
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                             f"agent {agent.name!r} for {category} is an async agent: call AsyncAgentService.CreateTask")
            second = await anext(request_iterator, None)
            inputs = second.inputs if second is not None and second.HasField("inputs") else None
            kwargs: dict[str, Any] = {}
            if header.HasField("task_execution_metadata") and accepts_keyword(agent.do, "task_execution_metadata"):
                kwargs["task_execution_metadata"] = header.task_execution_metadata
            resource = await _call(
                "do", category, agent.do,
                task_template=header.template, output_prefix=header.output_prefix, inputs=inputs, **kwargs,
            )
            pb = resource_to_idl(resource, header.template)
        except _Abort as e:
            await _abort(context, e)
        yield agent_pb2.ExecuteTaskSyncResponse(header=agent_pb2.ExecuteTaskSyncResponseHeader(resource=pb))


class AgentMetadataServicer(agent_pb2_grpc.AgentMetadataServiceServicer):
    """ListAgents / GetAgent from the registry's metadata view."""

    async def ListAgents(self, request: agent_pb2.ListAgentsRequest, context: Context) -> agent_pb2.ListAgentsResponse:  # noqa: N802
        return agent_pb2.ListAgentsResponse(agents=AgentRegistry.list_agents())

    async def GetAgent(self, request: agent_pb2.GetAgentRequest, context: Context) -> agent_pb2.GetAgentResponse:  # noqa: N802
        try:
            return agent_pb2.GetAgentResponse(agent=AgentRegistry.get_agent_metadata(request.name))
        except FlyteAgentNotFound as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
