"""TaskTemplate loading from every accepted form; TaskSpec files are reported, not misread."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from flyteidl.admin import task_pb2
from flyteidl.core import identifier_pb2, interface_pb2, tasks_pb2
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_operator.serialization import SpecError, load_task_spec_file, load_task_template

from serialization_strategies import JSON, LITERAL_TYPES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"
NAMES = ["file_sensor", "file_sensor_with_timeout", "webhook_post", "webhook_get", "typed_inputs"]


def _fixture_template(name: str) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate.FromString((FIXTURES / f"{name}.template.pb").read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_flytekit_template_loads_identically_from_every_form(name: str) -> None:
    want = _fixture_template(name)
    raw = (FIXTURES / f"{name}.template.pb").read_bytes()
    camel = json.loads((FIXTURES / f"{name}.template.json").read_text())
    snake = json_format.MessageToDict(want, preserving_proto_field_name=True)
    forms = [
        raw,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        camel,
        snake,
        json.dumps(camel),
        yaml.safe_dump(snake),
        want,
    ]
    for form in forms:
        assert load_task_template(form) == want


@pytest.mark.parametrize("name", NAMES)
def test_pyflyte_taskspec_file_is_rejected_with_a_pointer_to_render(name: str) -> None:
    raw = (FIXTURES / f"{name}.taskspec.pb").read_bytes()
    spec = task_pb2.TaskSpec.FromString(raw)
    for form in (raw, base64.b64encode(raw).decode(), json_format.MessageToDict(spec), spec):
        with pytest.raises(SpecError) as info:
            load_task_template(form, field="spec.taskTemplate")
        assert info.value.field == "spec.taskTemplate"
        assert "flyteidl.admin.TaskSpec" in info.value.message
        assert "agent-operator render" in info.value.message


@pytest.mark.parametrize("name", NAMES)
def test_taskspec_file_yields_its_template(name: str) -> None:
    raw = (FIXTURES / f"{name}.taskspec.pb").read_bytes()
    assert load_task_spec_file(raw) == _fixture_template(name)
    assert load_task_spec_file((FIXTURES / f"{name}.template.pb").read_bytes()) == _fixture_template(name)


def test_task_spec_file_reader_rejects_other_bytes() -> None:
    with pytest.raises(SpecError, match="neither a flyteidl.admin.TaskSpec nor"):
        load_task_spec_file(b"\xff\xff\xff", field="x.pb")


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ({"type": "x", "bogus": 1}, "taskTemplate", "not a valid TaskTemplate"),
        ({"id": {"name": "no-type"}}, "taskTemplate.type", "required: the task type selects the agent"),
        ("not base64 !!", "taskTemplate", "base64"),
        ("key: [unclosed", "taskTemplate", "neither JSON nor YAML"),
        (42, "taskTemplate", "expected a mapping, a string or bytes, got int"),
        ("", "taskTemplate", "expected a TaskTemplate"),
    ],
)
def test_bad_templates_name_the_field(value: object, field: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        load_task_template(value)
    assert info.value.field == field


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def task_templates(draw: st.DrawFn) -> tasks_pb2.TaskTemplate:
    template = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(
            resource_type=draw(st.sampled_from([0, 1])),
            project=draw(TEXT),
            domain=draw(TEXT),
            name=draw(TEXT),
            version=draw(TEXT),
        ),
        type=draw(TEXT.filter(bool)),
        task_type_version=draw(st.integers(0, 2**31 - 1)),
    )
    custom = draw(st.dictionaries(st.text(max_size=5), JSON, max_size=3))
    if custom:
        s = struct_pb2.Struct()
        json_format.ParseDict(json.loads(json.dumps(custom)), s)
        template.custom.CopyFrom(s)
    for name in draw(st.lists(st.text(min_size=1, max_size=5), max_size=3, unique=True)):
        template.interface.inputs.variables[name].CopyFrom(
            interface_pb2.Variable(type=draw(LITERAL_TYPES), description=name)
        )
    if draw(st.booleans()):
        template.metadata.timeout.FromSeconds(draw(st.integers(0, 10**6)))
        template.metadata.retries.retries = draw(st.integers(0, 10))
    return template


@settings(max_examples=150, deadline=None)
@given(task_templates())
def test_any_template_round_trips_through_json_yaml_and_base64(template: tasks_pb2.TaskTemplate) -> None:
    raw = template.SerializeToString()
    assert load_task_template(raw) == template
    assert load_task_template(base64.b64encode(raw).decode()) == template
    assert load_task_template(json_format.MessageToDict(template)) == template
    assert load_task_template(json_format.MessageToJson(template, preserving_proto_field_name=True)) == template
    assert load_task_template(yaml.safe_dump(json_format.MessageToDict(template))) == template


@settings(max_examples=150, deadline=None)
@given(task_templates())
def test_any_template_wrapped_in_a_taskspec_is_detected(template: tasks_pb2.TaskTemplate) -> None:
    spec = task_pb2.TaskSpec(template=template)
    for form in (spec.SerializeToString(), base64.b64encode(spec.SerializeToString()).decode()):
        with pytest.raises(SpecError, match="TaskSpec"):
            load_task_template(form)
    assert load_task_spec_file(spec.SerializeToString()) == template


def test_json_exponent_numbers_stay_numbers_and_yaml_strings_stay_strings() -> None:
    # JSON reads 1e-09 as a number; YAML 1.1 (what PyYAML's dumper quotes by) keeps an
    # unquoted 0E0 a string: each text is read by the rules it was written with
    as_json = load_task_template('{"type": "t", "custom": {"eps": 1e-09}}')
    assert as_json.custom["eps"] == 1e-09
    as_yaml = load_task_template(yaml.safe_dump({"type": "0E0", "custom": {"v": "1e-09"}}))
    assert as_yaml.type == "0E0" and as_yaml.custom["v"] == "1e-09"
