"""`agent-operator serve` called with flyteidl stubs exactly the way FlytePropeller's agent plugin calls it."""

from __future__ import annotations

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
from flyteidl.core import execution_pb2, literals_pb2, tasks_pb2, types_pb2
from flyteidl.service import agent_pb2_grpc
from google.protobuf import json_format

from agent_operator.testing.pyflyte import free_port
from agent_operator.serialization import literal_map_to_plain

HERE = Path(__file__).resolve().parent
HEALTH_PORT = free_port()
Phase = execution_pb2.TaskExecution


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port_file = tmp_path_factory.mktemp("serve") / "port"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    exe = Path(sys.executable).with_name("agent-operator")
    proc = subprocess.Popen(
        [str(exe), "serve", "--address", "127.0.0.1:0", "--port-file", str(port_file), "--grace", "1",
         "--health-port", str(HEALTH_PORT),
         "--flytekit", "off", "--agent", "serve_test_agents:CountingAgent", "--agent", "serve_test_agents:GreetAgent"],
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


def _template(task_type: str, mode: str = "ok", outputs: dict[str, int] | None = None) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type=task_type)
    t.id.name = f"tests.{task_type}"
    t.custom.update({"mode": mode})
    for name, simple in (outputs or {}).items():
        t.interface.outputs.variables[name].type.simple = simple  # type: ignore[assignment]
    return t


def _exec_meta(key: str) -> agent_pb2.TaskExecutionMetadata:
    meta = agent_pb2.TaskExecutionMetadata(namespace="flytesnacks-development")
    meta.task_execution_id.task_id.name = key
    return meta


def test_list_agents_reports_types_and_sync_flags(channel: grpc.Channel) -> None:
    stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
    agents = {a.name: a for a in stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents}
    assert not agents["Counting Agent"].is_sync and agents["Greet Agent"].is_sync
    assert [(c.name, c.version) for c in agents["Counting Agent"].supported_task_categories] == [("counting", 0)]
    assert list(agents["Greet Agent"].supported_task_types) == ["greet"]
    got = stub.GetAgent(agent_pb2.GetAgentRequest(name="Greet Agent"), timeout=10).agent
    assert got.is_sync
    with pytest.raises(grpc.RpcError) as e:
        stub.GetAgent(agent_pb2.GetAgentRequest(name="nobody"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_create_get_until_terminal_then_delete(channel: grpc.Channel) -> None:
    stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
    inputs = literals_pb2.LiteralMap()
    inputs.literals["n"].scalar.primitive.integer = 3
    created = stub.CreateTask(agent_pb2.CreateTaskRequest(
        template=_template("counting"), inputs=inputs, output_prefix="s3://b/o", task_execution_metadata=_exec_meta("job-1"),
    ), timeout=10)
    assert json.loads(created.resource_meta) == {"job_id": "job-1", "target": 3}
    phases, states = [], []
    for _ in range(10):
        # propeller sends both the deprecated task_type and task_category
        res = stub.GetTask(agent_pb2.GetTaskRequest(
            task_type="counting", task_category=agent_pb2.TaskCategory(name="counting", version=0),
            resource_meta=created.resource_meta,
        ), timeout=10).resource
        phases.append(res.phase)
        states.append(res.state)
        if res.phase == Phase.SUCCEEDED:
            break
    assert phases == [Phase.RUNNING, Phase.RUNNING, Phase.SUCCEEDED]
    assert states[-1] == agent_pb2.SUCCEEDED and states[0] == agent_pb2.RUNNING
    assert literal_map_to_plain(res.outputs) == {"polls": 3}
    assert json_format.MessageToDict(res.custom_info) == {"job": "job-1"}
    stub.DeleteTask(agent_pb2.DeleteTaskRequest(task_type="counting", resource_meta=created.resource_meta), timeout=10)


def test_execute_task_sync_header_then_inputs(channel: grpc.Channel) -> None:
    stub = agent_pb2_grpc.SyncAgentServiceStub(channel)
    inputs = literals_pb2.LiteralMap()
    inputs.literals["name"].scalar.primitive.string_value = "flyte"
    template = _template("greet", outputs={"greeting": types_pb2.STRING, "score": types_pb2.FLOAT})
    requests = iter([
        agent_pb2.ExecuteTaskSyncRequest(header=agent_pb2.CreateRequestHeader(
            template=template, output_prefix="s3://b/o", task_execution_metadata=_exec_meta("sync-1"))),
        agent_pb2.ExecuteTaskSyncRequest(inputs=inputs),
    ])
    (response,) = list(stub.ExecuteTaskSync(requests, timeout=10))
    res = response.header.resource
    assert res.phase == Phase.SUCCEEDED and res.state == agent_pb2.SUCCEEDED
    assert res.outputs.literals["greeting"].scalar.primitive.string_value == "hello flyte (sync-1)"
    # plain outputs are typed by the template's interface: 1 declared as float is a float literal
    assert res.outputs.literals["score"].scalar.primitive.float_value == 1.0


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()  # type: ignore[operator]
    return e.value.code(), e.value.details()


def test_error_codes_match_flytekits_service_plus_unavailable_for_transient(channel: grpc.Channel) -> None:
    stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
    code, details = _code(lambda: stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("nope")), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "Cannot find agent for task category: nope_v0" in details
    code, details = _code(lambda: stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("counting", "broken")), timeout=10))
    assert code == grpc.StatusCode.INTERNAL and "warehouse rejected the query" in details
    code, details = _code(lambda: stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("counting", "transient")), timeout=10))
    assert code == grpc.StatusCode.UNAVAILABLE and "warehouse throttled" in details
    code, details = _code(lambda: stub.GetTask(agent_pb2.GetTaskRequest(task_type="counting", resource_meta=b"garbage"), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "CountMeta" in details
    code, _ = _code(lambda: stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("greet")), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_agent_calls_are_on_the_metrics_endpoint(channel: grpc.Channel) -> None:
    import urllib.request

    stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
    stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("counting"), task_execution_metadata=_exec_meta("m-1")),
                    timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.CreateTask(agent_pb2.CreateTaskRequest(template=_template("counting", "transient")), timeout=10)
    body = urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/metrics", timeout=10).read().decode()
    assert 'agent_operator_agent_call_duration_seconds_count{agent="Counting Agent",method="create"}' in body
    assert 'agent_operator_agent_errors_total{agent="Counting Agent",kind="transient",method="create"}' in body
    assert urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/readyz", timeout=10).status == 200


def test_our_remote_bridge_reads_the_transient_error_with_retry_after(server: tuple[str, subprocess.Popen[str]]) -> None:
    import asyncio

    from agent_operator.bridges.remote import RemoteAsyncAgent, parse_remote_config
    from agent_operator.bridges.remote.client import RemoteAgentClient
    from agent_operator.sdk import TaskCategory, TransientAgentError

    cfg = parse_remote_config({"defaultAgent": {"endpoint": server[0], "insecure": True}})
    agent = RemoteAsyncAgent(RemoteAgentClient(cfg.deployments["default"]), TaskCategory("counting"), "c", "default")
    with pytest.raises(TransientAgentError) as e:
        asyncio.run(agent.create(_template("counting", "transient"), "/o"))
    assert e.value.retry_after == 3


def test_sigterm_stops_the_server_cleanly(server: tuple[str, subprocess.Popen[str]]) -> None:
    _, proc = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    out = proc.stdout.read() if proc.stdout else ""
    assert "listening on port" in out and "counting_v0" in out and "greet_v0" in out


def _start_serve(args: list[str], port_file: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("agent-operator")
    proc = subprocess.Popen([str(exe), "serve", "--address", "127.0.0.1:0", "--port-file", str(port_file),
                             "--grace", "0", "--flytekit", "off", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return proc


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    from agent_operator.bridges.remote import parse_remote_config
    from agent_operator.bridges.remote.client import RemoteAgentClient
    from agent_operator.sdk import TransientAgentError
    from agent_operator.testing.certs import generate_pki

    pki = generate_pki(tmp_path / "pki")
    proc = _start_serve(["--tls-cert-file", str(pki.serving_cert), "--tls-key-file", str(pki.serving_key),
                         "--tls-client-ca-file", str(pki.ca_cert)], tmp_path / "port")
    try:
        endpoint = f"localhost:{(tmp_path / 'port').read_text().strip()}"

        def client(**tls: str) -> RemoteAgentClient:
            cfg = parse_remote_config({"defaultAgent": {"endpoint": endpoint, "defaultTimeout": "5s",
                                                        "tls": {"caFile": str(pki.ca_cert), **tls}}})
            return RemoteAgentClient(cfg.deployments["default"])

        with_cert = client(certFile=str(pki.admin_cert), keyFile=str(pki.admin_key))
        assert {a.name for a in with_cert.list_agents_blocking()} >= {"Sensor", "Webhook Agent"}
        with pytest.raises(TransientAgentError, match="UNAVAILABLE"):
            client().list_agents_blocking()  # no client certificate: the handshake is refused
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_bad_tls_flags_exit_1_naming_them(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("agent-operator")
    run = subprocess.run([str(exe), "serve", "--flytekit", "off", "--tls-cert-file", "x.crt"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "--tls-cert-file and --tls-key-file must be given together" in run.stderr
