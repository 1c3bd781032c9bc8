"""Hypothesis strategies: Flyte LiteralTypes and plain values that fit them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flyteidl.core import types_pb2
from hypothesis import strategies as st

from agent_operator.serialization.literals import msgpack_struct_type

ST = types_pb2.SimpleType
UTC = dt.timezone.utc
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_SCALARS = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def simple(t: int) -> types_pb2.LiteralType:
    return types_pb2.LiteralType(simple=t)  # type: ignore[arg-type]


def _generic_struct() -> types_pb2.LiteralType:
    return simple(ST.STRUCT)


BASE_TYPES = st.sampled_from(
    [
        simple(ST.INTEGER),
        simple(ST.FLOAT),
        simple(ST.STRING),
        simple(ST.BOOLEAN),
        simple(ST.DATETIME),
        simple(ST.DURATION),
        msgpack_struct_type(),
        _generic_struct(),
        types_pb2.LiteralType(blob=types_pb2.BlobType(format="csv")),
        types_pb2.LiteralType(blob=types_pb2.BlobType()),
        types_pb2.LiteralType(enum_type=types_pb2.EnumType(values=["red", "green", "blue"])),
    ]
)


def _wrap(inner: st.SearchStrategy[types_pb2.LiteralType]) -> st.SearchStrategy[types_pb2.LiteralType]:
    def optional(t: types_pb2.LiteralType) -> types_pb2.LiteralType:
        if t.WhichOneof("type") == "union_type":
            return t
        return types_pb2.LiteralType(
            union_type=types_pb2.UnionType(
                variants=[t, types_pb2.LiteralType(simple=ST.NONE, structure=types_pb2.TypeStructure(tag="none"))]
            )
        )

    return (
        inner.map(lambda t: types_pb2.LiteralType(collection_type=t))
        | inner.map(lambda t: types_pb2.LiteralType(map_value_type=t))
        | inner.map(optional)
    )


LITERAL_TYPES = st.recursive(BASE_TYPES, _wrap, max_leaves=4)


def values_for(lt: types_pb2.LiteralType) -> st.SearchStrategy[Any]:
    """Plain values (as a user writes them in YAML/JSON or Python) of type ``lt``."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return {
            ST.INTEGER: INT64,
            ST.FLOAT: st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40),
            ST.STRING: st.text(max_size=20),
            ST.BOOLEAN: st.booleans(),
            ST.DATETIME: st.datetimes(
                min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(UTC)
            ),
            ST.DURATION: st.timedeltas(min_value=dt.timedelta(days=-10**6), max_value=dt.timedelta(days=10**6)),
            ST.STRUCT: st.dictionaries(st.text(max_size=5), JSON, max_size=4),
            ST.NONE: st.none(),
        }[lt.simple]
    if kind == "collection_type":
        return st.lists(values_for(lt.collection_type), max_size=3)
    if kind == "map_value_type":
        return st.dictionaries(st.text(max_size=6), values_for(lt.map_value_type), max_size=3)
    if kind == "blob":
        return st.text(min_size=1, max_size=30).map(lambda s: "s3://bucket/" + s)
    if kind == "enum_type":
        return st.sampled_from(list(lt.enum_type.values))
    if kind == "union_type":
        return st.one_of(*[values_for(v) for v in lt.union_type.variants])
    raise AssertionError(kind)
