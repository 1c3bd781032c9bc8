"""AgentRegistry semantics and agent discovery (specs and real entry points)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_operator.sdk import (
    AgentLoadError,
    AgentRegistry,
    AsyncAgentBase,
    FlyteAgentNotFound,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskExecution,
    load_agents,
)
from agent_operator.sdk.registry import load_agent_spec


@dataclass
class Meta(ResourceMeta):
    job: str


class AlphaAgent(AsyncAgentBase):
    def __init__(self, task_type_name: str = "alpha", task_type_version: int = 0) -> None:
        super().__init__(task_type_name=task_type_name, task_type_version=task_type_version, metadata_type=Meta)

    def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        return Meta(job="1")

    def get(self, resource_meta, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED)

    def delete(self, resource_meta, **kwargs):
        return None


class BetaAgent(SyncAgentBase):
    name = "Beta"

    def __init__(self, task_type_name: str = "beta") -> None:
        super().__init__(task_type_name=task_type_name)

    def do(self, task_template, output_prefix, inputs=None, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED)


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    with AgentRegistry.snapshot():
        AgentRegistry._REGISTRY.clear()
        AgentRegistry._METADATA.clear()
        AgentRegistry._NOT_FOUND_HINTS.clear()  # hints other tests' agent sources installed
        yield


def test_registered_agent_is_found_by_task_type_and_version() -> None:
    a0, a1 = AlphaAgent(), AlphaAgent(task_type_version=1)
    AgentRegistry.register(a0)
    AgentRegistry.register(a1)
    assert AgentRegistry.get_agent("alpha") is a0
    assert AgentRegistry.get_agent("alpha", 1) is a1
    assert AgentRegistry.get_connector("alpha", 1) is a1


def test_second_agent_for_same_category_is_rejected_unless_override() -> None:
    first, second = AlphaAgent(), AlphaAgent()
    AgentRegistry.register(first)
    AgentRegistry.register(first)  # the same object again is harmless
    with pytest.raises(ValueError, match="Duplicate agent for task type: alpha_v0"):
        AgentRegistry.register(second)
    AgentRegistry.register(second, override=True)
    assert AgentRegistry.get_agent("alpha") is second


def test_override_moves_the_category_between_agent_metadata() -> None:
    AgentRegistry.register(BetaAgent(task_type_name="alpha"))
    AgentRegistry.register(AlphaAgent(), override=True)
    names = {a.name for a in AgentRegistry.list_agents()}
    assert names == {"AlphaAgent"}


def test_missing_agent_error_lists_registered_task_types() -> None:
    AgentRegistry.register(AlphaAgent())
    AgentRegistry.register(BetaAgent())
    with pytest.raises(FlyteAgentNotFound) as info:
        AgentRegistry.get_agent("gamma", 3)
    assert str(info.value) == (
        "Cannot find agent for task category: gamma_v3. Registered task types: alpha_v0, beta_v0."
    )


def test_list_agents_reports_sync_flag_and_categories() -> None:
    AgentRegistry.register(AlphaAgent())
    AgentRegistry.register(AlphaAgent(task_type_name="alpha2", task_type_version=4))
    AgentRegistry.register(BetaAgent())
    by_name = {a.name: a for a in AgentRegistry.list_agents()}
    alpha = by_name["AlphaAgent"]
    assert not alpha.is_sync
    assert [(c.name, c.version) for c in alpha.supported_task_categories] == [("alpha", 0), ("alpha2", 4)]
    assert list(alpha.supported_task_types) == ["alpha", "alpha2"]
    assert by_name["Beta"].is_sync


def test_agent_metadata_is_looked_up_by_name() -> None:
    AgentRegistry.register(BetaAgent())
    assert AgentRegistry.get_agent_metadata("Beta").supported_task_types == ["beta"]
    with pytest.raises(FlyteAgentNotFound, match=r"Cannot find agent for name: Nope\. Registered agents: Beta\."):
        AgentRegistry.get_agent_metadata("Nope")


def test_returned_metadata_cannot_corrupt_the_registry() -> None:
    AgentRegistry.register(BetaAgent())
    AgentRegistry.list_agents()[0].supported_task_types.append("evil")
    assert AgentRegistry.get_agent_metadata("Beta").supported_task_types == ["beta"]


def test_register_rejects_non_agents() -> None:
    with pytest.raises(TypeError):
        AgentRegistry.register(object())  # type: ignore[arg-type]


@pytest.fixture
def agent_package(tmp_path: Path) -> Iterator[Path]:
    """A real importable module plus an installed distribution declaring entry points."""
    (tmp_path / "demo_agents.py").write_text(
        textwrap.dedent(
            """
            from agent_operator.sdk import AgentRegistry, Resource, SyncAgentBase

            class ClassAgent(SyncAgentBase):
                def __init__(self):
                    super().__init__(task_type_name="demo-class")
                def do(self, task_template, output_prefix, inputs=None, **kwargs):
                    return Resource(phase=3)

            class NeedsArgs(SyncAgentBase):
                def __init__(self, token):
                    super().__init__(task_type_name="demo-args")
                def do(self, task_template, output_prefix, inputs=None, **kwargs):
                    return Resource(phase=3)

            class SelfRegistering(SyncAgentBase):
                def __init__(self):
                    super().__init__(task_type_name="demo-self")
                def do(self, task_template, output_prefix, inputs=None, **kwargs):
                    return Resource(phase=3)

            instance = NeedsArgs(token="t")
            AgentRegistry.register(SelfRegistering())
            not_an_agent = 42
            """
        )
    )
    dist = tmp_path / "demo_agents-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-agents\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[agent_operator.agents]\nclass = demo_agents:ClassAgent\ninstance = demo_agents:instance\n"
        "\n[demo.broken]\nbad = demo_agents:not_an_agent\nmissing = demo_agents_nope:X\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("demo_agents", None)


def test_entry_points_are_discovered_and_registered(agent_package: Path) -> None:
    loaded = load_agents(group="agent_operator.agents")
    demo = sorted(a.task_type_name for a in loaded if type(a).__module__ == "demo_agents")
    assert demo == ["demo-args", "demo-class"]
    assert AgentRegistry.get_agent("demo-class").task_type_name == "demo-class"
    assert AgentRegistry.get_agent("demo-args") is sys.modules["demo_agents"].instance


def test_spec_loading_reuses_agent_the_module_registered_on_import(agent_package: Path) -> None:
    agent = load_agent_spec("demo_agents:SelfRegistering")
    assert agent is AgentRegistry.get_agent("demo-self")
    assert load_agents(["demo_agents:SelfRegistering"], entry_points=False) == [agent]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("demo_agents", "expected 'module:Class'"),
        ("demo_agents_nope:X", "cannot import module 'demo_agents_nope'"),
        ("demo_agents:Missing", "has no attribute 'Missing'"),
        ("demo_agents:not_an_agent", "neither an agent class nor an agent instance"),
        ("demo_agents:NeedsArgs", "without arguments"),
    ],
)
def test_bad_agent_specs_name_the_spec_and_the_problem(agent_package: Path, spec: str, message: str) -> None:
    with pytest.raises(AgentLoadError, match=message) as info:
        load_agent_spec(spec)
    assert repr(spec) in str(info.value)


def test_broken_entry_point_names_the_entry_point(agent_package: Path) -> None:
    with pytest.raises(AgentLoadError, match="entry point 'bad'"):
        load_agents(group="demo.broken")
