"""Plain values ⇄ literals: flytekit parity (real fixtures), errors, and round trips."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from flyteidl.core import literals_pb2, types_pb2
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_operator.serialization import (
    SpecError,
    describe_type,
    guess_literal_type,
    literal_map_to_plain,
    literal_to_plain,
    plain_map_to_literal_map,
    plain_to_literal,
)
from agent_operator.serialization.literals import is_msgpack_struct, msgpack_struct_type

from serialization_strategies import LITERAL_TYPES, ST, simple, values_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"
CASES = json.loads((FIXTURES / "literals.json").read_text())


def _type(d: dict[str, Any]) -> types_pb2.LiteralType:
    return json_format.ParseDict(d, types_pb2.LiteralType())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plain_value_encodes_exactly_like_flytekit(case: dict[str, Any]) -> None:
    want = json_format.ParseDict(case["literal"], literals_pb2.Literal())
    got = plain_to_literal(case["plain"], _type(case["type"]), case["name"])
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_flytekit_literal_renders_as_the_plain_value(case: dict[str, Any]) -> None:
    lit = json_format.ParseDict(case["literal"], literals_pb2.Literal())
    assert literal_to_plain(lit) == case["plain"]


def test_untyped_dict_type_is_recognised_as_msgpack_struct() -> None:
    untyped = next(c for c in CASES if c["name"] == "untyped_dict")
    assert is_msgpack_struct(_type(untyped["type"]))
    assert _type(untyped["type"]) == msgpack_struct_type()
    assert not is_msgpack_struct(simple(ST.STRUCT))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_plain_to_literal_to_plain_round_trips(data: st.DataObject) -> None:
    lt = data.draw(LITERAL_TYPES, label="type")
    value = data.draw(values_for(lt), label="value")
    lit = plain_to_literal(value, lt, "x")
    plain = literal_to_plain(lit)
    json.dumps(plain, allow_nan=False)  # always JSON for the status
    again = plain_to_literal(plain, lt, "x")
    assert again == lit
    assert literal_to_plain(again) == plain


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=6), st.data(), max_size=4), st.data())
def test_plain_maps_round_trip_through_literal_maps(names: dict[str, Any], data: st.DataObject) -> None:
    types = {n: data.draw(LITERAL_TYPES) for n in names}
    values = {n: data.draw(values_for(t)) for n, t in types.items()}
    lm = plain_map_to_literal_map(values, types)
    assert plain_map_to_literal_map(literal_map_to_plain(lm), types) == lm
    assert literals_pb2.LiteralMap.FromString(lm.SerializeToString()) == lm


@pytest.mark.parametrize(
    ("value", "lt", "message"),
    [
        ("1", simple(ST.INTEGER), "expected integer, got str '1'"),
        (True, simple(ST.INTEGER), "expected integer, got bool True"),
        (2**63, simple(ST.INTEGER), "does not fit in 64 bits"),
        (1, simple(ST.BOOLEAN), "expected boolean, got int 1"),
        ("yesterday", simple(ST.DATETIME), "expected datetime"),
        ("soon", simple(ST.DURATION), "expected duration"),
        ([1], simple(ST.STRUCT), "expected struct (JSON object), got list"),
        ("purple", types_pb2.LiteralType(enum_type=types_pb2.EnumType(values=["red"])), "expected enum ['red']"),
        (5, types_pb2.LiteralType(blob=types_pb2.BlobType()), "expected blob (URI)"),
        ({"a": 1}, types_pb2.LiteralType(collection_type=simple(ST.INTEGER)), "expected list of integer"),
    ],
)
def test_value_that_does_not_fit_names_field_and_expected_type(value: Any, lt: types_pb2.LiteralType, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        plain_to_literal(value, lt, "inputs.x")
    assert info.value.field == "inputs.x"
    assert str(info.value).startswith("inputs.x: ")


def test_nested_mismatch_names_the_nested_path() -> None:
    lt = types_pb2.LiteralType(map_value_type=types_pb2.LiteralType(collection_type=simple(ST.FLOAT)))
    with pytest.raises(SpecError) as info:
        plain_to_literal({"w": [1.0, "heavy"]}, lt, "inputs.weights")
    assert info.value.field == "inputs.weights.w[1]"
    assert "expected float, got str 'heavy'" in info.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("1.5s", 1.5), ("1h30m", 5400), ("250ms", 0.25), ("-2m", -120), (42, 42), (0.5, 0.5)],
)
def test_durations_accept_seconds_protobuf_and_go_forms(text: Any, seconds: float) -> None:
    lit = plain_to_literal(text, simple(ST.DURATION))
    assert lit.scalar.primitive.duration.ToTimedelta() == dt.timedelta(seconds=seconds)


def test_naive_and_offset_datetimes_are_normalised_to_utc() -> None:
    lt = simple(ST.DATETIME)
    naive = plain_to_literal(dt.datetime(2024, 1, 2, 3, 4, 5), lt)
    offset = plain_to_literal("2024-01-02T05:04:05+02:00", lt)
    date_only = plain_to_literal(dt.date(2024, 1, 2), lt)
    assert literal_to_plain(naive) == literal_to_plain(offset) == "2024-01-02T03:04:05Z"
    assert literal_to_plain(date_only) == "2024-01-02T00:00:00Z"


def test_generic_struct_and_json_string_struct() -> None:
    lit = plain_to_literal('{"a": [1, "b"]}', simple(ST.STRUCT))
    assert lit.scalar.WhichOneof("value") == "generic"
    assert literal_to_plain(lit) == {"a": [1.0, "b"]}


def test_guessed_types_match_flytekit_python_types() -> None:
    assert guess_literal_type(3) == simple(ST.INTEGER)
    assert guess_literal_type(True) == simple(ST.BOOLEAN)
    assert guess_literal_type({"a": 1}) == msgpack_struct_type()
    assert guess_literal_type([1, 2]) == types_pb2.LiteralType(collection_type=simple(ST.INTEGER))
    with pytest.raises(SpecError, match="different types"):
        guess_literal_type([1, "a"], "outputs.x")
    with pytest.raises(SpecError, match="cannot infer"):
        guess_literal_type(object(), "outputs.x")


def test_untyped_plain_outputs_are_guessed() -> None:
    lm = plain_map_to_literal_map({"n": 1, "info": {"k": "v"}, "when": dt.timedelta(seconds=3)})
    assert msgpack.unpackb(lm.literals["info"].scalar.binary.value) == {"k": "v"}
    assert literal_map_to_plain(lm) == {"n": 1, "info": {"k": "v"}, "when": "3s"}


def test_literals_without_plain_form_render_as_full_literal() -> None:
    err = literals_pb2.Literal(scalar=literals_pb2.Scalar(error=types_pb2.Error(message="boom")))
    opaque = literals_pb2.Literal(scalar=literals_pb2.Scalar(binary=literals_pb2.Binary(value=b"\x00", tag="pickle")))
    assert literal_to_plain(err) == {"literal": {"scalar": {"error": {"message": "boom"}}}}
    assert literal_to_plain(opaque)["literal"]["scalar"]["binary"]["tag"] == "pickle"


def test_msgpack_bytes_render_as_base64_text() -> None:
    lit = literals_pb2.Literal(
        scalar=literals_pb2.Scalar(binary=literals_pb2.Binary(value=msgpack.packb({"b": b"\x01\x02"}), tag="msgpack"))
    )
    assert literal_to_plain(lit) == {"b": "AQI="}


def test_type_descriptions_are_readable() -> None:
    opt = _type(CASES[[c["name"] for c in CASES].index("optional_int_set")]["type"])
    assert describe_type(opt) == "one of [integer, none]"
    assert describe_type(types_pb2.LiteralType(map_value_type=simple(ST.FLOAT))) == "map of string to float"
