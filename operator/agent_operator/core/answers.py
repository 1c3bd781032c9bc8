"""Reading an agent's answer: flyteidl phases, exceptions, outputs and log links.

Kept apart from the state machine so the mapping tables can be read (and tested) alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.crd.fields import InvalidField
from agent_operator.crd.phases import Phase, Reason
from agent_operator.crd.status import MAX_CUSTOM_INFO, MAX_LOG_LINK_NAME, MAX_LOG_LINK_URI, MAX_LOG_LINKS, LogLink
from agent_operator.sdk import FlyteAgentNotFound, Resource, TaskExecution, TransientAgentError
from agent_operator.sdk.errors import ErrorKind, cause_chain
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
#: bounds of the status schema (crd/status.py) on what an agent reports: an answer over
#: them is clamped here, otherwise the status write would be refused again on every retry
MAX_CUSTOM_INFO_BYTES = MAX_CUSTOM_INFO
#: longest poll interval an agent's nextPollSeconds hint can ask for (seconds)
MAX_POLL_HINT = 86400.0


@dataclass(frozen=True)
class Classified:
    """An exception sorted into kind and status reason (``retry_after``: agent's hint)."""

    kind: ErrorKind
    reason: Reason
    retry_after: float | None = None


#: exception types that mean "the service could not be reached / did not answer in time";
#: found anywhere along an error's cause chain they make it transient
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
def classify(exc: BaseException) -> Classified:
    """Transient errors are retried; everything else fails the task with a reason.

    Transient: a :class:`TransientAgentError`, or any error whose cause chain holds a
    connection error or a timeout.  Client libraries wrap an outage in their own types
    (openai's ``APIConnectionError`` from an ``httpx.ConnectError`` from a
    ``ConnectionRefusedError``; botocore's ``EndpointConnectionError`` from aiohttp's),
    so the type at the top says little.  A protocol error such as an illegal header value
    (h11's ``LocalProtocolError``, wrapped the same way) has no connection error below it
    and stays permanent: retrying would send the same bad request again.
    """
    if isinstance(exc, FlyteAgentNotFound):
        return Classified(ErrorKind.PERMANENT, Reason.AGENT_NOT_FOUND)
    if isinstance(exc, (SpecError, InvalidField)):
        return Classified(ErrorKind.PERMANENT, Reason.INVALID_SPEC)
    chain = cause_chain(exc)
    for link in chain:
        if isinstance(link, TransientAgentError):
            return Classified(ErrorKind.TRANSIENT, Reason.AGENT_UNAVAILABLE, link.retry_after)
    if any(isinstance(link, CONNECTION_ERRORS) for link in chain):
        return Classified(ErrorKind.TRANSIENT, Reason.AGENT_UNAVAILABLE)
    return Classified(ErrorKind.PERMANENT, Reason.AGENT_ERROR)


def phase_name(flyte_phase: int) -> str:
    """``RUNNING`` for 2; ``<undefined 42>`` for values flyteidl does not know."""
    try:
        return str(TaskExecution.Phase.Name(flyte_phase))
    except ValueError:
        return f"<undefined {flyte_phase}>"


def jsonable(value: Any, *, keep_null: bool = False) -> Any:
    """``value`` as data the API server accepts: string keys, finite numbers (NaN and
    infinities become strings; strict JSON has no spelling for them), lists for any
    sequence or set, ``str()`` of anything else.

    Keys whose value is None are left out unless ``keep_null``: most of status is written
    by JSON merge patch, where null means "delete", so the stored status would never equal
    the computed one and every poll would write it again.  Outputs keep them
    (``keep_null=True``): they are the user's data, a consumer indexes them by key, and the
    controller writes a status carrying a null with a JSON patch, which keeps it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, keep_null=keep_null) for k, v in value.items() if keep_null or v is not None}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, keep_null=keep_null) for v in value]
    return str(value)


def message_of(resource: Resource) -> str:
    """The agent's message as text ("" when unset)."""
    message = resource.message
    return message if isinstance(message, str) else ("" if message is None else str(message))


def flyte_phase_of(resource: Resource) -> int | None:
    """The answer's TaskExecution phase number (None: not a number at all)."""
    phase = resource.phase
    if isinstance(phase, bool) or not isinstance(phase, int):
        return None
    return int(phase)


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
    """Plain JSON outputs for status (anything not JSON-native rendered as a string); a
    None output or member stays a JSON null, exactly as the agent returned it."""
    data: dict[str, Any] = jsonable(literal_map_to_plain(lm), keep_null=True)
    return data


def log_links(resource: Resource) -> tuple[LogLink, ...]:
    """status.logLinks: name and uri of each TaskLog (plus its message format when set).

    Clamped to the status schema: at most 64 links, names cut to 256 characters; a link
    whose URI is longer than 4096 characters is left out (a cut URI would point elsewhere).
    """
    out: list[LogLink] = []
    for link in resource.log_links or ():
        if len(out) >= MAX_LOG_LINKS:
            break
        name, uri = str(getattr(link, "name", "")), str(getattr(link, "uri", ""))
        if len(uri) > MAX_LOG_LINK_URI:
            continue
        fmt = None
        if getattr(link, "message_format", None):
            fmt = json_format.MessageToDict(link).get("messageFormat")
        out.append(LogLink(name=name[:MAX_LOG_LINK_NAME], uri=uri, message_format=fmt))
    return tuple(out)


def custom_info(resource: Resource) -> dict[str, Any] | None:
    """status.customInfo as JSON (None when the agent sent none); over 64 KiB of JSON it is
    replaced by a note saying so (it would make the object too large to store)."""
    if resource.custom_info is None:
        return None
    data = jsonable(resource.custom_info)
    if not isinstance(data, dict):
        data = {"value": data}
    size = len(json.dumps(data, separators=(",", ":")).encode())
    if size > MAX_CUSTOM_INFO_BYTES:
        return {"omitted": f"the agent's customInfo ({size // 1024} KiB) exceeds {MAX_CUSTOM_INFO_BYTES // 1024} KiB"}
    return data


def next_poll_hint(info: Mapping[str, Any] | None) -> float | None:
    """The agent's suggested poll interval, from status.customInfo."""
    value = info.get(NEXT_POLL_KEY) if info is not None else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf"):
        # customInfo is writable through the status subresource: a day at most
        return min(float(value), MAX_POLL_HINT)
    return None
