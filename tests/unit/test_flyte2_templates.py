"""Flyte 2 task templates in an AgentTask (binary and flyteidl2 JSON form), `render` of a Flyte 2
TaskSpec file written by the Flyte 2 SDK, clear errors when Flyte 1 and Flyte 2 forms are
confused, and the wire compatibility the Flyte 2 bridges rely on, read from both packages'
own descriptors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import tasks_pb2
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.core import tasks_pb2 as tasks2
from flyteidl2.task import task_definition_pb2
from google.protobuf import descriptor, json_format

from agent_operator.serialization import SpecError, load_task_spec_file, load_task_template

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flyte2_support import VENV_BIN, write_task_spec  # noqa: E402


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("flyte2")
    return write_task_spec(work, work / "double.pb")


def _v2_template(spec_file: Path) -> tasks2.TaskTemplate:
    template: tasks2.TaskTemplate = task_definition_pb2.TaskSpec.FromString(spec_file.read_bytes()).task_template
    return template


def _render(spec_file: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run([str(VENV_BIN / "agent-operator"), "render", str(spec_file), "--name", "double",
                          "--input", "x=21", "-o", "json", *extra], check=True, capture_output=True, text=True)
    manifest: dict[str, Any] = json.loads(out.stdout)
    return manifest


def test_render_keeps_a_flyte2_task_in_flyte2_json_form_and_the_operator_reads_it_exactly(spec_file: Path) -> None:
    manifest = _render(spec_file)
    template_json = manifest["spec"]["taskTemplate"]
    assert template_json["interface"]["inputs"]["variables"] == [{"key": "x", "value": {"type": {"simple": "INTEGER"}}}]
    assert manifest["spec"]["inputs"] == {"x": 21}
    loaded = load_task_template(template_json)
    assert loaded.type == "loopback_job" and dict(loaded.interface.inputs.variables)["x"].type.simple == 1
    original = _v2_template(spec_file)
    # carried byte for byte: Flyte-2-only fields survive for Flyte 2 connectors
    assert tasks2.TaskTemplate.FromString(loaded.SerializeToString()) == original


def test_binary_flyte2_template_and_task_spec_file(spec_file: Path) -> None:
    original = _v2_template(spec_file)
    b64 = base64.b64encode(original.SerializeToString()).decode()
    # messages compared, not bytes: map entries (custom's Struct) have no fixed order on the wire
    assert tasks2.TaskTemplate.FromString(load_task_template(b64).SerializeToString()) == original
    assert load_task_spec_file(spec_file.read_bytes()).type == "loopback_job"
    manifest = _render(spec_file, "--base64")
    assert tasks2.TaskTemplate.FromString(base64.b64decode(manifest["spec"]["taskTemplateBase64"])) == original


def test_render_accepts_a_flyte2_task_spec_in_json_form(spec_file: Path, tmp_path: Path) -> None:
    spec = task_definition_pb2.TaskSpec.FromString(spec_file.read_bytes())
    json_file = tmp_path / "double.json"
    json_file.write_text(json_format.MessageToJson(spec))
    assert _render(json_file)["spec"]["taskTemplate"] == _render(spec_file)["spec"]["taskTemplate"]


def test_a_flyte2_task_spec_given_as_template_is_named(spec_file: Path) -> None:
    spec = task_definition_pb2.TaskSpec.FromString(spec_file.read_bytes())
    with pytest.raises(SpecError, match="Flyte 2 flyteidl2.task.TaskSpec, not a TaskTemplate"):
        load_task_template(json_format.MessageToDict(spec), "spec.taskTemplate")
    with pytest.raises(SpecError, match="Flyte 2 flyteidl2.task.TaskSpec, not a TaskTemplate"):
        load_task_template(base64.b64encode(spec_file.read_bytes()).decode(), "spec.taskTemplateBase64")


def test_mixed_flyte1_and_flyte2_variables_name_the_field(spec_file: Path) -> None:
    template_json = _render(spec_file)["spec"]["taskTemplate"]
    template_json["interface"]["outputs"]["variables"] = {"y": {"type": {"simple": "INTEGER"}}}
    with pytest.raises(SpecError) as info:
        load_task_template(template_json, "spec.taskTemplate")
    assert "spec.taskTemplate.interface" in str(info.value)
    assert "Flyte 2" in str(info.value) and "Flyte 1" in str(info.value)


def test_a_flyte2_only_field_in_a_flyte1_form_template_says_so() -> None:
    flyte1 = {"type": "t", "interface": {"inputs": {"variables": {"x": {"type": {"simple": "INTEGER"}}}}},
              "metadata": {"debuggable": True}}
    with pytest.raises(SpecError, match="Flyte 2's TaskTemplate has this field"):
        load_task_template(flyte1, "spec.taskTemplate")


def _layout_differences(a: descriptor.Descriptor, b: descriptor.Descriptor, seen: set[tuple[str, str]]) -> list[str]:
    """Fields present in both messages (by number) whose wire type or cardinality differ."""
    if (a.full_name, b.full_name) in seen:
        return []
    seen.add((a.full_name, b.full_name))
    out: list[str] = []
    mine = {f.number: f for f in a.fields}
    for f in b.fields:
        g = mine.get(f.number)
        if g is None:
            continue
        if g.type != f.type or g.is_repeated != f.is_repeated:
            out.append(f"{a.full_name}.{g.name} vs {b.full_name}.{f.name}")
        elif g.message_type is not None and f.message_type is not None:
            out += _layout_differences(g.message_type, f.message_type, seen)
    return out


@pytest.mark.parametrize("v1,v2", [
    (tasks_pb2.TaskTemplate, tasks2.TaskTemplate),
    (agent_pb2.TaskExecutionMetadata, c2.TaskExecutionMetadata),
    (agent_pb2.Resource, c2.Resource),
    (agent_pb2.GetTaskLogsResponse, c2.GetTaskLogsResponse),
])
def test_flyteidl2_keeps_flyteidl1_layout_for_shared_fields(v1: Any, v2: Any) -> None:
    assert _layout_differences(v1.DESCRIPTOR, v2.DESCRIPTOR, set()) == []
