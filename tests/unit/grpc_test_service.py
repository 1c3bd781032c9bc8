"""A scriptable Flyte agent service (flyteidl AsyncAgentService/SyncAgentService/AgentMetadataService).

Behaviour is driven by the request itself so one server serves many cases:

* ``CreateTask`` / ``ExecuteTaskSync``: ``template.custom`` may hold ``fail: {code, details,
  retry_after, times}`` (abort with that gRPC status; only the first ``times`` calls when given), ``sleep`` (seconds before answering) and
  ``resource`` (the Resource that GetTask / ExecuteTaskSync report, protobuf JSON);
* ``GetTask`` / ``DeleteTask`` / ``GetTaskLogs`` read the same fields back from the
  ``resource_meta`` (JSON of the template's ``custom`` plus ``served_by``), so a case set
  up at create time follows the job.

Every call is recorded as ``(server name, method, request)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from google.protobuf import duration_pb2, json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2


@dataclass
class ServiceState:
    name: str
    agents: list[agent_pb2.Agent] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    list_agents_code: grpc.StatusCode | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, request: Any) -> None:
        with self.lock:
            self.calls.append((self.name, method, request))

    def methods(self) -> list[str]:
        with self.lock:
            return [m for _, m, _ in self.calls]


def _custom(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


_failures: dict[str, int] = {}
_failures_lock = threading.Lock()


def _apply(spec: dict[str, Any], context: grpc.ServicerContext) -> None:
    if spec.get("sleep"):
        time.sleep(float(spec["sleep"]))
    fail = spec.get("fail")
    if fail and "times" in fail:  # fail only the first `times` calls with this spec
        key = json.dumps(spec, sort_keys=True)
        with _failures_lock:
            _failures[key] = _failures.get(key, 0) + 1
            if _failures[key] > int(fail["times"]):
                fail = None
    if fail:
        code = grpc.StatusCode[fail["code"]]
        if "retry_after" in fail:
            info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(fail["retry_after"])))
            status = status_pb2.Status(code=code.value[0], message=fail.get("details", ""))
            status.details.add().Pack(info)
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        context.abort(code, fail.get("details", ""))


def _resource(spec: dict[str, Any]) -> agent_pb2.Resource:
    res = agent_pb2.Resource()
    json_format.ParseDict(spec.get("resource", {"phase": "SUCCEEDED"}), res)
    return res


class AsyncService(agent_pb2_grpc.AsyncAgentServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def CreateTask(self, request: agent_pb2.CreateTaskRequest, context: grpc.ServicerContext) -> agent_pb2.CreateTaskResponse:  # noqa: N802
        self.state.record("CreateTask", request)
        spec = _custom(request.template.custom)
        _apply(spec, context)
        meta = {k: v for k, v in spec.items() if k not in ("fail", "sleep")}
        meta["served_by"] = self.state.name
        meta["exec_id"] = request.task_execution_metadata.task_execution_id.task_id.name
        return agent_pb2.CreateTaskResponse(resource_meta=json.dumps(meta).encode())

    def GetTask(self, request: agent_pb2.GetTaskRequest, context: grpc.ServicerContext) -> agent_pb2.GetTaskResponse:  # noqa: N802
        self.state.record("GetTask", request)
        spec = json.loads(request.resource_meta)
        _apply(spec.get("get", {}), context)
        return agent_pb2.GetTaskResponse(resource=_resource(spec))

    def DeleteTask(self, request: agent_pb2.DeleteTaskRequest, context: grpc.ServicerContext) -> agent_pb2.DeleteTaskResponse:  # noqa: N802
        self.state.record("DeleteTask", request)
        spec = json.loads(request.resource_meta)
        _apply(spec.get("delete", {}), context)
        return agent_pb2.DeleteTaskResponse()

    def GetTaskLogs(self, request: agent_pb2.GetTaskLogsRequest, context: grpc.ServicerContext) -> Iterator[agent_pb2.GetTaskLogsResponse]:  # noqa: N802
        self.state.record("GetTaskLogs", request)
        spec = json.loads(request.resource_meta)
        if "logs" not in spec:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no logs here")
        yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token="t"))
        for chunk in spec["logs"]:
            yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=chunk))


class SyncService(agent_pb2_grpc.SyncAgentServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def ExecuteTaskSync(self, request_iterator: Iterator[agent_pb2.ExecuteTaskSyncRequest], context: grpc.ServicerContext) -> Iterator[agent_pb2.ExecuteTaskSyncResponse]:  # noqa: N802
        header = next(request_iterator).header
        inputs = next(request_iterator).inputs
        self.state.record("ExecuteTaskSync", (header, inputs))
        spec = _custom(header.template.custom)
        _apply(spec, context)
        res = _resource(spec)
        for name, literal in inputs.literals.items():  # echo inputs as outputs
            res.outputs.literals[name].CopyFrom(literal)
        yield agent_pb2.ExecuteTaskSyncResponse(header=agent_pb2.ExecuteTaskSyncResponseHeader(resource=res))


class MetadataService(agent_pb2_grpc.AgentMetadataServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def ListAgents(self, request: agent_pb2.ListAgentsRequest, context: grpc.ServicerContext) -> agent_pb2.ListAgentsResponse:  # noqa: N802
        self.state.record("ListAgents", request)
        if self.state.list_agents_code is not None:
            context.abort(self.state.list_agents_code, "listing disabled")
        return agent_pb2.ListAgentsResponse(agents=self.state.agents)


def agent_meta(name: str, *types: str | tuple[str, int], is_sync: bool = False) -> agent_pb2.Agent:
    meta = agent_pb2.Agent(name=name, is_sync=is_sync)
    for t in types:
        tname, version = (t, 0) if isinstance(t, str) else t
        meta.supported_task_categories.add(name=tname, version=version)
        meta.supported_task_types.append(tname)
    return meta


@contextmanager
def agent_service(
    name: str = "svc",
    agents: list[agent_pb2.Agent] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    port: int = 0,
) -> Iterator[tuple[ServiceState, int]]:
    """Run the scriptable service on 127.0.0.1 (free port unless given); yields (state, port)."""
    state = ServiceState(name=name, agents=list(agents or []))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(AsyncService(state), server)
    agent_pb2_grpc.add_SyncAgentServiceServicer_to_server(SyncService(state), server)
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(MetadataService(state), server)
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    try:
        yield state, bound
    finally:
        server.stop(grace=None)
