"""The sensor agent runs flytekit 1.16's serialized FileSensor against real files and a loopback server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from flyteidl.core import tasks_pb2

from agent_operator.agents.sensor import SensorAgent, SensorMetadata
from agent_operator.sdk import AgentRegistry, TaskExecution, TransientAgentError, load_agents
from agent_operator.serialization import load_inputs, load_task_template

from agent_http_server import closed_port_url, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"


def _template(name: str = "file_sensor", **custom: object) -> tasks_pb2.TaskTemplate:
    raw = json.loads((FIXTURES / f"{name}.template.json").read_text())
    raw["custom"].update(custom)
    return load_task_template(raw)


def _poll(path: str, template: tasks_pb2.TaskTemplate | None = None) -> int:
    """create + one get through an encode/decode of the metadata, as the operator does."""
    agent = SensorAgent()
    template = template or _template()
    meta = agent.create(template, "", load_inputs({"path": path}, template))
    stored = meta.encode()
    return agent.get(agent.metadata_type.decode(stored)).phase


@pytest.mark.parametrize("name", ["file_sensor", "file_sensor_with_timeout"])
def test_local_file_sensor_waits_then_succeeds(tmp_path: Path, name: str) -> None:
    agent = SensorAgent()
    template = _template(name)
    target = tmp_path / "arrives.csv"
    meta = agent.create(template, "", load_inputs({"path": str(target)}, template))
    first = agent.get(meta)
    assert first.phase == TaskExecution.RUNNING
    assert first.message == f"waiting for {target}"
    target.write_text("x")
    done = agent.get(meta)
    assert done.phase == TaskExecution.SUCCEEDED and done.outputs is None
    agent.delete(meta)  # nothing to stop; must not fail


def test_file_urls_and_directories_count(tmp_path: Path) -> None:
    assert _poll(tmp_path.as_uri()) == TaskExecution.SUCCEEDED
    assert _poll((tmp_path / "missing").as_uri()) == TaskExecution.RUNNING


def test_metadata_matches_flytekit_sensor_metadata(tmp_path: Path) -> None:
    template = _template()
    meta = SensorAgent().create(template, "", load_inputs({"path": str(tmp_path)}, template))
    assert [f.name for f in dataclasses.fields(SensorMetadata)] == [
        "sensor_module", "sensor_name", "sensor_config", "inputs",
    ]
    assert (meta.sensor_module, meta.sensor_name) == ("flytekit.sensor.file_sensor", "FileSensor")
    assert meta.inputs == {"path": str(tmp_path)}
    assert SensorMetadata.decode(meta.encode()) == meta


def test_http_paths_use_head_then_get_when_head_is_not_allowed() -> None:
    routes = {
        ("HEAD", "/present.csv"): lambda rec: (200, {}, b""),
        ("HEAD", "/nohead.csv"): lambda rec: (405, {}, b""),
        ("GET", "/nohead.csv"): lambda rec: (200, {}, b"data"),
    }
    with serve(routes) as srv:
        assert _poll(f"{srv.base}/present.csv") == TaskExecution.SUCCEEDED
        assert _poll(f"{srv.base}/absent.csv") == TaskExecution.RUNNING
        assert _poll(f"{srv.base}/nohead.csv") == TaskExecution.SUCCEEDED
    assert [(r.method, r.path) for r in srv.requests] == [
        ("HEAD", "/present.csv"), ("HEAD", "/absent.csv"), ("HEAD", "/nohead.csv"), ("GET", "/nohead.csv"),
    ]


def test_http_waiting_message_shows_status_but_not_query_tokens() -> None:
    with serve({}) as srv:
        template = _template()
        agent = SensorAgent()
        meta = agent.create(template, "", load_inputs({"path": f"{srv.base}/x.csv?sig=SECRET"}, template))
        res = agent.get(meta)
    assert res.phase == TaskExecution.RUNNING
    assert res.message == f"waiting for {srv.base}/x.csv (HTTP 404)"


def test_server_errors_and_unreachable_hosts_are_transient() -> None:
    with serve({("HEAD", "/flaky"): lambda rec: (500, {}, b"")}) as srv:
        with pytest.raises(TransientAgentError, match="HTTP 500"):
            _poll(f"{srv.base}/flaky")
    with pytest.raises(TransientAgentError, match="cannot reach"):
        _poll(f"{closed_port_url()}/x")


def test_other_schemes_go_through_fsspec() -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    path = "memory://sensor-test/ready.flag"
    try:
        assert _poll(path) == TaskExecution.RUNNING
        fs.pipe("/sensor-test/ready.flag", b"1")
        assert _poll(path) == TaskExecution.SUCCEEDED
    finally:
        fs.rm("/sensor-test", recursive=True)


def test_unknown_scheme_without_filesystem_is_a_clear_error() -> None:
    pytest.importorskip("fsspec")
    with pytest.raises(ValueError, match="sensor path scheme 'nosuchfs'"):
        _poll("nosuchfs://bucket/key")


def test_custom_sensor_classes_are_rejected_at_create() -> None:
    template = _template(sensor_module="my_pkg.sensors", sensor_name="QueueSensor")
    with pytest.raises(ValueError, match="sensor my_pkg.sensors.QueueSensor is not built in"):
        SensorAgent().create(template, "", load_inputs({"path": "/x"}, template))


def test_missing_path_input_is_rejected_at_create() -> None:
    with pytest.raises(ValueError, match="input 'path' is required"):
        SensorAgent().create(_template(), "", None)


def test_sensor_agent_is_discovered_as_async_agent() -> None:
    with AgentRegistry.snapshot():
        load_agents()
        assert isinstance(AgentRegistry.get_agent("sensor"), SensorAgent)
        assert not AgentRegistry.get_agent_metadata("Sensor").is_sync
