"""Loading a flyteidl ``TaskTemplate`` from what a user can put in an AgentTask.

Accepted forms: a dict (protobuf JSON mapping, camelCase or snake_case field names), a
JSON or YAML string of one, base64 of the binary message, raw bytes, or the message.

``pyflyte serialize`` / ``pyflyte package`` write ``flyteidl.admin.TaskSpec`` files
(``0_<name>_1.pb``) with the template nested in field 1.  Binary protobuf carries no type
name, and a TaskSpec parses "successfully" as a TaskTemplate into garbage, so both
interpretations are tried and a TaskSpec is reported with a pointer to
``agent-operator render`` instead of being silently misread.

Flyte 2 templates (flyteidl2) are accepted too, binary or in their JSON form; see
:mod:`agent_operator.serialization.flyte2`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import yaml
from flyteidl.admin import task_pb2
from flyteidl.core import tasks_pb2
from google.protobuf import json_format, message

from agent_operator.serialization import flyte2
from agent_operator.serialization.errors import SpecError

TaskTemplate = tasks_pb2.TaskTemplate
TaskSpec = task_pb2.TaskSpec

_FLYTE2_TASKSPEC_HINT = (
    "this is a Flyte 2 flyteidl2.task.TaskSpec, not a TaskTemplate; use its 'taskTemplate' field, or turn the "
    "file into an AgentTask with `agent-operator render FILE --name NAME`"
)
_TASKSPEC_HINT = (
    "this is a flyteidl.admin.TaskSpec (what `pyflyte serialize` / `pyflyte package` write as "
    "0_<name>_1.pb), not a TaskTemplate; use its 'template' field, or turn the file into an "
    "AgentTask with `agent-operator render FILE.pb --name NAME`"
)


def _has_unknown_fields(msg: message.Message) -> bool:
    """True if ``msg`` or any nested message kept bytes that match no declared field.

    A wrong-message-type parse shows up as unknown fields (mismatched wire types).
    """
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.DiscardUnknownFields()
    return copy.ByteSize() != msg.ByteSize()


def parse_text(text: str, field: str) -> Any:
    """Parse a JSON or YAML document; SpecError names ``field`` on failure.

    JSON is tried first because YAML 1.1 (PyYAML) and JSON disagree on scalars such as
    ``1e-09``: a number in JSON, a string in YAML 1.1.  YAML text keeps YAML 1.1 rules, the
    ones PyYAML's dumper quotes strings by (``"0E0"`` is written unquoted and must stay a
    string).
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(field, f"neither JSON nor YAML: {e}") from e


def decode_base64(text: str, field: str, what: str) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, whitespace ignored)."""
    compact = "".join(text.split())
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SpecError(field, f"expected a {what} as a JSON/YAML mapping or base64 of the binary message ({e})") from e


def _from_binary(data: bytes, field: str) -> TaskTemplate:
    template = TaskTemplate()
    try:
        template.ParseFromString(data)
        template_ok = True
    except message.DecodeError:
        template_ok = False
    spec = TaskSpec()
    try:
        spec.ParseFromString(data)
        spec_ok = bool(spec.template.type) and not _has_unknown_fields(spec)
    except message.DecodeError:
        spec_ok = False
    looks_like_template = template_ok and bool(template.type) and not _has_unknown_fields(template)
    if spec_ok and not looks_like_template:
        raise SpecError(field, _TASKSPEC_HINT)
    if not looks_like_template and flyte2.load_flyte2_task_spec(data) is not None:
        raise SpecError(field, _FLYTE2_TASKSPEC_HINT)
    if not template_ok:
        raise SpecError(field, "not a binary flyteidl.core.TaskTemplate (protobuf decode failed)")
    return template


def _from_mapping(value: Mapping[str, Any], field: str) -> TaskTemplate:
    if "template" in value and not ({"type", "id", "interface"} & set(value)):
        raise SpecError(field, _TASKSPEC_HINT)
    if flyte2.is_flyte2_task_spec_json(value):
        raise SpecError(field, _FLYTE2_TASKSPEC_HINT)
    plain = json.loads(json.dumps(value, default=str))
    if flyte2.is_flyte2_template_json(plain, field):
        return flyte2.template_from_flyte2_json(plain, field)
    template = TaskTemplate()
    try:
        json_format.ParseDict(plain, template)
    except json_format.ParseError as e:
        raise SpecError(field, f"not a valid TaskTemplate: {e}{flyte2.flyte1_parse_hint(str(e))}") from e
    return template


def load_task_template(value: Any, field: str = "taskTemplate") -> TaskTemplate:
    """Load and check a TaskTemplate from any accepted form (see module docstring).

    The template must name its task ``type``: that is how the operator picks the agent.
    """
    if isinstance(value, TaskTemplate):
        template = TaskTemplate()
        template.CopyFrom(value)
    elif isinstance(value, TaskSpec):
        raise SpecError(field, _TASKSPEC_HINT)
    elif isinstance(value, (bytes, bytearray)):
        template = _from_binary(bytes(value), field)
    elif isinstance(value, Mapping):
        template = _from_mapping(value, field)
    elif isinstance(value, str):
        parsed = parse_text(value, field) if value.strip() else None
        if isinstance(parsed, Mapping):
            template = _from_mapping(parsed, field)
        elif isinstance(parsed, str):
            template = _from_binary(decode_base64(parsed, field, "TaskTemplate"), field)
        else:
            raise SpecError(field, "expected a TaskTemplate as a JSON/YAML mapping or base64 of the binary message")
    else:
        raise SpecError(field, f"expected a mapping, a string or bytes, got {type(value).__name__}")
    if not template.type:
        raise SpecError(f"{field}.type", "required: the task type selects the agent that runs the task")
    return template


def load_task_spec_file(data: bytes, field: str = "file") -> TaskTemplate:
    """The TaskTemplate inside a ``pyflyte serialize`` TaskSpec file (or a bare template file)."""
    spec = TaskSpec()
    try:
        spec.ParseFromString(data)
    except message.DecodeError:
        spec = TaskSpec()
    if spec.template.type and not _has_unknown_fields(spec):
        return spec.template
    v2 = flyte2.load_flyte2_task_spec(data)
    if v2 is not None:
        return v2
    try:
        return _from_binary(data, field)
    except SpecError as e:
        raise SpecError(field, "neither a flyteidl.admin.TaskSpec nor a flyteidl.core.TaskTemplate (nor, with "
                               f"{flyte2.EXTRA}, a Flyte 2 flyteidl2.task.TaskSpec)") from e
