"""flytekit's ``{inputs.x}`` templating, reproduced so ported templates render identically.

``render`` follows ``flytekit.utils.dict_formatter.format_dict``: a string that is exactly
one placeholder becomes the input's value itself (an int stays an int in a JSON body);
placeholders inside longer strings are replaced by ``str(value)``.  Values come from
``inputs_string_repr``, which follows ``flytekit.interaction.string_literals``
(datetimes in ``isoformat()``, durations as seconds, blobs as their URI).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

import msgpack
from flyteidl.core import literals_pb2
from google.protobuf import json_format

from agent_operator.serialization import walk_literal

_PLACEHOLDER = re.compile(r"\{([^}]+)\}")


class TemplateError(ValueError):
    """A ``{placeholder}`` names something the inputs do not have."""


def _primitive(p: literals_pb2.Primitive) -> Any:
    kind = p.WhichOneof("value")
    if kind == "integer":
        return p.integer
    if kind == "float_value":
        return p.float_value
    if kind == "boolean":
        return p.boolean
    if kind == "string_value":
        return p.string_value
    if kind == "datetime":
        return p.datetime.ToDatetime(tzinfo=dt.timezone.utc).isoformat()
    if kind == "duration":
        return p.duration.ToTimedelta().total_seconds()
    raise TemplateError(f"unknown primitive {p}")


def literal_string_repr(lit: literals_pb2.Literal) -> Any:
    """The short value flytekit substitutes for a literal in templates."""
    return walk_literal(lit, _string_leaf)


def _string_leaf(lit: literals_pb2.Literal) -> Any:
    if lit.WhichOneof("value") == "offloaded_metadata":
        return f"Offloaded literal metadata: {lit.offloaded_metadata}"
    if lit.WhichOneof("value") != "scalar":
        raise TemplateError(f"unknown literal {lit}")
    sc = lit.scalar
    skind = sc.WhichOneof("value")
    if skind == "primitive":
        return _primitive(sc.primitive)
    if skind == "none_type":
        return None
    if skind == "error":
        return sc.error.message
    if skind == "structured_dataset":
        return sc.structured_dataset.uri
    if skind == "schema":
        return sc.schema.uri
    if skind == "blob":
        return sc.blob.uri
    if skind == "binary":
        if sc.binary.tag == "msgpack":
            return json.dumps(msgpack.unpackb(sc.binary.value, strict_map_key=False))
        return base64.b64encode(sc.binary.value)
    if skind == "generic":
        return json_format.MessageToDict(sc.generic)
    raise TemplateError(f"unknown literal {lit}")


def inputs_string_repr(inputs: literals_pb2.LiteralMap | None) -> dict[str, Any]:
    """``{name: value}`` of all inputs, for ``{inputs.name}`` placeholders."""
    if inputs is None:
        return {}
    return {k: literal_string_repr(v) for k, v in inputs.literals.items()}


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    value: Any = context
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            known = ", ".join(sorted(context.get("inputs", {}))) or "none"
            raise TemplateError(f"placeholder {{{dotted}}} refers to an unknown value (inputs: {known})")
        value = value[key]
    return value


def render(template: Any, context: dict[str, Any]) -> Any:
    """Substitute ``{a.b}`` placeholders in strings nested anywhere in ``template``."""
    if isinstance(template, str):
        matches = [m for m in _PLACEHOLDER.findall(template) if "." in m]
        if not matches:
            return template
        if len(matches) == 1 and template == f"{{{matches[0]}}}":
            return _lookup(context, matches[0])
        out = template
        for match in matches:
            out = out.replace(f"{{{match}}}", str(_lookup(context, match)))
        return out
    if isinstance(template, list):
        return [render(item, context) for item in template]
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    return template
