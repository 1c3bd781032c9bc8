"""`agent-operator serve` reached with the flyteidl2 stubs, the way Flyte 2's executor calls a
connector service: ListConnectors, then CreateTask (template, Inputs, Connection secrets),
GetTask until a terminal phase, DeleteTask; plus grpc.health.v1 and the Flyte 1 services on
the same port."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.connector import service_pb2_grpc as s2
from flyteidl2.core import execution_pb2 as e2
from flyteidl2.core import literals_pb2 as l2
from flyteidl2.core import security_pb2, tasks_pb2, types_pb2
from flyteidl2.task import common_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
TOKEN = "tok-flyte2-0123456789"


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port_file = tmp_path_factory.mktemp("serve") / "port"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    exe = Path(sys.executable).with_name("agent-operator")
    proc = subprocess.Popen(
        [str(exe), "serve", "connector", "--address", "127.0.0.1:0", "--port-file", str(port_file), "--grace", "1",
         "--flytekit", "off", "--flyte2-service", "on", "--no-entry-points",
         "--agent", "flyte2_test_agents:VaultJobAgent", "--agent", "flyte2_test_agents:EchoSyncAgent"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "agent-operator serve did not start"
        time.sleep(0.2)
    yield f"127.0.0.1:{port_file.read_text().strip()}", proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.fixture
def channel(server: tuple[str, subprocess.Popen[str]]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server[0]) as ch:
        yield ch


def _template(job_dir: Path) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type="vault_job")
    t.id.name = "tests.vault"
    t.custom.update({"job_dir": str(job_dir)})
    t.interface.inputs.variables.add(key="x").value.type.simple = types_pb2.INTEGER
    t.interface.outputs.variables.add(key="y").value.type.simple = types_pb2.INTEGER
    t.metadata.runtime.version = "2.12.1"
    return t


def _inputs(x: int) -> common_pb2.Inputs:
    lit = l2.Literal()
    lit.scalar.primitive.integer = x
    return common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name="x", value=lit)])


def _create(channel: grpc.Channel, job_dir: Path, job: str, x: int) -> c2.CreateTaskResponse:
    meta = c2.TaskExecutionMetadata(namespace="flytesnacks-development")
    meta.task_execution_id.task_id.name = job
    request = c2.CreateTaskRequest(
        template=_template(job_dir), inputs=_inputs(x), output_prefix="s3://bucket/out", task_execution_metadata=meta,
        connection=security_pb2.Connection(task_type="vault_job", secrets={"api_key": TOKEN}, configs={"region": "x"}))
    response: c2.CreateTaskResponse = s2.AsyncConnectorServiceStub(channel).CreateTask(request)
    return response


def test_list_connectors_offers_async_agents_only(channel: grpc.Channel) -> None:
    listed = s2.ConnectorMetadataServiceStub(channel).ListConnectors(c2.ListConnectorsRequest())
    by_name = {c.name: [(t.name, t.version) for t in c.supported_task_categories] for c in listed.connectors}
    assert by_name == {"Vault Job Agent": [("vault_job", 0)]}
    got = s2.ConnectorMetadataServiceStub(channel).GetConnector(c2.GetConnectorRequest(name="Vault Job Agent"))
    assert got.connector.name == "Vault Job Agent"
    with pytest.raises(grpc.RpcError) as info:
        s2.ConnectorMetadataServiceStub(channel).GetConnector(c2.GetConnectorRequest(name="Echo Sync Agent"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_create_get_delete_with_connection_secrets(channel: grpc.Channel, job_dir: Path) -> None:
    created = _create(channel, job_dir, "job-a", 21)
    stub = s2.AsyncConnectorServiceStub(channel)
    category = c2.TaskCategory(name="vault_job", version=0)
    running = stub.GetTask(c2.GetTaskRequest(resource_meta=created.resource_meta, task_category=category))
    assert running.resource.phase == e2.TaskExecution.RUNNING
    record = json.loads((job_dir / "job-a.json").read_text())
    assert record["secret_names"] == ["connection"] and record["keys"] == ["api_key"]
    assert record["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert record["output_prefix"] == "s3://bucket/out"
    (job_dir / "job-a.done").write_text("")
    done = stub.GetTask(c2.GetTaskRequest(resource_meta=created.resource_meta, task_category=category))
    assert done.resource.phase == e2.TaskExecution.SUCCEEDED
    assert [(o.name, o.value.scalar.primitive.integer) for o in done.resource.outputs.literals] == [("y", 42)]
    assert dict(done.resource.custom_info) == {"job": "job-a"}
    stub.DeleteTask(c2.DeleteTaskRequest(resource_meta=created.resource_meta, task_category=category))
    assert (job_dir / "job-a.deleted").exists()


def test_unknown_and_sync_task_types_are_refused(channel: grpc.Channel, job_dir: Path) -> None:
    stub = s2.AsyncConnectorServiceStub(channel)
    for task_type, code in (("ghost", grpc.StatusCode.NOT_FOUND), ("echo_sync", grpc.StatusCode.FAILED_PRECONDITION)):
        template = _template(job_dir)
        template.type = task_type
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateTask(c2.CreateTaskRequest(template=template, inputs=_inputs(1)))
        assert info.value.code() == code, info.value.details()


def test_health_and_flyte1_services_share_the_port(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "flyteidl2.connector.AsyncConnectorService", "flyteidl.service.AsyncAgentService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    agents = agent_pb2_grpc.AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest())
    assert {a.name: a.is_sync for a in agents.agents} == {"Vault Job Agent": False, "Echo Sync Agent": True}
