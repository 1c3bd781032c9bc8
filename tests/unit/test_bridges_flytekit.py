"""The in-process flytekit bridge runs flytekit's own connectors (and ported-nowhere agents) unchanged."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import tasks_pb2

from agent_operator.bridges.flytekit import load_flytekit_agents, missing_agent_hint
from agent_operator.bridges.flytekit.adapter import FlytekitAsyncAgent, FlytekitSyncAgent
from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.bridges.selection import AgentSourceSelection
from agent_operator.cli import agent_sources
from agent_operator.sdk import (
    AgentRegistry,
    AsyncAgentBase,
    FlyteAgentNotFound,
    SyncAgentBase,
    TaskCategory,
    TaskExecution,
    TransientAgentError,
)
from agent_operator.serialization import literal_map_to_plain, load_inputs, load_task_template

from agent_http_server import Recorded, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"


@pytest.fixture(autouse=True)
def isolated_registries() -> Iterator[None]:
    """Our registry restored after each test; test-only types removed from flytekit's registry."""
    import flytekit.extras.webhook  # noqa: F401 - registers once per process: keep it in `saved`
    from flytekit.extend.backend.base_connector import ConnectorRegistry

    saved = dict(ConnectorRegistry._REGISTRY)
    saved_meta = dict(ConnectorRegistry._METADATA)
    with AgentRegistry.snapshot():
        yield
    agent_sources.close()
    ConnectorRegistry._REGISTRY.clear()
    ConnectorRegistry._REGISTRY.update(saved)
    ConnectorRegistry._METADATA.clear()
    ConnectorRegistry._METADATA.update(saved_meta)


def _template(name: str, **custom: Any) -> tasks_pb2.TaskTemplate:
    raw = json.loads((FIXTURES / f"{name}.template.json").read_text())
    raw["custom"].update(custom)
    return load_task_template(raw)


def _flytekit_agent(task_type: str) -> Any:
    load_flytekit_agents(AgentSourceSelection.parse([f"{task_type}=flytekit"]))
    return AgentRegistry.get_agent(task_type)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    agent_sources.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flytekit_sensor_engine_runs_a_file_sensor_template_unchanged(tmp_path: Path) -> None:
    from flytekit.sensor.base_sensor import SensorMetadata
    from flytekit.sensor.sensor_engine import SensorEngine

    agent = _flytekit_agent("sensor")
    assert isinstance(agent, FlytekitAsyncAgent) and isinstance(agent.connector, SensorEngine)
    template = _template("file_sensor")
    target = tmp_path / "arrives-later.txt"
    inputs = load_inputs({"path": str(target)}, template)

    async def scenario() -> tuple[bytes, int, int]:
        meta = await agent.create(template, "/tmp/out", inputs, agent_pb2.TaskExecutionMetadata())
        stored = meta.encode()
        # what the operator keeps in status is flytekit's own encoding of SensorMetadata
        before = await agent.get(OpaqueResourceMeta.decode(stored))
        target.write_text("here")
        after = await agent.get(OpaqueResourceMeta.decode(stored))
        await agent.delete(OpaqueResourceMeta.decode(stored))
        return stored, before.phase, after.phase

    stored, before, after = asyncio.run(scenario())
    decoded = SensorMetadata.decode(stored)
    assert (decoded.sensor_module, decoded.sensor_name) == ("flytekit.sensor.file_sensor", "FileSensor")
    assert decoded.inputs == {"path": str(target)}
    assert (before, after) == (TaskExecution.RUNNING, TaskExecution.SUCCEEDED)


def test_flytekit_webhook_connector_posts_and_returns_typed_outputs() -> None:
    def ok(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b"accepted"

    agent = _flytekit_agent("webhook")
    assert isinstance(agent, FlytekitSyncAgent)
    with serve({("POST", "/items/5"): ok}) as srv:
        raw = json.loads((FIXTURES / "webhook_post.template.json").read_text())
        raw["custom"]["url"] = raw["custom"]["url"].replace("http://127.0.0.1:8000", srv.base)
        template = load_task_template(raw)
        inputs = load_inputs({"s": "hi", "item_id": 5}, template)
        res = asyncio.run(agent.do(template, "/tmp/out", inputs))
    assert res.phase == TaskExecution.SUCCEEDED, res.message
    assert json.loads(srv.requests[0].body)["q"] == "hi"
    info = res.outputs.literals["info"].scalar.binary
    assert info.tag == "msgpack" and msgpack.unpackb(info.value)["status_code"] == 200
    assert literal_map_to_plain(res.outputs)["info"]["response_data"] == "accepted"


def test_webhook_failure_status_is_a_failed_resource_with_the_message() -> None:
    agent = _flytekit_agent("webhook")
    with serve({("GET", "/status"): lambda rec: (503, {}, b"down")}) as srv:
        raw = json.loads((FIXTURES / "webhook_get.template.json").read_text())
        raw["custom"]["url"] = raw["custom"]["url"].replace("http://127.0.0.1:8000", srv.base)
        template = load_task_template(raw)
        res = asyncio.run(agent.do(template, "/tmp/out", load_inputs(None, template)))
    assert res.phase == TaskExecution.FAILED and "503" in (res.message or "")


LEGACY_AGENT = """
from dataclasses import dataclass
from flyteidl.core.execution_pb2 import TaskExecution
# a flytekit <= 1.14 style agent: the deprecated names, untouched
from flytekit.extend.backend.base_agent import AgentRegistry, AsyncAgentBase, Resource, ResourceMeta, SyncAgentBase

@dataclass
class JobMeta(ResourceMeta):
    job_id: str
    execution_id: str

class LegacyJobAgent(AsyncAgentBase):
    name = "Legacy Job Agent"
    def __init__(self):
        super().__init__(task_type_name="legacy_job", metadata_type=JobMeta)
    def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        exec_id = task_execution_metadata.task_execution_id.task_id.name if task_execution_metadata else ""
        return JobMeta(job_id="job-" + task_template.custom["tag"], execution_id=exec_id)
    def get(self, resource_meta, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED, message=resource_meta.job_id,
                        outputs={"rows": 3, "table": resource_meta.execution_id})
    def delete(self, resource_meta, **kwargs):
        pass

class LegacyEcho(SyncAgentBase):
    name = "Legacy Echo"
    def __init__(self):
        super().__init__(task_type_name="legacy_echo")
    async def do(self, task_template, output_prefix, inputs=None, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"x": 2})

class Flaky(SyncAgentBase):
    name = "Flaky"
    def __init__(self):
        super().__init__(task_type_name="legacy_flaky")
    def do(self, task_template, output_prefix, inputs=None, **kwargs):
        raise ConnectionError("connection refused by warehouse")

class Broken(SyncAgentBase):
    name = "Broken"
    def __init__(self):
        super().__init__(task_type_name="legacy_broken")
    def do(self, task_template, output_prefix, inputs=None, **kwargs):
        raise ValueError("bad query")

AgentRegistry.register(LegacyJobAgent())
AgentRegistry.register(LegacyEcho())
AgentRegistry.register(Flaky())
AgentRegistry.register(Broken())
"""


@pytest.fixture
def legacy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "legacy_fk_agents.py").write_text(textwrap.dedent(LEGACY_AGENT))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("legacy_fk_agents", None)
    return "legacy_fk_agents"


def _typed_template(task_type: str, outputs: dict[str, int], custom: dict[str, Any] | None = None) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type=task_type)
    t.id.name = f"tests.{task_type}"
    for name, simple in outputs.items():
        t.interface.outputs.variables[name].type.simple = simple  # type: ignore[assignment]
    if custom:
        t.custom.update(custom)
    return t


def test_deprecated_agent_alias_registrations_are_bridged_with_python_outputs(legacy_module: str) -> None:
    agent_sources.load(_args("--no-entry-points", "--flytekit-module", legacy_module))
    agent = AgentRegistry.get_agent("legacy_job")
    assert isinstance(agent, AsyncAgentBase) and agent.name == "Legacy Job Agent (flytekit)"
    meta_pb = agent_pb2.TaskExecutionMetadata()
    meta_pb.task_execution_id.task_id.name = "uid-1/1"
    template = _typed_template("legacy_job", {}, {"tag": "nightly"})

    async def scenario() -> Any:
        meta = await agent.create(template, "/tmp/out", None, meta_pb)
        assert json.loads(meta.encode()) == {"job_id": "job-nightly", "execution_id": "uid-1/1"}
        return await agent.get(OpaqueResourceMeta.decode(meta.encode()))

    res = asyncio.run(scenario())
    assert res.phase == TaskExecution.SUCCEEDED and res.message == "job-nightly"
    # plain Python outputs went through flytekit's TypeEngine, as under `pyflyte serve connector`
    assert literal_map_to_plain(res.outputs) == {"rows": 3, "table": "uid-1/1"}


def test_sync_python_outputs_follow_the_declared_output_types(legacy_module: str) -> None:
    agent_sources.load(_args("--no-entry-points", "--flytekit-module", legacy_module))
    agent = AgentRegistry.get_agent("legacy_echo")
    assert isinstance(agent, SyncAgentBase)
    from flyteidl.core import types_pb2

    optional = _typed_template("legacy_echo", {})
    optional.interface.outputs.variables["x"].type.union_type.variants.add().simple = types_pb2.INTEGER
    optional.interface.outputs.variables["x"].type.union_type.variants.add().simple = types_pb2.NONE
    res = asyncio.run(agent.do(optional, "/tmp/out"))
    assert res.outputs.literals["x"].scalar.union.value.scalar.primitive.integer == 2
    # values that do not fit the declared type are converted as flytekit's own service does
    mismatch = asyncio.run(agent.do(_typed_template("legacy_echo", {"x": types_pb2.FLOAT}), "/tmp/out"))
    untyped = asyncio.run(agent.do(_typed_template("legacy_echo", {}), "/tmp/out"))
    assert mismatch.outputs == untyped.outputs
    assert untyped.outputs.literals["x"].scalar.primitive.integer == 2


def test_connection_errors_are_transient_other_errors_propagate(legacy_module: str) -> None:
    agent_sources.load(_args("--no-entry-points", "--flytekit-module", legacy_module))
    with pytest.raises(TransientAgentError, match="connection refused by warehouse"):
        asyncio.run(AgentRegistry.get_agent("legacy_flaky").do(_typed_template("legacy_flaky", {}), "/o"))
    with pytest.raises(ValueError, match="bad query"):
        asyncio.run(AgentRegistry.get_agent("legacy_broken").do(_typed_template("legacy_broken", {}), "/o"))


def test_builtins_win_unless_the_selection_names_the_bridge() -> None:
    agent_sources.load(_args())
    assert type(AgentRegistry.get_agent("sensor")).__module__ == "agent_operator.agents.sensor"
    with AgentRegistry.snapshot():
        agent_sources.load(_args("--agent-source", "sensor=flytekit"))
        assert isinstance(AgentRegistry.get_agent("sensor"), FlytekitAsyncAgent)
        assert type(AgentRegistry.get_agent("webhook")).__module__ == "agent_operator.agents.webhook"


def test_selecting_a_source_that_serves_nothing_leaves_the_type_unserved() -> None:
    AgentRegistry._REGISTRY.clear()
    AgentRegistry._METADATA.clear()
    agent_sources.load(_args("--agent-source", "webhook=remote"))
    with pytest.raises(FlyteAgentNotFound):
        AgentRegistry.get_agent("webhook")
    assert type(AgentRegistry.get_agent("sensor")).__module__ == "agent_operator.agents.sensor"


def test_flytekit_off_with_a_flytekit_selection_is_rejected() -> None:
    with pytest.raises(Exception, match="--flytekit is off"):
        agent_sources.load(_args("--flytekit", "off", "--agent-source", "sensor=flytekit"))


def test_not_found_message_says_what_to_install_or_enable() -> None:
    agent_sources.load(_args("--flytekit", "off"))
    with pytest.raises(FlyteAgentNotFound, match="--flytekit on"):
        AgentRegistry.get_agent("bigquery_query_job_task")
    hint = missing_agent_hint(TaskCategory("bigquery_query_job_task"), bridge_enabled=False, installed=False)
    assert hint is not None
    assert "pip install 'flyte-agent-operator[flytekit]' flytekitplugins-bigquery" in hint
    on = missing_agent_hint(TaskCategory("bigquery_query_job_task"), bridge_enabled=True, installed=True)
    assert on is not None and "flytekitplugins-bigquery" in on
    assert missing_agent_hint(TaskCategory("my_own_type"), bridge_enabled=True, installed=True) is None


HIDE_FLYTEKIT = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flytekit" or name.startswith("flytekit."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Hide())
from agent_operator.cli.main import main
from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound
rc = main(sys.argv[1:])
try:
    AgentRegistry.get_agent("bigquery_query_job_task")
except FlyteAgentNotFound as e:
    print("NOTFOUND:", e)
print("flytekit imported:", "flytekit" in sys.modules)
sys.exit(rc)
"""


def test_without_flytekit_the_operator_loads_builtins_and_says_what_to_install() -> None:
    run = subprocess.run([sys.executable, "-c", HIDE_FLYTEKIT, "agents"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "sensor" in run.stdout and "builtin" in run.stdout
    assert "flytekit imported: False" in run.stdout
    assert "pip install 'flyte-agent-operator[flytekit]' flytekitplugins-bigquery" in run.stdout
    required = subprocess.run(
        [sys.executable, "-c", HIDE_FLYTEKIT, "agents", "--flytekit", "on"], capture_output=True, text=True, timeout=120
    )
    assert required.returncode == 2  # an agent source that cannot be loaded: usage
    assert "flytekit is not installed: pip install 'flyte-agent-operator[flytekit]'" in required.stderr


def test_auto_skips_flytekit_when_it_would_add_nothing_and_loads_it_for_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    AgentRegistry._REGISTRY.clear()
    AgentRegistry._METADATA.clear()
    # the dev extra installs real plugins (openai, awssagemaker): pretend none is installed
    monkeypatch.setattr(agent_sources, "flytekit_plugin_entry_points", lambda: [])
    agent_sources.load(_args("--no-entry-points"))
    assert AgentRegistry.agents() == []  # flytekit's sensor/webhook were not pulled in
    monkeypatch.setattr(agent_sources, "flytekit_plugin_entry_points", lambda: ["bigquery"])
    agent_sources.load(_args("--no-entry-points"))
    assert isinstance(AgentRegistry.get_agent("sensor"), FlytekitAsyncAgent)


def test_flytekit_on_offers_flytekits_connectors_where_no_builtin_serves() -> None:
    AgentRegistry._REGISTRY.clear()
    AgentRegistry._METADATA.clear()
    agent_sources.load(_args("--no-entry-points", "--flytekit", "on"))
    assert isinstance(AgentRegistry.get_agent("webhook"), FlytekitSyncAgent)


PLUGIN = '''
from dataclasses import dataclass
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta

@dataclass
class DemoMeta(ResourceMeta):
    job: str

class DemoWarehouseConnector(AsyncConnectorBase):
    name = "Demo Warehouse Connector"
    def __init__(self):
        super().__init__(task_type_name="demo_warehouse_job", metadata_type=DemoMeta)
    async def create(self, task_template, output_prefix, inputs=None, **kwargs):
        return DemoMeta(job="j")
    async def get(self, resource_meta, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED)
    async def delete(self, resource_meta, **kwargs):
        pass

ConnectorRegistry.register(DemoWarehouseConnector())
'''


def test_installed_flytekit_plugins_are_discovered_through_flytekits_entry_points(tmp_path: Path) -> None:
    """A flytekitplugins-* style distribution (entry point group flytekit.plugins) is served with no flag."""
    (tmp_path / "flytekitplugins_demo").mkdir()
    (tmp_path / "flytekitplugins_demo" / "__init__.py").write_text(PLUGIN)
    dist = tmp_path / "flytekitplugins_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flytekitplugins-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[flytekit.plugins]\ndemo = flytekitplugins_demo\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    exe = Path(sys.executable).with_name("agent-operator")
    run = subprocess.run([str(exe), "agents", "-o", "json"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    rows = {r["taskType"]: r for r in json.loads(run.stdout)}
    assert rows["demo_warehouse_job"]["source"] == "flytekit"
    assert rows["demo_warehouse_job"]["name"] == "Demo Warehouse Connector (flytekit)"
    assert rows["sensor"]["source"] == "builtin"  # flytekit's SensorEngine loaded too, built-in still wins


SECRET_CONNECTOR = '''
from dataclasses import dataclass
import flytekit
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta
from flytekit.extend.backend.utils import get_connector_secret

@dataclass
class TokMeta(ResourceMeta):
    token: str

class SecretReadingConnector(AsyncConnectorBase):
    name = "Secret Reading Connector"
    def __init__(self):
        super().__init__(task_type_name="secret_reader", metadata_type=TokMeta)
    def create(self, task_template, output_prefix, inputs=None, **kwargs):   # plain: runs in a thread
        return TokMeta(token=get_connector_secret("FLYTE_WAREHOUSE_TOKEN"))
    async def get(self, resource_meta, **kwargs):
        grouped = flytekit.current_context().secrets.get(group="warehouse-creds", key="user")
        return Resource(phase=TaskExecution.SUCCEEDED, message=f"{resource_meta.token}/{grouped}")
    async def delete(self, resource_meta, **kwargs):
        pass

ConnectorRegistry.register(SecretReadingConnector())
'''


def test_agenttask_secrets_reach_flytekit_connectors_through_flytekits_secret_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret_fk_connector.py").write_text(SECRET_CONNECTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    agent_sources.load(_args("--no-entry-points", "--flytekit-module", "secret_fk_connector"))
    agent = AgentRegistry.get_agent("secret_reader")
    secrets = {"warehouse-creds": {"flyte_warehouse_token": "t0k3n", "user": "svc-etl"}}

    async def scenario() -> Any:
        meta = await agent.create(_typed_template("secret_reader", {}), "/o", None, None, secrets=secrets)
        res = await agent.get(OpaqueResourceMeta.decode(meta.encode()), secrets=secrets)
        with pytest.raises(ValueError, match="Unable to find secret for key FLYTE_WAREHOUSE_TOKEN"):
            await agent.create(_typed_template("secret_reader", {}), "/o", None, None)  # another task: no secrets
        return res

    assert asyncio.run(scenario()).message == "t0k3n/svc-etl"


CUSTOM_SENSOR = '''
from flytekit.sensor.base_sensor import BaseSensor

class QueueEmptySensor(BaseSensor):
    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
    async def poke(self, queue: str) -> bool:
        return queue == "empty"
'''


@pytest.mark.parametrize(
    ("module", "name", "words"),
    [
        ("os", "system", "'os' is not a module this operator loads sensors from"),
        ("subprocess", "Popen", "--flytekit-module subprocess"),
        ("flytekit.sensor.file_sensor", "no_such", "cannot load sensor"),
        ("flytekit.sensor.base_sensor", "SensorMetadata", "is not a flytekit BaseSensor subclass"),
    ],
)
def test_sensor_templates_cannot_make_the_operator_import_arbitrary_code(module: str, name: str, words: str) -> None:
    from agent_operator.bridges.flytekit.guard import SensorNotAllowed

    agent = _flytekit_agent("sensor")
    template = _template("file_sensor", sensor_module=module, sensor_name=name)
    with pytest.raises(SensorNotAllowed, match=words):
        asyncio.run(agent.create(template, "/o", load_inputs({"path": "/x"}, template), None))


def test_custom_sensors_from_admin_named_modules_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "team_sensors.py").write_text(CUSTOM_SENSOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    agent_sources.load(_args("--flytekit-module", "team_sensors", "--agent-source", "sensor=flytekit"))
    agent = AgentRegistry.get_agent("sensor")
    template = _template("file_sensor", sensor_module="team_sensors", sensor_name="QueueEmptySensor")
    template.interface.inputs.variables.clear()
    template.interface.inputs.variables["queue"].type.simple = 3  # STRING
    inputs = load_inputs({"queue": "empty"}, template)

    async def scenario() -> int:
        meta = await agent.create(template, "/o", inputs, None)
        return (await agent.get(OpaqueResourceMeta.decode(meta.encode()))).phase

    assert asyncio.run(scenario()) == TaskExecution.SUCCEEDED
