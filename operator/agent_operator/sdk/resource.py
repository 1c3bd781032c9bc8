"""Values an agent hands back to the operator: task categories, resource metadata, resources.

Shapes and names follow flytekit's ``base_agent`` so that agents port by changing an
import line; the difference is that everything here is built on flyteidl messages
directly (no flytekit model classes) and ``Resource.to_flyte_idl`` is synchronous.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, Union

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2, types_pb2
from google.protobuf import json_format, struct_pb2

TaskExecution = execution_pb2.TaskExecution
TaskLog = execution_pb2.TaskLog
LiteralMap = literals_pb2.LiteralMap

#: phases after which the operator stops polling
TERMINAL_PHASES: frozenset[int] = frozenset(
    {
        TaskExecution.SUCCEEDED,
        TaskExecution.ABORTED,
        TaskExecution.FAILED,
        TaskExecution.RETRYABLE_FAILED,
    }
)


def is_terminal_phase(phase: int) -> bool:
    """True when ``phase`` (a ``TaskExecution.Phase``) ends the task."""
    return phase in TERMINAL_PHASES


def convert_to_flyte_phase(state: str) -> int:
    """Map a remote service's state word to a ``TaskExecution.Phase`` (flytekit's table)."""
    word = state.lower()
    if word in {"failed", "timeout", "timedout", "canceled", "cancelled", "skipped"}:
        return TaskExecution.FAILED
    if word == "internal_error":
        return TaskExecution.RETRYABLE_FAILED
    if word in {"done", "succeeded", "success", "completed"}:
        return TaskExecution.SUCCEEDED
    if word in {"running", "terminating"}:
        return TaskExecution.RUNNING
    if word == "pending":
        return TaskExecution.INITIALIZING
    raise ValueError(f"Unrecognized state: {state}")


@dataclass(frozen=True)
class TaskCategory:
    """A task type and its version: the key under which one agent is registered."""

    name: str
    version: int = 0

    def __str__(self) -> str:
        return f"{self.name}_v{self.version}"

    def to_flyte_idl(self) -> agent_pb2.TaskCategory:
        """The ``flyteidl.admin.TaskCategory`` message."""
        return agent_pb2.TaskCategory(name=self.name, version=self.version)


M = TypeVar("M", bound="ResourceMeta")


@dataclass
class ResourceMeta:
    """Base for an async agent's job handle (e.g. a remote job id).

    The operator stores ``encode()`` in the AgentTask status and hands ``decode()`` of it
    to ``get``/``delete``, possibly in another process after a restart, so everything an
    agent needs to find its job again must be a field here.  The default encoding is
    stable JSON (sorted keys, no whitespace): equal metadata gives equal bytes, which
    keeps status patches idempotent.
    """

    def encode(self) -> bytes:
        """Serialize the dataclass fields as stable JSON."""
        return json.dumps(
            dataclasses.asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @classmethod
    def decode(cls: type[M], data: bytes) -> M:
        """Rebuild the metadata from :meth:`encode` output (nested dataclasses included)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{cls.__name__}.decode: not JSON: {e}") from e
        value = _from_plain(cls, raw, cls.__name__)
        assert isinstance(value, cls)
        return value


class _Plan(NamedTuple):
    """How to rebuild one dataclass: its fields' type hints and the names ``__init__`` takes."""

    hints: dict[str, Any]
    names: frozenset[str]


#: per class: its plan, or None for a class that is not a dataclass (taken as is)
_PLANS: dict[type, _Plan | None] = {}
#: JSON gives these as they are (a float field may come back as an int: converted below)
_AS_IS: frozenset[Any] = frozenset({str, int, bool, Any, object})


def _plan(cls: type) -> _Plan | None:
    """The plan of ``cls``, worked out once: ``typing.get_type_hints`` re-evaluates every
    annotation and ``decode`` runs on every poll of every task."""
    try:
        return _PLANS[cls]
    except KeyError:
        pass
    plan = None
    if dataclasses.is_dataclass(cls):
        plan = _Plan(typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls) if f.init))
    _PLANS[cls] = plan
    return plan


def _from_plain(tp: Any, raw: Any, where: str) -> Any:
    """Convert decoded JSON back into ``tp``, recursing into dataclasses and containers."""
    if isinstance(tp, type):
        if tp in _AS_IS:
            return raw
        plan = _plan(tp)
        if plan is None:
            return float(raw) if tp is float and isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected an object for {tp.__name__}, got {type(raw).__name__}")
        unknown = raw.keys() - plan.names
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} for {tp.__name__}")
        hints = plan.hints
        return tp(**{k: _from_plain(hints.get(k, Any), v, f"{where}.{k}") for k, v in raw.items()})
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_plain(arg, raw, where)
            except (ValueError, TypeError):
                continue
        return raw
    if origin in (list, typing.List) and args and isinstance(raw, list):
        return [_from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if origin in (tuple, typing.Tuple) and args and isinstance(raw, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, where) for v in raw)
        return tuple(_from_plain(a, v, where) for a, v in zip(args, raw))
    if origin in (dict, typing.Dict) and len(args) == 2 and isinstance(raw, dict):
        return {k: _from_plain(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    return raw


@dataclass
class Resource:
    """What ``get`` / ``do`` report: phase, message, log links, outputs, custom info.

    ``outputs`` is a ``LiteralMap`` or plain Python values; plain values are converted by
    :meth:`to_flyte_idl`, typed by the task's declared outputs when those are given and
    guessed from the Python values otherwise (the way flytekit's TypeEngine does).
    """

    phase: int
    message: str | None = None
    log_links: list[TaskLog] | None = None
    outputs: LiteralMap | dict[str, Any] | None = None
    custom_info: dict[str, Any] | None = None

    def to_flyte_idl(
        self, output_types: Mapping[str, types_pb2.LiteralType] | None = None
    ) -> agent_pb2.Resource:
        """The ``flyteidl.admin.Resource`` message.

        ``output_types`` (variable name → LiteralType, e.g. from the template's
        ``interface.outputs``) types plain outputs exactly as the task declares them.
        """
        pb = agent_pb2.Resource(phase=self.phase)  # type: ignore[arg-type]
        if self.message:
            pb.message = self.message
        if self.log_links:
            pb.log_links.extend(self.log_links)
        if self.outputs is not None:
            if isinstance(self.outputs, literals_pb2.LiteralMap):
                pb.outputs.CopyFrom(self.outputs)
            else:
                from agent_operator.serialization.literals import plain_map_to_literal_map

                pb.outputs.CopyFrom(plain_map_to_literal_map(self.outputs, output_types))
        if self.custom_info is not None:
            info = struct_pb2.Struct()
            json_format.ParseDict(json.loads(json.dumps(self.custom_info, default=str)), info)
            pb.custom_info.CopyFrom(info)
        return pb

    @classmethod
    def from_flyte_idl(cls, pb2_object: agent_pb2.Resource) -> "Resource":
        """Rebuild a Resource from ``flyteidl.admin.Resource`` (outputs stay a LiteralMap)."""
        outputs = None
        if pb2_object.HasField("outputs"):
            outputs = literals_pb2.LiteralMap()
            outputs.CopyFrom(pb2_object.outputs)
        return cls(
            phase=pb2_object.phase,
            message=pb2_object.message or None,
            log_links=list(pb2_object.log_links) or None,
            outputs=outputs,
            custom_info=(
                json_format.MessageToDict(pb2_object.custom_info)
                if pb2_object.HasField("custom_info")
                else None
            ),
        )
