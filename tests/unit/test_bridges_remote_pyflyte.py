"""The remote bridge against a REAL ``pyflyte serve connector`` (flytekit 1.16) on loopback.

Templates are the ones flytekit itself serialized (tests/fixtures/flytekit): a FileSensor and
WebhookTasks.  Nothing here imports flytekit in the test process; the connector service
runs flytekit's own SensorEngine and WebhookConnector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import tasks_pb2

from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.testing.pyflyte import PyflyteConnector
from agent_operator.bridges.remote import RemoteAgentError, RemoteAgentPool, RemoteAsyncAgent, RemoteSyncAgent, parse_remote_config
from agent_operator.bridges.selection import AgentSourceSelection
from agent_operator.sdk import AgentRegistry, TaskExecution
from agent_operator.serialization import literal_map_to_plain, load_inputs, load_task_template

from agent_http_server import Recorded, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"


@pytest.fixture(scope="module")
def connector() -> Iterator[PyflyteConnector]:
    with PyflyteConnector() as svc:
        yield svc


@pytest.fixture
def pool(connector: PyflyteConnector) -> Iterator[RemoteAgentPool]:
    cfg = parse_remote_config({"defaultAgent": {"endpoint": connector.endpoint, "insecure": True,
                                                "defaultTimeout": "20s"}, "pollInterval": 0})
    with AgentRegistry.snapshot():
        AgentRegistry._REGISTRY.clear()
        AgentRegistry._METADATA.clear()
        p = RemoteAgentPool(cfg, AgentSourceSelection())
        p.refresh()
        yield p
        p.stop()


def _template(name: str, base: str | None = None) -> tasks_pb2.TaskTemplate:
    raw = json.loads((FIXTURES / f"{name}.template.json").read_text())
    if base is not None:
        raw["custom"]["url"] = raw["custom"]["url"].replace("http://127.0.0.1:8000", base)
    return load_task_template(raw)


def test_list_agents_discovers_flytekit_sensor_and_webhook(pool: RemoteAgentPool) -> None:
    sensor, webhook = AgentRegistry.get_agent("sensor"), AgentRegistry.get_agent("webhook")
    assert isinstance(sensor, RemoteAsyncAgent) and sensor.name == "Sensor @ default"
    assert isinstance(webhook, RemoteSyncAgent) and webhook.name == "Webhook Connector @ default"


def test_file_sensor_template_waits_for_the_file_then_succeeds(pool: RemoteAgentPool, tmp_path: Path) -> None:
    agent = AgentRegistry.get_agent("sensor")
    assert isinstance(agent, RemoteAsyncAgent)
    template = _template("file_sensor")
    target = tmp_path / "landing" / "data.csv"
    inputs = load_inputs({"path": str(target)}, template)
    meta_pb = agent_pb2.TaskExecutionMetadata()
    meta_pb.task_execution_id.task_id.name = "uid-1/1"

    async def scenario() -> tuple[bytes, list[int]]:
        meta = await agent.create(template, str(tmp_path / "out"), inputs, meta_pb)
        stored = meta.encode()
        phases = [(await agent.get(OpaqueResourceMeta.decode(stored))).phase]
        target.parent.mkdir()
        target.write_text("a,b\n")
        phases.append((await agent.get(OpaqueResourceMeta.decode(stored))).phase)
        await agent.delete(OpaqueResourceMeta.decode(stored))
        return stored, phases

    stored, phases = asyncio.run(scenario())
    # flytekit's SensorMetadata JSON, kept byte for byte
    assert json.loads(stored)["sensor_name"] == "FileSensor"
    assert phases == [TaskExecution.RUNNING, TaskExecution.SUCCEEDED]


def test_webhook_template_posts_through_the_sync_service(pool: RemoteAgentPool) -> None:
    def ok(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b"thanks"

    agent = AgentRegistry.get_agent("webhook")
    assert isinstance(agent, RemoteSyncAgent)
    with serve({("POST", "/items/9"): ok}) as srv:
        template = _template("webhook_post", srv.base)
        res = asyncio.run(agent.do(template, "/tmp/out", load_inputs({"s": "hey", "item_id": 9}, template)))
    assert res.phase == TaskExecution.SUCCEEDED, res.message
    assert json.loads(srv.requests[0].body) == {"q": "hey", "n": 9, "note": "item 9 of hey"}
    assert srv.requests[0].headers["X-Request"] == "hey"
    info = res.outputs.literals["info"].scalar
    # flytekit's connector service converts its dict output with the TypeEngine
    plain: Any = literal_map_to_plain(res.outputs)["info"]
    assert plain["status_code"] == 200 and plain["response_data"] == "thanks"
    if info.HasField("binary"):
        assert msgpack.unpackb(info.binary.value)["status_code"] == 200


def test_webhook_http_failure_is_a_failed_resource(pool: RemoteAgentPool) -> None:
    agent = AgentRegistry.get_agent("webhook")
    with serve({("GET", "/status"): lambda rec: (500, {}, b"boom")}) as srv:
        template = _template("webhook_get", srv.base)
        res = asyncio.run(agent.do(template, "/tmp/out", load_inputs(None, template)))
    assert res.phase == TaskExecution.FAILED and "500" in (res.message or "")


def test_unknown_task_type_is_not_found_and_permanent(connector: PyflyteConnector) -> None:
    cfg = parse_remote_config({"defaultAgent": {"endpoint": connector.endpoint, "insecure": True}})
    from agent_operator.bridges.remote.client import RemoteAgentClient
    from agent_operator.sdk import TaskCategory

    agent = RemoteAsyncAgent(RemoteAgentClient(cfg.deployments["default"]), TaskCategory("no_such_type"), "x", "default")
    with pytest.raises(RemoteAgentError) as e:
        asyncio.run(agent.create(tasks_pb2.TaskTemplate(type="no_such_type"), "/o"))
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "Cannot find connector for task type: no_such_type" in str(e.value)


def test_connector_exception_is_internal_with_the_traceback_message(pool: RemoteAgentPool) -> None:
    agent = AgentRegistry.get_agent("sensor")
    assert isinstance(agent, RemoteAsyncAgent)
    with pytest.raises(RemoteAgentError) as e:
        asyncio.run(agent.get(OpaqueResourceMeta(b'{"sensor_module": "no.such.module", "sensor_name": "X"}')))
    assert e.value.code == grpc.StatusCode.INTERNAL
    assert "failed to get sensor task with error" in str(e.value) and "No module named 'no'" in str(e.value)
