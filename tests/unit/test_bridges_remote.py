"""The remote bridge against a scriptable Python gRPC agent service: calls, status classes, discovery."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2, tasks_pb2

from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.bridges.remote import (
    RemoteAgentError,
    RemoteAgentPool,
    RemoteAsyncAgent,
    RemoteSyncAgent,
    parse_remote_config,
    resource_from_remote,
)
from agent_operator.bridges.remote.client import RemoteAgentClient
from agent_operator.bridges.selection import AgentSourceSelection
from agent_operator.cli import agent_sources
from agent_operator.sdk import AgentRegistry, TaskCategory, TaskExecution, TransientAgentError

from grpc_test_service import agent_meta, agent_service


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    with AgentRegistry.snapshot():
        yield
    agent_sources.close()


def _client(endpoint: str, **extra: Any) -> RemoteAgentClient:
    cfg = parse_remote_config({"defaultAgent": {"endpoint": endpoint, "insecure": True, **extra}})
    return RemoteAgentClient(cfg.deployments["default"])


def _template(task_type: str = "remote_job", **custom: Any) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type=task_type)
    t.custom.update(custom)
    return t


def _async_agent(port: int, task_type: str = "remote_job", **extra: Any) -> RemoteAsyncAgent:
    return RemoteAsyncAgent(_client(f"127.0.0.1:{port}", **extra), TaskCategory(task_type), "Test Agent", "default")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_create_get_delete_pass_everything_propeller_passes() -> None:
    with agent_service() as (state, port):
        agent = _async_agent(port)
        inputs = literals_pb2.LiteralMap()
        inputs.literals["n"].scalar.primitive.integer = 4
        meta_pb = agent_pb2.TaskExecutionMetadata()
        meta_pb.task_execution_id.task_id.name = "uid-7/1"
        template = _template(resource={"phase": "SUCCEEDED", "message": "done"})

        async def scenario() -> tuple[bytes, Any]:
            meta = await agent.create(template, "s3://bucket/out", inputs, meta_pb)
            res = await agent.get(OpaqueResourceMeta.decode(meta.encode()))
            await agent.delete(OpaqueResourceMeta.decode(meta.encode()))
            await agent.client.aclose()
            return meta.encode(), res

        stored, res = asyncio.run(scenario())
    create = state.calls[0][2]
    assert create.output_prefix == "s3://bucket/out" and create.inputs == inputs
    assert create.task_execution_metadata.task_execution_id.task_id.name == "uid-7/1"
    # the service's resource_meta bytes travel back unchanged
    assert json.loads(stored)["exec_id"] == "uid-7/1"
    assert state.calls[1][2].resource_meta == stored and state.calls[2][2].resource_meta == stored
    assert state.calls[1][2].task_category.name == "remote_job" and state.calls[1][2].task_type == "remote_job"
    assert (res.phase, res.message) == (TaskExecution.SUCCEEDED, "done")


@pytest.mark.parametrize("code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"])
def test_overload_and_outage_codes_are_transient(code: str) -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        with pytest.raises(TransientAgentError) as e:
            asyncio.run(agent.create(_template(fail={"code": code, "details": "busy, try later"}), "/o"))
    assert code in str(e.value) and "busy, try later" in str(e.value)


@pytest.mark.parametrize("code", ["NOT_FOUND", "INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED"])
def test_other_codes_are_permanent_with_the_service_message(code: str) -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        with pytest.raises(RemoteAgentError) as e:
            asyncio.run(agent.create(_template(fail={"code": code, "details": "Cannot find connector for task type: x."}), "/o"))
    assert not isinstance(e.value, TransientAgentError)
    assert e.value.code == grpc.StatusCode[code]
    assert f"CreateTask on agent service 127.0.0.1:{port} failed with {code}: Cannot find connector" in str(e.value)


def test_retry_info_detail_becomes_retry_after() -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        with pytest.raises(TransientAgentError) as e:
            asyncio.run(agent.create(_template(fail={"code": "RESOURCE_EXHAUSTED", "retry_after": 7}), "/o"))
    assert e.value.retry_after == 7


def test_per_call_deadline_is_enforced_and_transient() -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port, defaultTimeout="5s", timeouts={"CreateTask": "0.2s"})
        with pytest.raises(TransientAgentError, match="DEADLINE_EXCEEDED"):
            asyncio.run(agent.create(_template(sleep=1.5), "/o"))


def test_unreachable_service_is_transient() -> None:
    agent = _async_agent(_free_port(), defaultTimeout="2s")
    with pytest.raises(TransientAgentError, match="UNAVAILABLE"):
        asyncio.run(agent.create(_template(), "/o"))


def test_get_errors_are_classified_too() -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        meta = OpaqueResourceMeta(json.dumps({"get": {"fail": {"code": "INTERNAL", "details": "traceback..."}}}).encode())
        with pytest.raises(RemoteAgentError, match="GetTask .* INTERNAL: traceback"):
            asyncio.run(agent.get(meta))


def test_agent_error_decides_failure_kind_and_reaches_the_message() -> None:
    recoverable = agent_pb2.Resource(phase=execution_pb2.TaskExecution.FAILED, message="quota hit")
    recoverable.agent_error.code = "QUOTA"
    recoverable.agent_error.kind = agent_pb2.AgentError.RECOVERABLE
    res = resource_from_remote(recoverable)
    assert res.phase == TaskExecution.RETRYABLE_FAILED and res.message == "[QUOTA] quota hit"

    fatal = agent_pb2.Resource(phase=execution_pb2.TaskExecution.RETRYABLE_FAILED, message="bad sql")
    fatal.agent_error.code = "SYNTAX"
    fatal.agent_error.kind = agent_pb2.AgentError.NON_RECOVERABLE
    fatal.agent_error.origin = execution_pb2.ExecutionError.USER
    res = resource_from_remote(fatal)
    assert res.phase == TaskExecution.FAILED and res.message == "[SYNTAX] bad sql (origin: USER)"

    ok = agent_pb2.Resource(phase=execution_pb2.TaskExecution.SUCCEEDED)
    ok.agent_error.code = "IGNORED"
    assert resource_from_remote(ok).phase == TaskExecution.SUCCEEDED


def test_agent_error_travels_over_the_wire() -> None:
    resource = {"phase": "FAILED", "message": "denied", "agentError": {"code": "AUTH", "kind": "NON_RECOVERABLE"}}
    with agent_service() as (_, port):
        agent = _async_agent(port)
        meta = OpaqueResourceMeta(json.dumps({"resource": resource}).encode())
        res = asyncio.run(agent.get(meta))
    assert (res.phase, res.message) == (TaskExecution.FAILED, "[AUTH] denied")


@pytest.mark.parametrize(
    ("state", "phase"),
    [("PENDING", TaskExecution.INITIALIZING), ("RUNNING", TaskExecution.RUNNING),
     ("SUCCEEDED", TaskExecution.SUCCEEDED), ("PERMANENT_FAILURE", TaskExecution.FAILED),
     ("RETRYABLE_FAILURE", TaskExecution.RETRYABLE_FAILED)],
)
def test_old_services_reporting_only_state_are_understood(state: str, phase: int) -> None:
    assert resource_from_remote(agent_pb2.Resource(state=agent_pb2.State.Value(state))).phase == phase


def test_sync_types_use_execute_task_sync_with_header_then_inputs() -> None:
    with agent_service() as (state, port):
        agent = RemoteSyncAgent(_client(f"127.0.0.1:{port}"), TaskCategory("echo"), "Echo", "default")
        inputs = literals_pb2.LiteralMap()
        inputs.literals["x"].scalar.primitive.string_value = "hi"
        meta_pb = agent_pb2.TaskExecutionMetadata()
        meta_pb.task_execution_id.task_id.name = "uid/1"
        res = asyncio.run(agent.do(_template("echo", resource={"phase": "SUCCEEDED"}), "/o", inputs,
                                   task_execution_metadata=meta_pb))
    header, sent_inputs = state.calls[0][2]
    assert header.output_prefix == "/o" and header.task_execution_metadata.task_execution_id.task_id.name == "uid/1"
    assert sent_inputs == inputs
    assert res.phase == TaskExecution.SUCCEEDED and res.outputs == inputs


def test_sync_errors_are_classified() -> None:
    with agent_service() as (_, port):
        agent = RemoteSyncAgent(_client(f"127.0.0.1:{port}"), TaskCategory("echo"), "Echo", "default")
        with pytest.raises(TransientAgentError, match="ExecuteTaskSync .* UNAVAILABLE"):
            asyncio.run(agent.do(_template("echo", fail={"code": "UNAVAILABLE"}), "/o"))


def test_task_logs_are_streamed_when_offered_and_not_implemented_otherwise() -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        logs = asyncio.run(agent.get_logs(OpaqueResourceMeta(json.dumps({"logs": [["a", "b"], ["c"]]}).encode())))
        assert list(logs.body.results) == ["a", "b", "c"]
        with pytest.raises(NotImplementedError):
            asyncio.run(agent.get_logs(OpaqueResourceMeta(b"{}")))


def test_round_robin_spreads_calls_over_every_resolved_address() -> None:
    with agent_service("a") as (a, pa), agent_service("b") as (b, pb):
        agent = RemoteAsyncAgent(_client(f"ipv4:127.0.0.1:{pa},127.0.0.1:{pb}"), TaskCategory("remote_job"), "T", "default")

        async def many() -> None:
            for _ in range(20):
                await agent.create(_template(), "/o")

        asyncio.run(many())
    # round_robin rotates once both sub-channels are ready (the first calls may all hit one)
    assert a.methods().count("CreateTask") >= 3 and b.methods().count("CreateTask") >= 3


def test_tls_with_the_configured_ca_works_and_untrusted_server_is_unavailable(tmp_path: Path) -> None:
    from agent_operator.testing.certs import generate_pki

    pki = generate_pki(tmp_path)
    creds = grpc.ssl_server_credentials([(pki.serving_key.read_bytes(), pki.serving_cert.read_bytes())])
    with agent_service(credentials=creds) as (_, port):
        good = parse_remote_config({"defaultAgent": {"endpoint": f"localhost:{port}", "tls": {"caFile": str(pki.ca_cert)}}})
        agent = RemoteAsyncAgent(RemoteAgentClient(good.deployments["default"]), TaskCategory("remote_job"), "T", "default")
        assert asyncio.run(agent.create(_template(), "/o")).encode()
        untrusted = parse_remote_config({"defaultAgent": {"endpoint": f"localhost:{port}", "defaultTimeout": "3s"}})
        agent = RemoteAsyncAgent(RemoteAgentClient(untrusted.deployments["default"]), TaskCategory("remote_job"), "T", "default")
        with pytest.raises(TransientAgentError, match="UNAVAILABLE"):
            asyncio.run(agent.create(_template(), "/o"))


def test_discovery_registers_listed_types_and_refresh_picks_up_new_ones() -> None:
    with agent_service(agents=[agent_meta("Bq", "bq_job"), agent_meta("Chat", ("chat", 1), is_sync=True)]) as (state, port):
        cfg = parse_remote_config({"defaultAgent": {"endpoint": f"127.0.0.1:{port}", "insecure": True},
                                   "pollInterval": 0})
        pool = RemoteAgentPool(cfg, AgentSourceSelection())
        pool.refresh()
        bq, chat = AgentRegistry.get_agent("bq_job"), AgentRegistry.get_agent("chat", 1)
        assert isinstance(bq, RemoteAsyncAgent) and isinstance(chat, RemoteSyncAgent)
        assert bq.name == "Bq @ default"
        state.agents.append(agent_meta("Snow", "snowflake"))
        pool.refresh()
        assert isinstance(AgentRegistry.get_agent("snowflake"), RemoteAsyncAgent)
        assert AgentRegistry.get_agent("bq_job") is bq  # same object across refreshes
        state.list_agents_code = grpc.StatusCode.UNAVAILABLE
        pool.refresh()  # service trouble keeps what was discovered
        assert AgentRegistry.get_agent("snowflake")
        pool.stop()


def test_static_routes_serve_types_of_services_without_list_agents() -> None:
    with agent_service() as (state, port):
        state.list_agents_code = grpc.StatusCode.UNIMPLEMENTED
        cfg = parse_remote_config({"defaultAgent": {"endpoint": f"127.0.0.1:{port}", "insecure": True},
                                   "agentForTaskTypes": {"legacy": "default", "legacy_sync": {"agent": "default", "sync": True}}})
        pool = RemoteAgentPool(cfg)
        pool.refresh()
        assert isinstance(AgentRegistry.get_agent("legacy"), RemoteAsyncAgent)
        assert isinstance(AgentRegistry.get_agent("legacy_sync"), RemoteSyncAgent)
        pool.stop()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    agent_sources.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_builtin_wins_by_default_and_remote_when_selected() -> None:
    with agent_service(agents=[agent_meta("Remote Sensor", "sensor")]) as (_, port):
        common = ("--flytekit", "off", "--remote-endpoint", f"127.0.0.1:{port}", "--remote-insecure")
        agent_sources.load(_args(*common))
        assert type(AgentRegistry.get_agent("sensor")).__module__ == "agent_operator.agents.sensor"
        agent_sources.close()
        with AgentRegistry.snapshot():
            agent_sources.load(_args(*common, "--agent-source", "sensor=remote"))
            assert isinstance(AgentRegistry.get_agent("sensor"), RemoteAsyncAgent)


def test_agents_command_lists_discovered_remote_types(capsys: pytest.CaptureFixture[str]) -> None:
    from agent_operator.cli.main import main

    with agent_service(agents=[agent_meta("Bq", "bq_job")]) as (_, port):
        rc = main(["agents", "--flytekit", "off", "--remote-endpoint", f"127.0.0.1:{port}", "--remote-insecure", "-o", "json"])
    assert rc == 0
    rows = {r["taskType"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["bq_job"]["source"] == "remote:default" and rows["bq_job"]["name"] == "Bq @ default"


def test_unreachable_service_at_discovery_is_named_in_not_found_messages() -> None:
    from agent_operator.sdk import FlyteAgentNotFound

    port = _free_port()
    agent_sources.load(_args("--flytekit", "off", "--remote-endpoint", f"127.0.0.1:{port}", "--remote-insecure",
                             "--remote-timeout", "1s"))
    with pytest.raises(FlyteAgentNotFound) as e:
        AgentRegistry.get_agent("bq_job")
    assert "Remote agent service discovery failed" in str(e.value) and f"127.0.0.1:{port}" in str(e.value)
    assert e.value.transient  # the type may appear once the service answers: worth retrying
    agent_sources.close()
    with pytest.raises(FlyteAgentNotFound) as e:
        AgentRegistry.get_agent("bq_job")
    assert "discovery failed" not in str(e.value) and not e.value.transient


def test_periodic_discovery_thread_registers_types_added_later() -> None:
    import time

    with agent_service(agents=[agent_meta("Bq", "bq_job")]) as (state, port):
        cfg = parse_remote_config({"defaultAgent": {"endpoint": f"127.0.0.1:{port}", "insecure": True},
                                   "pollInterval": "0.2s"})
        pool = RemoteAgentPool(cfg)
        pool.refresh()
        pool.start()
        try:
            state.agents.append(agent_meta("Late", "late_type"))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "late_type" not in {a.task_category.name for a in AgentRegistry.agents()}:
                time.sleep(0.1)
            assert isinstance(AgentRegistry.get_agent("late_type"), RemoteAsyncAgent)
            assert state.methods().count("ListAgents") >= 2
        finally:
            pool.stop()


def test_oversized_request_is_permanent_although_grpc_calls_it_resource_exhausted() -> None:
    with agent_service() as (_, port):
        agent = _async_agent(port)
        with pytest.raises(RemoteAgentError) as e:
            asyncio.run(agent.create(_template(blob="x" * (5 * 1024 * 1024)), "/o"))
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in str(e.value)


def test_unreachable_service_is_asked_again_sooner_than_the_poll_interval() -> None:
    port = _free_port()
    cfg = parse_remote_config({"defaultAgent": {"endpoint": f"127.0.0.1:{port}", "insecure": True,
                                                "defaultTimeout": "1s"}, "pollInterval": "10m"})
    pool = RemoteAgentPool(cfg)
    assert pool.next_wait() == 600
    pool.refresh()
    assert pool.next_wait() == 5
    import time

    with agent_service(agents=[agent_meta("Bq", "bq_job")], port=port):
        deadline = time.monotonic() + 20  # the channel reconnects within its (capped) backoff
        while pool.refresh() == [] and time.monotonic() < deadline:
            time.sleep(0.5)
    assert pool.next_wait() == 600 and isinstance(AgentRegistry.get_agent("bq_job"), RemoteAsyncAgent)
    pool.stop()
