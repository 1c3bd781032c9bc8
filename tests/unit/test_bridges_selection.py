"""The built-in vs bridged choice: parsing and the registration rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent_operator.bridges.selection import AgentSourceSelection, parse_category, parse_source
from agent_operator.sdk import AgentRegistry, Resource, SyncAgentBase, TaskCategory, TaskExecution


@pytest.fixture(autouse=True)
def isolated() -> Iterator[None]:
    with AgentRegistry.snapshot():
        AgentRegistry._REGISTRY.clear()
        AgentRegistry._METADATA.clear()
        yield


class _Agent(SyncAgentBase):
    def __init__(self, label: str, task_type: str = "t", version: int = 0) -> None:
        super().__init__(task_type_name=task_type, task_type_version=version)
        self.name = label  # type: ignore[misc]

    def do(self, task_template: Any, output_prefix: str, inputs: Any = None, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED)


def test_parse_category_and_source() -> None:
    assert parse_category("sensor") == TaskCategory("sensor", 0)
    assert parse_category("bq:2") == TaskCategory("bq", 2)
    assert parse_source("remote:bigquery") == "remote:bigquery"
    for bad in ("", ":1", "bq:x"):
        with pytest.raises(ValueError):
            parse_category(bad)
    for bad in ("flytekit:x", "remote:", "elsewhere", "builtin:a"):
        with pytest.raises(ValueError, match="expected one of builtin, flytekit, remote"):
            parse_source(bad)
    with pytest.raises(ValueError, match="expected TYPE"):
        AgentSourceSelection.parse(["sensor"])


def test_flags_override_the_config_file_map() -> None:
    sel = AgentSourceSelection.parse(["sensor=flytekit"], {"sensor": "remote", "webhook": "remote:a"})
    assert sel.chosen(TaskCategory("sensor")) == "flytekit"
    assert sel.chosen(TaskCategory("webhook")) == "remote:a"
    assert sel.chosen(TaskCategory("other")) is None


def test_first_registration_wins_without_a_selection() -> None:
    sel = AgentSourceSelection()
    first, second = _Agent("first"), _Agent("second")
    assert sel.register(first, "builtin") and not sel.register(second, "flytekit")
    assert AgentRegistry.get_agent("t") is first


def test_selected_source_replaces_and_others_are_refused() -> None:
    sel = AgentSourceSelection.parse(["t=remote"])
    builtin, deployed, flyte = _Agent("builtin"), _Agent("remote one"), _Agent("flytekit one")
    AgentRegistry.register(builtin)
    assert sel.register(deployed, "remote:east")  # `remote` admits any deployment
    assert not sel.register(flyte, "flytekit")
    assert AgentRegistry.get_agent("t") is deployed
    assert [a.name for a in AgentRegistry.list_agents()] == ["remote one"]  # metadata follows the override


def test_a_named_deployment_admits_only_itself() -> None:
    sel = AgentSourceSelection.parse(["t:1=remote:west"])
    assert not sel.register(_Agent("east", version=1), "remote:east")
    assert sel.register(_Agent("west", version=1), "remote:west")
    assert sel.admits(TaskCategory("t", 0), "remote:east")  # version 0 is not selected
