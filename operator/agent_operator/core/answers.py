"""Reading an agent's answer: flyteidl phases, exceptions, outputs and log links.

Kept apart from the state machine so the mapping tables can be read (and tested) alone.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.crd.fields import InvalidField
from agent_operator.crd.phases import Phase, Reason
from agent_operator.sdk import FlyteAgentNotFound, Resource, TaskExecution, TransientAgentError
from agent_operator.serialization import SpecError, literal_map_to_plain

#: flyteidl TaskExecution.Phase -> status.phase (RETRYABLE_FAILED and UNDEFINED are decisions, not phases)
FLYTE_PHASES: dict[int, Phase] = {
    TaskExecution.QUEUED: Phase.QUEUED,
    TaskExecution.WAITING_FOR_RESOURCES: Phase.WAITING_FOR_RESOURCES,
    TaskExecution.INITIALIZING: Phase.INITIALIZING,
    TaskExecution.RUNNING: Phase.RUNNING,
    TaskExecution.SUCCEEDED: Phase.SUCCEEDED,
    TaskExecution.FAILED: Phase.FAILED,
    TaskExecution.ABORTED: Phase.ABORTED,
}
PHASE_REASONS: dict[Phase, Reason] = {
    Phase.QUEUED: Reason.QUEUED,
    Phase.WAITING_FOR_RESOURCES: Reason.WAITING_FOR_RESOURCES,
    Phase.INITIALIZING: Reason.INITIALIZING,
    Phase.RUNNING: Reason.RUNNING,
    Phase.SUCCEEDED: Reason.SUCCEEDED,
    Phase.FAILED: Reason.FAILED,
    Phase.ABORTED: Reason.ABORTED,
}
#: customInfo key an agent may set to suggest when to poll next (seconds)
NEXT_POLL_KEY = "nextPollSeconds"


class ErrorKind(str, enum.Enum):
    """How the core treats an exception from an agent call."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Classified:
    """An exception sorted into kind and status reason (``retry_after``: agent's hint)."""

    kind: ErrorKind
    reason: Reason
    retry_after: float | None = None


def classify(exc: BaseException) -> Classified:
    """Transient errors are retried; everything else fails the task with a reason."""
    if isinstance(exc, TransientAgentError):
        return Classified(ErrorKind.TRANSIENT, Reason.AGENT_UNAVAILABLE, exc.retry_after)
    if isinstance(exc, FlyteAgentNotFound):
        return Classified(ErrorKind.PERMANENT, Reason.AGENT_NOT_FOUND)
    if isinstance(exc, (SpecError, InvalidField)):
        return Classified(ErrorKind.PERMANENT, Reason.INVALID_SPEC)
    return Classified(ErrorKind.PERMANENT, Reason.AGENT_ERROR)


def phase_name(flyte_phase: int) -> str:
    """``RUNNING`` for 2; ``<undefined 42>`` for values flyteidl does not know."""
    try:
        return str(TaskExecution.Phase.Name(flyte_phase))
    except ValueError:
        return f"<undefined {flyte_phase}>"


def to_resource(value: Any) -> Resource:
    """Accept a Resource or a flyteidl ``admin.Resource`` (remote agents) as an answer."""
    if isinstance(value, Resource):
        return value
    if isinstance(value, agent_pb2.Resource):
        return Resource.from_flyte_idl(value)
    raise TypeError(f"agent answered {type(value).__name__}, expected a Resource")


def outputs_literal_map(resource: Resource, template: tasks_pb2.TaskTemplate) -> literals_pb2.LiteralMap | None:
    """The outputs as a LiteralMap, plain values typed by the template's declared outputs."""
    if resource.outputs is None:
        return None
    if isinstance(resource.outputs, literals_pb2.LiteralMap):
        return resource.outputs
    declared = {k: v.type for k, v in template.interface.outputs.variables.items()}
    pb = resource.to_flyte_idl(declared)
    return pb.outputs if pb.HasField("outputs") else None


def outputs_json(lm: literals_pb2.LiteralMap) -> dict[str, Any]:
    """Plain JSON outputs for status (anything not JSON-native rendered as a string)."""
    plain = literal_map_to_plain(lm)
    data: dict[str, Any] = json.loads(json.dumps(plain, default=str))
    return data


def log_links(resource: Resource) -> list[dict[str, Any]]:
    """status.logLinks: name and uri of each TaskLog (plus its message format when set)."""
    out: list[dict[str, Any]] = []
    for link in resource.log_links or ():
        item: dict[str, Any] = {"name": link.name, "uri": link.uri}
        if link.message_format:
            item["messageFormat"] = json_format.MessageToDict(link).get("messageFormat")
        out.append(item)
    return out


def custom_info(resource: Resource) -> dict[str, Any] | None:
    """status.customInfo as JSON (None when the agent sent none)."""
    if resource.custom_info is None:
        return None
    data: dict[str, Any] = json.loads(json.dumps(resource.custom_info, default=str))
    return data


def next_poll_hint(status: Mapping[str, Any]) -> float | None:
    """The agent's suggested poll interval, from status.customInfo."""
    info = status.get("customInfo")
    value = info.get(NEXT_POLL_KEY) if isinstance(info, Mapping) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
