"""Declarative fields: one dataclass declaration gives the OpenAPI schema, the JSON
(camelCase) form and a checked loader.

The AgentTask model in ``spec.py`` / ``status.py`` is the single source of truth: the
CRD's ``openAPIV3Schema`` (``manifest.py``), the status patches the controller writes and
the parsing of user manifests (``run-local`` has no API server to validate them) are all
derived from the same field declarations, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

T = TypeVar("T")

#: what the API server accepts for ``format: date-time`` (RFC 3339)
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


class InvalidField(ValueError):
    """A manifest value does not fit the AgentTask model; ``field`` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def api_field(
    json: str,
    doc: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    required: bool = False,
    **schema: Any,
) -> Any:
    """A dataclass field with its JSON name, its description and extra schema keywords.

    ``schema`` keys are JSON-schema keywords with ``_`` for ``-`` (``x_kubernetes_validations``
    becomes ``x-kubernetes-validations``).
    """
    extra = {_schema_key(k): v for k, v in schema.items()}
    meta = {"json": json, "doc": doc, "required": required, "schema": extra}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _schema_key(name: str) -> str:
    """``x_kubernetes_list_type`` -> ``x-kubernetes-list-type``; ``default_`` -> ``default``.

    ``default`` itself is the Python default of the dataclass field, so the schema default
    is spelled with a trailing underscore.
    """
    if name.startswith("x_"):
        return name.replace("_", "-")
    return name.rstrip("_")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


_MODEL_TYPES: dict[type, bool] = {}


def _model_type(tp: type) -> bool:
    """``_is_model`` remembered per type: dump asks for every value of every status write (bench: 0.7%)."""
    known = _MODEL_TYPES.get(tp)
    if known is None:
        known = _MODEL_TYPES[tp] = _is_model(tp)
    return known


def type_schema(tp: Any) -> dict[str, Any]:
    """The OpenAPI v3 (structural) schema of a Python type used in the model."""
    tp, _ = _strip_optional(tp)
    if _is_model(tp):
        return model_schema(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "format": "int64"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": type_schema(args[0])}
    if origin in (Mapping, dict, typing.Mapping) or tp in (dict, Mapping):
        if args and args[1] is str:
            return {"type": "object", "additionalProperties": {"type": "string"}}
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if tp is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    raise TypeError(f"no schema mapping for {tp!r}")


def model_schema(cls: type) -> dict[str, Any]:
    """Object schema of a model dataclass: properties, required, descriptions, extras."""
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "json" not in meta:
            continue
        schema = type_schema(hints[f.name])
        schema.update(meta["schema"])
        schema = {"description": meta["doc"], **schema}
        props[meta["json"]] = schema
        if meta["required"]:
            required.append(meta["json"])
    out: dict[str, Any] = {"type": "object"}
    doc = getattr(cls, "__api_doc__", None)
    if doc:
        out["description"] = doc
    out["properties"] = props
    if required:
        out["required"] = required
    out.update(getattr(cls, "__schema_extra__", {}))
    return out


def dump(value: Any) -> Any:
    """JSON form of a model value: camelCase keys, ``None`` and empty lists omitted.

    An empty mapping is kept: ``outputs: {}`` (a task without outputs) is not ``outputs``
    unset, and :func:`load` reads it back as ``{}``, so ``load(dump(x)) == x``.
    """
    if _model_type(type(value)):
        out: dict[str, Any] = {}
        for key, f, *_ in _table(type(value))[0]:
            v = getattr(value, f.name)
            if v is None or (isinstance(v, (tuple, list)) and not v):
                continue
            out[key] = dump(v)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): dump(v) for k, v in value.items()}
    return value


Loader = typing.Callable[[Any, str], Any]
_LOADERS: dict[Any, Loader] = {}


def _loader(tp: Any) -> Loader:
    """The loader of ``tp``, built once: the type is inspected when the loader is made, not
    on every value (the controller reads a status on every change of an object)."""
    fn = _LOADERS.get(tp)
    if fn is None:
        fn = _LOADERS[tp] = _optional_loader(*_strip_optional(tp))
    return fn


def _optional_loader(tp: Any, optional: bool) -> Loader:
    base = _base_loader(tp)

    def load_value(raw: Any, where: str) -> Any:
        if raw is None:
            if optional:
                return None
            raise InvalidField(where, "must not be null")
        return base(raw, where)

    return load_value


#: JSON scalars: what the error calls them and which values fit (a bool is not a number)
_SCALARS: dict[type, tuple[str, typing.Callable[[Any], bool]]] = {
    bool: ("a boolean", lambda raw: isinstance(raw, bool)),
    int: ("an integer", lambda raw: isinstance(raw, int) and not isinstance(raw, bool)),
    float: ("a number", lambda raw: isinstance(raw, (int, float)) and not isinstance(raw, bool)),
    str: ("a string", lambda raw: isinstance(raw, str)),
}


def _type_error(where: str, expected: str, raw: Any) -> InvalidField:
    return InvalidField(where, f"expected {expected}, got {type(raw).__name__}")


def _base_loader(tp: Any) -> Loader:
    if _is_model(tp):
        return lambda raw, where: load(tp, raw, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = ", ".join(repr(m.value) for m in tp)

        def load_enum(raw: Any, where: str) -> Any:
            try:
                return tp(raw)
            except ValueError:
                raise InvalidField(where, f"must be one of {allowed}, got {raw!r}") from None

        return load_enum
    if tp in _SCALARS:
        expected, fits = _SCALARS[tp]
        convert = float if tp is float else None

        def load_scalar(raw: Any, where: str) -> Any:
            if not fits(raw):
                raise _type_error(where, expected, raw)
            return convert(raw) if convert is not None else raw
        return load_scalar
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        item = _loader(args[0])

        def load_tuple(raw: Any, where: str) -> Any:
            if not isinstance(raw, list):
                raise _type_error(where, "a list", raw)
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(raw))
        return load_tuple
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        str_values = bool(args) and args[1] is str

        def load_mapping(raw: Any, where: str) -> Any:
            if not isinstance(raw, Mapping):
                raise _type_error(where, "a mapping", raw)
            if str_values:
                bad = [k for k, v in raw.items() if not isinstance(v, str)]
                if bad:
                    raise InvalidField(f"{where}.{bad[0]}", "expected a string")
            return dict(raw)
        return load_mapping
    return lambda raw, where: raw


@functools.lru_cache(maxsize=64)
def _go_pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern with Go (RE2) semantics: ``$`` is the end of the text.

    Python's ``$`` also matches before a trailing newline, so ``"5s\n"`` would pass a
    pattern the API server rejects.
    """
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


_BOUNDS_KEYS = frozenset({"maxLength", "minLength", "pattern", "enum", "format", "maxItems",
                          "x-kubernetes-list-type", "maxProperties", "minimum", "maximum"})


def _bounds_checker(schema: Mapping[str, Any]) -> typing.Callable[[Any, str], None] | None:
    """A checker of the bound keywords in ``schema`` (None when it declares none)."""
    if not _BOUNDS_KEYS.intersection(schema):
        return None
    pattern = _go_pattern(schema["pattern"]) if "pattern" in schema else None
    date_time = schema.get("format") == "date-time"
    list_map_keys = schema["x-kubernetes-list-map-keys"] if schema.get("x-kubernetes-list-type") == "map" else None

    def check(value: Any, where: str) -> None:  # noqa: C901 - the keywords in the API server's order
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                raise InvalidField(where, f"longer than {schema['maxLength']} characters")
            if "minLength" in schema and len(value) < schema["minLength"]:
                raise InvalidField(where, f"shorter than {schema['minLength']} characters")
            if pattern is not None and not pattern.search(value):
                raise InvalidField(where, f"{value[:64]!r} does not match {schema['pattern']!r}")
            if "enum" in schema and value not in schema["enum"]:
                allowed = ", ".join(repr(v) for v in schema["enum"])
                raise InvalidField(where, f"must be one of {allowed}, got {value[:64]!r}")
            if date_time and not _RFC3339.fullmatch(value):
                raise InvalidField(where, f"{value[:64]!r} is not an RFC 3339 date-time (e.g. 2026-01-02T15:04:05Z)")
        elif isinstance(value, tuple):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                raise InvalidField(where, f"more than {schema['maxItems']} items")
            if list_map_keys is not None:
                seen: set[tuple[Any, ...]] = set()
                for i, item in enumerate(value):
                    key = tuple(getattr(item, _attr_for(type(item), k)) for k in list_map_keys)
                    if key in seen:
                        raise InvalidField(f"{where}[{i}]",
                                           f"duplicate entry with {', '.join(list_map_keys)} {key[0]!r}")
                    seen.add(key)
        elif isinstance(value, dict):
            if "maxProperties" in schema and len(value) > schema["maxProperties"]:
                raise InvalidField(where, f"more than {schema['maxProperties']} entries")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                raise InvalidField(where, f"must be >= {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                raise InvalidField(where, f"must be <= {schema['maximum']}")

    return check


def _attr_for(cls: type, json_name: str) -> str:
    """The dataclass attribute behind a JSON field name."""
    for key, f, *_ in _table(cls)[0]:
        if key == json_name:
            return f.name
    raise KeyError(json_name)


def find_pruned_field(value: Any, schema: Mapping[str, Any] | None, path: str = "") -> str | None:
    """The first field the API server's pruning would drop from ``value``, or None.

    The same walk as apiextensions' ``pruning.prune`` (which is what strict field
    validation reports as ``unknown field "..."``, while decoding, before any schema
    check): keys not in ``properties`` go, even under a field that is not an object at all
    (``deletionPolicy: {a: 1}`` reports ``spec.deletionPolicy.a``); lists are walked with
    their ``items`` schema; ``x-kubernetes-preserve-unknown-fields`` stops the walk.
    """
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        return None
    if isinstance(value, Mapping):
        props = schema.get("properties", {}) if schema is not None else {}
        extra = schema.get("additionalProperties") if schema is not None else None
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if schema is not None and key in props:
                found = find_pruned_field(item, props[key], where)
            elif isinstance(extra, Mapping):
                found = find_pruned_field(item, extra, where)
            else:
                return where
            if found:
                return found
    elif isinstance(value, list):
        items = schema.get("items") if schema is not None else None
        for i, item in enumerate(value):
            found = find_pruned_field(item, items, f"{path}[{i}]")
            if found:
                return found
    return None


_FieldTable = tuple[tuple[str, "dataclasses.Field[Any]", Loader, "typing.Callable[[Any, str], None] | None"], ...]
_TABLES: dict[type, tuple[_FieldTable, frozenset[str]]] = {}


def _table(cls: type) -> tuple[_FieldTable, frozenset[str]]:
    """(JSON name, field, loader, bounds checker) of each API field of a model class and the
    set of JSON names, computed once: ``typing.get_type_hints`` re-evaluates every annotation."""
    table = _TABLES.get(cls)
    if table is None:
        hints = typing.get_type_hints(cls)
        fields = tuple((f.metadata["json"], f, _loader(hints[f.name]), _bounds_checker(f.metadata["schema"]))
                       for f in dataclasses.fields(cls) if "json" in f.metadata)
        table = _TABLES[cls] = (fields, frozenset(name for name, *_ in fields))
    return table


def load(cls: type[T], raw: Any, where: str) -> T:
    """Build model ``cls`` from its JSON form, checking types and declared bounds.

    Unknown keys are an error (a typo in a manifest should not be silently ignored, the
    same way the API server prunes and ``kubectl`` warns).
    """
    if not isinstance(raw, Mapping):
        raise InvalidField(where, f"expected a mapping, got {type(raw).__name__}")
    fields, known = _table(cls)
    if not known.issuperset(raw):
        unknown = sorted(str(k) for k in set(raw) - known)
        raise InvalidField(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for key, f, loader, checker in fields:
        # the API server drops null values of non-nullable fields before validating
        value = raw.get(key)
        if value is None:
            if f.metadata["required"]:
                raise InvalidField(f"{where}.{key}", "required")
            continue
        path = f"{where}.{key}"
        value = loader(value, path)
        if checker is not None:
            checker(value, path)
        kwargs[f.name] = value
    return cls(**kwargs)


def load_lenient(cls: type[T], raw: Any, where: str) -> T:
    """Like :func:`load`, but a field that does not fit is left out instead of an error.

    For data the API server already validated against an older schema: what the current
    model cannot read is treated as never written.
    """
    if not isinstance(raw, Mapping):
        return cls()
    try:
        return load(cls, raw, where)
    except InvalidField:
        pass
    kwargs: dict[str, Any] = {}
    for key, f, loader, checker in _table(cls)[0]:
        value = raw.get(key)
        if value is None:
            continue
        path = f"{where}.{key}"
        try:
            value = loader(value, path)
            if checker is not None:
                checker(value, path)
        except InvalidField:
            continue
        kwargs[f.name] = value
    return cls(**kwargs)
