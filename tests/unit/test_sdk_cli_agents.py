"""`agent-operator agents` lists what the operator would load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_operator.cli.main import main
from agent_operator.sdk import AgentRegistry


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    with AgentRegistry.snapshot():
        yield


@pytest.fixture
def extra_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_demo_agent.py").write_text(
        textwrap.dedent(
            """
            from agent_operator.sdk import Resource, SyncAgentBase

            class EchoAgent(SyncAgentBase):
                name = "Echo"
                def __init__(self):
                    super().__init__(task_type_name="echo", task_type_version=2)
                def do(self, task_template, output_prefix, inputs=None, **kwargs):
                    return Resource(phase=3)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_demo_agent:EchoAgent"


def test_table_lists_builtin_agents_with_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "TYPE", "VERSION", "KIND", "SOURCE", "NAME", "CLASS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["sensor"][:4] == ["sensor", "0", "async", "builtin"]
    assert rows["webhook"][:4] == ["webhook", "0", "sync", "builtin"]
    assert rows["webhook"][-1] == "agent_operator.agents.webhook:WebhookAgent"


def test_json_output_includes_agents_given_with_agent_flag(capsys: pytest.CaptureFixture[str], extra_agent: str) -> None:
    assert main(["agents", "--agent", extra_agent, "--no-entry-points", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    echo = [r for r in rows if r["taskType"] == "echo"]
    assert echo == [
        {"name": "Echo", "taskType": "echo", "taskTypeVersion": 2, "kind": "sync", "source": "builtin",
         "class": extra_agent}
    ]


def test_broken_agent_spec_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "--agent", "no_such_module_xyz:Agent"]) == 2
    err = capsys.readouterr().err
    assert "agent spec 'no_such_module_xyz:Agent'" in err and "cannot import module" in err


def test_console_script_is_installed_and_lists_agents() -> None:
    exe = Path(sys.executable).with_name("agent-operator")
    out = subprocess.run([str(exe), "agents", "-o", "yaml"], capture_output=True, text=True, timeout=120, check=True)
    assert "taskType: sensor" in out.stdout and "taskType: webhook" in out.stdout
