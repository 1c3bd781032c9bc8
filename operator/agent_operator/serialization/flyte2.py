"""Flyte 2 task templates (``flyteidl2``) in an AgentTask, and telling them from Flyte 1's.

What the packages' own files say (flyteidl2 2.0.51, the ``flyte`` 2.12 SDK):

* ``flyteidl2.core.TaskTemplate`` keeps flyteidl 1's field numbers and wire types for every
  field the two share, and adds fields (``TaskTemplate`` 19 ``reuse_policy``, 20
  ``worker_kind``; ``TaskMetadata`` 17-24; ...).  So the binary form of a Flyte 2 template
  parses as a flyteidl 1 ``TaskTemplate``, the added fields kept as unknown fields and
  written back unchanged: that is how the operator carries it.
* Its JSON is not flyteidl 1's: ``VariableMap.variables`` is a *repeated* ``VariableEntry``
  (``[{"key": "x", "value": {...}}]``) where flyteidl 1 has a map (``{"x": {...}}``).  Both
  are the same bytes on the wire (a proto3 map is a repeated key/value entry).
* Flyte 2's deployable unit is ``flyteidl2.task.TaskSpec`` (``task_template`` = 1,
  ``default_inputs``, ``short_name``, ``environment``, ``documentation``), not flyteidl 1's
  ``admin.TaskSpec`` (``template`` = 1, ``description`` = 2).

The JSON form is read with flyteidl2's own messages when the ``[flyte2]`` extra is installed
(so a misspelt Flyte 2 field is an error, as in Flyte); without it, the only difference
that matters to the operator - the variables lists - is converted here, and Flyte-2-only
fields are reported with the extra to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from flyteidl.core import tasks_pb2
from google.protobuf import json_format, message

from agent_operator.serialization.errors import SpecError

#: the extra bringing flyteidl2 (and the Flyte 2 SDK, for the in-process bridge)
EXTRA = "flyte-agent-operator[flyte2]"
_INTERFACE_SIDES = ("inputs", "outputs")


def flyteidl2_available() -> bool:
    """Whether ``import flyteidl2`` can succeed (checked without importing it)."""
    try:
        return importlib.util.find_spec("flyteidl2") is not None
    except (ImportError, ValueError):
        return False


def _variables_forms(value: Mapping[str, Any]) -> dict[str, str]:
    """``{"inputs": "list"|"map", ...}``: how each side of the interface writes its variables."""
    interface = value.get("interface")
    forms: dict[str, str] = {}
    if not isinstance(interface, Mapping):
        return forms
    for side in _INTERFACE_SIDES:
        block = interface.get(side)
        variables = block.get("variables") if isinstance(block, Mapping) else None
        if isinstance(variables, list):
            forms[side] = "list"
        elif isinstance(variables, Mapping):
            forms[side] = "map"
    return forms


def is_flyte2_task_spec_json(value: Mapping[str, Any]) -> bool:
    """A Flyte 2 ``TaskSpec`` in JSON form (``taskTemplate`` / ``task_template`` at the top)."""
    return ("taskTemplate" in value or "task_template" in value) and not ({"type", "id", "interface"} & set(value))


def is_flyte2_template_json(value: Mapping[str, Any], field: str) -> bool:
    """Whether ``value`` is a TaskTemplate in Flyte 2's JSON form (variables as entry lists).

    Raises SpecError when the two forms are mixed in one template.
    """
    forms = _variables_forms(value)
    if len(set(forms.values())) > 1:
        listed = [s for s, f in forms.items() if f == "list"][0]
        mapped = [s for s, f in forms.items() if f == "map"][0]
        raise SpecError(
            f"{field}.interface", f"{listed}.variables is a list of {{key, value}} entries (Flyte 2's flyteidl2 "
            f"form) but {mapped}.variables is a mapping (Flyte 1's flyteidl form); write both the same way")
    return "list" in forms.values()


def _entries_to_map(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A copy of ``value`` with each ``variables`` list turned into flyteidl 1's mapping."""
    out = dict(value)
    interface = dict(out.get("interface") or {})
    for side in _INTERFACE_SIDES:
        block = interface.get(side)
        if not isinstance(block, Mapping) or not isinstance(block.get("variables"), list):
            continue
        variables: dict[str, Any] = {}
        for i, entry in enumerate(block["variables"]):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str) or not entry["key"]:
                raise SpecError(f"{field}.interface.{side}.variables[{i}]",
                                "expected {key: NAME, value: {type: ...}} (Flyte 2 VariableEntry)")
            if entry["key"] in variables:
                raise SpecError(f"{field}.interface.{side}.variables[{i}].key", f"{entry['key']!r} appears twice")
            variables[entry["key"]] = entry.get("value") or {}
        interface[side] = {**block, "variables": variables}
    out["interface"] = interface
    return out


def template_from_flyte2_json(value: Mapping[str, Any], field: str) -> tasks_pb2.TaskTemplate:
    """A Flyte 2 JSON-form TaskTemplate as the flyteidl 1 message the operator runs.

    With flyteidl2 installed the JSON is parsed by ``flyteidl2.core.TaskTemplate`` and
    carried over in binary, so Flyte-2-only fields survive (as unknown fields) for Flyte 2
    connectors.
    """
    if flyteidl2_available():
        from flyteidl2.core import tasks_pb2 as tasks2

        v2 = tasks2.TaskTemplate()
        try:
            json_format.ParseDict(dict(value), v2)
        except json_format.ParseError as e:
            raise SpecError(field, f"not a valid Flyte 2 (flyteidl2) TaskTemplate: {e}") from e
        template = tasks_pb2.TaskTemplate()
        template.ParseFromString(v2.SerializeToString())
        return template
    template = tasks_pb2.TaskTemplate()
    try:
        json_format.ParseDict(_entries_to_map(value, field), template)
    except json_format.ParseError as e:
        raise SpecError(field, f"not a TaskTemplate the operator can read without flyteidl2: {e}; if this field is "
                               f"Flyte 2's, install {EXTRA}") from e
    return template


def flyte1_parse_hint(error: str) -> str:
    """A sentence to add when a Flyte 1 (map-form) template fails to parse on a field
    that only Flyte 2 has (someone wrote a Flyte 2 template with Flyte 1 variables)."""
    if not flyteidl2_available() or "no field named" not in error:
        return ""
    return (" (Flyte 2's TaskTemplate has this field: a Flyte 2 template writes interface variables as a list of "
            "{key, value} entries, as `flyte` serializes it)")


def load_flyte2_task_spec(data: bytes) -> tasks_pb2.TaskTemplate | None:
    """The template inside a binary ``flyteidl2.task.TaskSpec``, or None when ``data`` is not
    one (or flyteidl2 is not installed)."""
    if not flyteidl2_available():
        return None
    from flyteidl2.task import task_definition_pb2

    spec = task_definition_pb2.TaskSpec()
    try:
        spec.ParseFromString(data)
    except message.DecodeError:
        return None
    if not spec.task_template.type or _unknown(spec):
        return None
    template = tasks_pb2.TaskTemplate()
    template.ParseFromString(spec.task_template.SerializeToString())
    return template


def task_template_of_spec_json(value: Mapping[str, Any], field: str) -> tasks_pb2.TaskTemplate:
    """The template of a Flyte 2 TaskSpec in JSON form (what ``render`` accepts)."""
    inner = value.get("taskTemplate", value.get("task_template"))
    if not isinstance(inner, Mapping):
        raise SpecError(f"{field}: taskTemplate", "expected the Flyte 2 TaskTemplate mapping")
    return template_from_flyte2_json(inner, f"{field}: taskTemplate")


def _unknown(msg: message.Message) -> bool:
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.DiscardUnknownFields()
    return copy.ByteSize() != msg.ByteSize()


def is_flyte2(template: tasks_pb2.TaskTemplate) -> bool:
    """Whether the template was written by the Flyte 2 SDK (its runtime says so) or carries
    fields only flyteidl2 has."""
    runtime = template.metadata.runtime
    major = runtime.version.split(".", 1)[0]
    return (runtime.type == runtime.FLYTE_SDK and major.isdigit() and int(major) >= 2) or _unknown(template)


def to_flyte2(template: tasks_pb2.TaskTemplate) -> Any:
    """The same template as a ``flyteidl2.core.TaskTemplate`` (byte for byte)."""
    from flyteidl2.core import tasks_pb2 as tasks2

    return tasks2.TaskTemplate.FromString(template.SerializeToString())


def template_json(template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    """The JSON form to write into a manifest: Flyte 2's for a Flyte 2 template (when flyteidl2
    is installed, so nothing Flyte 2 added is lost), flyteidl 1's otherwise."""
    if is_flyte2(template) and flyteidl2_available():
        data: dict[str, Any] = json_format.MessageToDict(to_flyte2(template))
        return data
    plain: dict[str, Any] = json_format.MessageToDict(template)
    return plain
