"""Plain Python/JSON values ⇄ flyteidl literals, driven by the declared LiteralType.

Encodings follow flytekit 1.16's TypeEngine so that an agent ported from flytekit sees the
literals it expects: primitives as ``Primitive``, ``list``/``dict[str, T]`` as
collection/map, untyped dicts and dataclasses (``STRUCT`` with the ``msgpack``
serialization-format annotation) as msgpack ``Binary``, other ``STRUCT`` as a protobuf
Struct, files as blobs, ``Optional[T]`` as a union literal.  The reference encodings are
pinned by ``tests/fixtures/flytekit/literals.json``, produced with real flytekit.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
from flyteidl.core import literals_pb2, types_pb2
from google.protobuf import json_format, struct_pb2

from agent_operator.serialization.errors import SpecError
from agent_operator.serialization.timefmt import to_duration, to_timestamp

LiteralType = types_pb2.LiteralType
Literal = literals_pb2.Literal
LiteralMap = literals_pb2.LiteralMap
SimpleType = types_pb2.SimpleType

MSGPACK_TAG = "msgpack"
_INT64 = (-(2**63), 2**63 - 1)


# --------------------------------------------------------------------------- types


def is_msgpack_struct(lt: LiteralType) -> bool:
    """True for flytekit's untyped-dict / dataclass type (STRUCT carried as msgpack binary)."""
    if not lt.HasField("annotation"):
        return False
    meta = lt.annotation.annotations.fields.get("cache-key-metadata")
    if meta is None or not meta.HasField("struct_value"):
        return False
    fmt = meta.struct_value.fields.get("serialization-format")
    return fmt is not None and fmt.string_value == MSGPACK_TAG


def describe_type(lt: LiteralType) -> str:
    """A short human name of a LiteralType for error messages (``list of integer``)."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        name = SimpleType.Name(lt.simple).lower()
        return "struct (JSON object)" if name == "struct" else name
    if kind == "collection_type":
        return f"list of {describe_type(lt.collection_type)}"
    if kind == "map_value_type":
        return f"map of string to {describe_type(lt.map_value_type)}"
    if kind == "blob":
        return "blob (URI)"
    if kind == "enum_type":
        return f"enum {list(lt.enum_type.values)}"
    if kind == "union_type":
        return "one of [" + ", ".join(describe_type(v) for v in lt.union_type.variants) + "]"
    if kind == "structured_dataset_type":
        return "structured dataset (URI)"
    if kind == "schema":
        return "schema (URI)"
    return "any"


def _simple(simple: int) -> LiteralType:
    return LiteralType(simple=simple)  # type: ignore[arg-type]


def msgpack_struct_type() -> LiteralType:
    """The LiteralType flytekit declares for an untyped ``dict``."""
    lt = _simple(SimpleType.STRUCT)
    json_format.ParseDict(
        {"cache-key-metadata": {"serialization-format": MSGPACK_TAG}}, lt.annotation.annotations
    )
    return lt


def guess_literal_type(value: Any, field: str = "value") -> LiteralType:
    """The LiteralType flytekit would infer from a Python value's own type."""
    if value is None:
        return _simple(SimpleType.NONE)
    if isinstance(value, bool):
        return _simple(SimpleType.BOOLEAN)
    if isinstance(value, int):
        return _simple(SimpleType.INTEGER)
    if isinstance(value, float):
        return _simple(SimpleType.FLOAT)
    if isinstance(value, str):
        return _simple(SimpleType.STRING)
    if isinstance(value, dt.datetime):
        return _simple(SimpleType.DATETIME)
    if isinstance(value, dt.timedelta):
        return _simple(SimpleType.DURATION)
    if isinstance(value, (bytes, bytearray)):
        return _simple(SimpleType.BINARY)
    if isinstance(value, (list, tuple)):
        if not value:
            return LiteralType(collection_type=_simple(SimpleType.NONE))
        first = guess_literal_type(value[0], f"{field}[0]")
        for i, item in enumerate(value[1:], 1):
            if guess_literal_type(item, f"{field}[{i}]") != first:
                raise SpecError(field, "list items have different types; declare the output type")
        return LiteralType(collection_type=first)
    if isinstance(value, Mapping):
        return msgpack_struct_type()
    raise SpecError(field, f"cannot infer a Flyte type for {type(value).__name__} value {value!r}")


# --------------------------------------------------------------------------- plain -> literal


def _mismatch(field: str, lt: LiteralType, value: Any) -> SpecError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return SpecError(field, f"expected {describe_type(lt)}, got {type(value).__name__} {shown}")


def _scalar(**kwargs: Any) -> Literal:
    return Literal(scalar=literals_pb2.Scalar(**kwargs))


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _uri(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("uri"), str) and value["uri"]:
        return str(value["uri"])
    return None


def _simple_literal(value: Any, lt: LiteralType, field: str) -> Literal:
    st = lt.simple
    if st == SimpleType.NONE:
        if value is None:
            return _scalar(none_type=literals_pb2.Void())
    elif st == SimpleType.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                raise SpecError(field, f"integer {value} does not fit in 64 bits")
            return _scalar(primitive=literals_pb2.Primitive(integer=value))
    elif st == SimpleType.FLOAT:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _scalar(primitive=literals_pb2.Primitive(float_value=float(value)))
    elif st == SimpleType.STRING:
        if isinstance(value, str):
            return _scalar(primitive=literals_pb2.Primitive(string_value=value))
    elif st == SimpleType.BOOLEAN:
        if isinstance(value, bool):
            return _scalar(primitive=literals_pb2.Primitive(boolean=value))
    elif st == SimpleType.DATETIME:
        ts = to_timestamp(value)
        if ts is not None:
            return _scalar(primitive=literals_pb2.Primitive(datetime=ts))
    elif st == SimpleType.DURATION:
        d = to_duration(value)
        if d is not None:
            return _scalar(primitive=literals_pb2.Primitive(duration=d))
    elif st == SimpleType.STRUCT:
        obj = _json_object(value)
        if isinstance(obj, Mapping):
            if is_msgpack_struct(lt):
                try:
                    packed = msgpack.packb(obj)
                except (TypeError, ValueError) as e:
                    raise SpecError(field, f"not representable as a JSON object: {e}") from e
                return _scalar(binary=literals_pb2.Binary(value=packed, tag=MSGPACK_TAG))
            generic = struct_pb2.Struct()
            try:
                json_format.ParseDict(json.loads(json.dumps(obj)), generic)
            except (TypeError, ValueError, json_format.ParseError) as e:
                raise SpecError(field, f"not representable as a JSON object: {e}") from e
            return _scalar(generic=generic)
    elif st == SimpleType.BINARY:
        if isinstance(value, (bytes, bytearray)):
            return _scalar(binary=literals_pb2.Binary(value=bytes(value)))
        if isinstance(value, str):
            try:
                return _scalar(binary=literals_pb2.Binary(value=base64.b64decode(value, validate=True)))
            except ValueError:
                pass
    raise _mismatch(field, lt, value)


def plain_to_literal(value: Any, lt: LiteralType, field: str = "value") -> Literal:
    """Convert a plain value to the Literal of type ``lt``; SpecError names ``field`` on mismatch."""
    if isinstance(value, Literal):
        return value
    kind = lt.WhichOneof("type")
    if kind is None:
        return plain_to_literal(value, guess_literal_type(value, field), field)
    if kind == "simple":
        return _simple_literal(value, lt, field)
    if kind == "collection_type":
        if not isinstance(value, (list, tuple)):
            raise _mismatch(field, lt, value)
        items = [plain_to_literal(v, lt.collection_type, f"{field}[{i}]") for i, v in enumerate(value)]
        return Literal(collection=literals_pb2.LiteralCollection(literals=items))
    if kind == "map_value_type":
        if not isinstance(value, Mapping):
            raise _mismatch(field, lt, value)
        out = Literal(map=literals_pb2.LiteralMap())
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(field, f"map keys must be strings, got {type(k).__name__} {k!r}")
            out.map.literals[k].CopyFrom(plain_to_literal(v, lt.map_value_type, f"{field}.{k}"))
        return out
    if kind == "blob":
        uri = _uri(value)
        if uri is None:
            raise _mismatch(field, lt, value)
        blob = literals_pb2.Blob(uri=uri, metadata=literals_pb2.BlobMetadata(type=lt.blob))
        return _scalar(blob=blob)
    if kind == "enum_type":
        if isinstance(value, str) and value in lt.enum_type.values:
            return _scalar(primitive=literals_pb2.Primitive(string_value=value))
        raise _mismatch(field, lt, value)
    if kind == "union_type":
        for variant in lt.union_type.variants:
            try:
                inner = plain_to_literal(value, variant, field)
            except SpecError:
                continue
            return _scalar(union=literals_pb2.Union(value=inner, type=variant))
        raise _mismatch(field, lt, value)
    if kind == "structured_dataset_type":
        uri = _uri(value)
        if uri is None:
            raise _mismatch(field, lt, value)
        sd = literals_pb2.StructuredDataset(
            uri=uri,
            metadata=literals_pb2.StructuredDatasetMetadata(structured_dataset_type=lt.structured_dataset_type),
        )
        return _scalar(structured_dataset=sd)
    if kind == "schema":
        uri = _uri(value)
        if uri is None:
            raise _mismatch(field, lt, value)
        return _scalar(schema=literals_pb2.Schema(uri=uri, type=lt.schema))
    raise SpecError(field, f"the declared type {kind} is not supported for plain values; give a literal")


def plain_map_to_literal_map(
    values: Mapping[str, Any], types: Mapping[str, LiteralType] | None = None, prefix: str = "outputs"
) -> LiteralMap:
    """Convert ``{name: plain}``; names present in ``types`` use it, others are guessed."""
    lm = LiteralMap()
    for name, value in values.items():
        lt = (types or {}).get(name)
        field = f"{prefix}.{name}"
        if lt is None:
            lt = guess_literal_type(value, field)
        lm.literals[name].CopyFrom(plain_to_literal(value, lt, field))
    return lm


# --------------------------------------------------------------------------- literal -> plain


def _jsonable(value: Any) -> Any:
    """Make msgpack-decoded data JSON-compatible (bytes become base64 text)."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _full(lit: Literal) -> dict[str, Any]:
    return {"literal": json_format.MessageToDict(lit)}


def walk_literal(lit: Literal, leaf: Callable[[Literal], Any]) -> Any:
    """``lit`` as plain data: collections become lists, maps dicts, a union its value; every
    other literal is ``leaf(lit)``.  The renderings of a literal (status outputs here,
    flytekit's template strings in ``agents/templating.py``) differ only in ``leaf``."""
    kind = lit.WhichOneof("value")
    if kind == "collection":
        return [walk_literal(item, leaf) for item in lit.collection.literals]
    if kind == "map":
        return {k: walk_literal(v, leaf) for k, v in lit.map.literals.items()}
    if kind == "scalar" and lit.scalar.WhichOneof("value") == "union":
        return walk_literal(lit.scalar.union.value, leaf)
    return leaf(lit)


def literal_to_plain(lit: Literal) -> Any:
    """A JSON-compatible plain value for ``lit``.

    Simple values become JSON scalars (datetimes and durations in protobuf JSON form),
    collections lists, maps objects, blobs/datasets their URI and msgpack/generic structs
    the object.  What has no faithful plain form (errors, offloaded literals, opaque
    binaries) is rendered as ``{"literal": <protobuf JSON of the literal>}``.
    """
    return walk_literal(lit, _plain_leaf)


def _plain_leaf(lit: Literal) -> Any:
    if lit.WhichOneof("value") != "scalar":
        return _full(lit)
    sc = lit.scalar
    skind = sc.WhichOneof("value")
    if skind == "primitive":
        p = sc.primitive
        pkind = p.WhichOneof("value")
        if pkind == "integer":
            return p.integer
        if pkind == "float_value":
            return p.float_value
        if pkind == "string_value":
            return p.string_value
        if pkind == "boolean":
            return p.boolean
        if pkind == "datetime":
            return p.datetime.ToJsonString()
        if pkind == "duration":
            return p.duration.ToJsonString()
        return _full(lit)
    if skind == "none_type":
        return None
    if skind == "blob":
        return sc.blob.uri
    if skind == "structured_dataset":
        return sc.structured_dataset.uri
    if skind == "schema":
        return sc.schema.uri
    if skind == "generic":
        return json_format.MessageToDict(sc.generic)
    if skind == "binary" and sc.binary.tag == MSGPACK_TAG:
        try:
            return _jsonable(msgpack.unpackb(sc.binary.value, strict_map_key=False))
        except (ValueError, msgpack.UnpackException):
            return _full(lit)
    return _full(lit)


def literal_map_to_plain(lm: LiteralMap) -> dict[str, Any]:
    """Render every output of ``lm`` with :func:`literal_to_plain`."""
    return {name: literal_to_plain(lit) for name, lit in lm.literals.items()}
