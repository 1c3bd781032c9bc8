"""Task inputs from plain values or LiteralMaps, checked against the template interface."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_operator.serialization import SpecError, literal_map_to_plain, load_inputs, load_task_template

from serialization_strategies import values_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"
TYPED = load_task_template((FIXTURES / "typed_inputs.template.json").read_text())

FULL = {
    "i": 1,
    "f": 2.5,
    "s": "x",
    "b": True,
    "when": "2024-05-01T12:30:15.250Z",
    "wait": "90.005s",
    "ints": [1, 2],
    "weights": {"a": 1.5},
    "doc": "s3://bucket/doc.txt",
    "extra": {"k": [1, "two"]},
    "maybe": 3,
}


def test_plain_yaml_inputs_are_typed_by_the_flytekit_interface() -> None:
    text = yaml.safe_dump(FULL, sort_keys=False)
    lm = load_inputs(text, TYPED)
    assert lm.literals["i"].scalar.primitive.integer == 1
    assert lm.literals["f"].scalar.primitive.float_value == 2.5
    assert lm.literals["doc"].scalar.blob.uri == "s3://bucket/doc.txt"
    assert lm.literals["extra"].scalar.binary.tag == "msgpack"
    assert lm.literals["maybe"].scalar.union.value.scalar.primitive.integer == 3
    assert literal_map_to_plain(lm) == FULL


def test_yaml_native_timestamps_are_accepted() -> None:
    lm = load_inputs("when: 2024-05-01 12:30:15.25+00:00\n" + yaml.safe_dump({k: v for k, v in FULL.items() if k != "when"}), TYPED)
    assert literal_map_to_plain(lm)["when"] == "2024-05-01T12:30:15.250Z"


def test_missing_optional_input_becomes_none() -> None:
    plain = {k: v for k, v in FULL.items() if k != "maybe"}
    lm = load_inputs(plain, TYPED)
    assert lm.literals["maybe"].scalar.union.value.scalar.HasField("none_type")


def test_missing_required_input_is_named_with_its_type() -> None:
    plain = {k: v for k, v in FULL.items() if k != "weights"}
    with pytest.raises(SpecError) as info:
        load_inputs(plain, TYPED, field="spec.inputs")
    assert info.value.field == "spec.inputs.weights"
    assert info.value.message == "required input missing (expected map of string to float)"


def test_unknown_input_lists_declared_inputs() -> None:
    with pytest.raises(SpecError) as info:
        load_inputs({**FULL, "colour": "red"}, TYPED)
    assert info.value.field == "inputs.colour"
    assert "declared inputs: b, doc, extra, f, i, ints, maybe, s, wait, weights, when" in info.value.message


def test_wrong_type_names_input_and_expected_type() -> None:
    with pytest.raises(SpecError) as info:
        load_inputs({**FULL, "ints": [1, "2"]}, TYPED)
    assert info.value.field == "inputs.ints[1]"
    assert info.value.message == "expected integer, got str '2'"


def test_literal_map_forms_are_taken_as_given() -> None:
    lm = load_inputs(FULL, TYPED)
    as_json = json_format.MessageToDict(lm)
    assert load_inputs(as_json, TYPED) == lm
    assert load_inputs(yaml.safe_dump(as_json), TYPED) == lm
    assert load_inputs(base64.b64encode(lm.SerializeToString()).decode(), TYPED) == lm
    assert load_inputs(lm.SerializeToString(), TYPED) == lm
    assert load_inputs(lm, TYPED) is lm


def test_bad_literal_map_json_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="not a valid LiteralMap"):
        load_inputs({"literals": {"i": {"scalar": {"primitive": {"integer": "x"}}}}}, TYPED)


def test_no_inputs_for_a_task_without_inputs() -> None:
    webhook_get = load_task_template((FIXTURES / "webhook_get.template.json").read_text())
    assert load_inputs(None, webhook_get) == literals_pb2.LiteralMap()
    assert load_inputs("", webhook_get) == literals_pb2.LiteralMap()
    with pytest.raises(SpecError, match="declared inputs: none"):
        load_inputs({"x": 1}, webhook_get)
    with pytest.raises(SpecError, match="expected a mapping"):
        load_inputs([1, 2], webhook_get)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_plain_inputs_round_trip_for_the_flytekit_interface(data: st.DataObject) -> None:
    plain: dict[str, Any] = {}
    for name, var in TYPED.interface.inputs.variables.items():
        plain[name] = data.draw(values_for(var.type), label=name)
    lm = load_inputs(plain, TYPED)
    rendered = literal_map_to_plain(lm)
    assert load_inputs(rendered, TYPED) == lm
    assert load_inputs(json_format.MessageToDict(lm), TYPED) == lm
