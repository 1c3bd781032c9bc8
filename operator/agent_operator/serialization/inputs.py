"""Task inputs: a LiteralMap (JSON mapping / base64) or plain values typed by the interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2, types_pb2
from google.protobuf import json_format, message

from agent_operator.serialization.errors import SpecError
from agent_operator.serialization.literals import describe_type, plain_to_literal
from agent_operator.serialization.templates import decode_base64, parse_text

LiteralMap = literals_pb2.LiteralMap
_LITERAL_KINDS = {"scalar", "collection", "map", "offloadedMetadata", "offloaded_metadata"}


def _accepts_none(lt: types_pb2.LiteralType) -> bool:
    if lt.WhichOneof("type") == "simple":
        return lt.simple == types_pb2.SimpleType.NONE
    if lt.WhichOneof("type") == "union_type":
        return any(_accepts_none(v) for v in lt.union_type.variants)
    return False


def is_literal_map_json(value: Mapping[str, Any]) -> bool:
    """True for the protobuf JSON form ``{"literals": {name: {"scalar": ...}}}``."""
    if set(value) != {"literals"} or not isinstance(value["literals"], Mapping):
        return False
    return all(isinstance(v, Mapping) and len(v) >= 1 and set(v) & _LITERAL_KINDS for v in value["literals"].values())


def _literal_map_from_json(value: Mapping[str, Any], field: str) -> LiteralMap:
    lm = LiteralMap()
    try:
        json_format.ParseDict(dict(value), lm)
    except json_format.ParseError as e:
        raise SpecError(field, f"not a valid LiteralMap: {e}") from e
    return lm


def load_inputs(value: Any, template: tasks_pb2.TaskTemplate, field: str = "inputs") -> LiteralMap:
    """Inputs for ``template`` as a LiteralMap.

    ``value`` is None, a LiteralMap (message, protobuf JSON mapping or base64 binary) or a
    mapping of plain values converted by the declared input types.  Plain values are
    checked: an unknown name, a missing input or a value that does not fit its type is a
    SpecError naming the input and the expected type.  A missing input whose type admits
    None (``Optional[T]``) is passed as None.
    """
    if isinstance(value, LiteralMap):
        return value
    if isinstance(value, (bytes, bytearray)):
        lm = LiteralMap()
        try:
            lm.ParseFromString(bytes(value))
        except message.DecodeError as e:
            raise SpecError(field, f"not a binary LiteralMap: {e}") from e
        return lm
    if isinstance(value, str):
        parsed = parse_text(value, field) if value.strip() else None
        if isinstance(parsed, str):
            return load_inputs(decode_base64(parsed, field, "LiteralMap"), template, field)
        return load_inputs(parsed, template, field)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SpecError(field, f"expected a mapping of input names to values, got {type(value).__name__}")
    if is_literal_map_json(value):
        return _literal_map_from_json(value, field)

    declared = template.interface.inputs.variables
    unknown = sorted(set(value) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise SpecError(f"{field}.{unknown[0]}", f"not an input of task type {template.type!r} (declared inputs: {known})")
    lm = LiteralMap()
    # given values first (sorted, for a deterministic first error), then what is missing
    for name in sorted(value):
        var = declared[name]
        lm.literals[name].CopyFrom(plain_to_literal(value[name], var.type, f"{field}.{name}"))
    for name in sorted(set(declared) - set(value)):
        var = declared[name]
        where = f"{field}.{name}"
        if not _accepts_none(var.type):
            raise SpecError(where, f"required input missing (expected {describe_type(var.type)})")
        lm.literals[name].CopyFrom(plain_to_literal(None, var.type, where))
    return lm
