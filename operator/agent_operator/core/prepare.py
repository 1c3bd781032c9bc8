"""From an AgentTask's spec to what an agent call needs: template, inputs, the agent.

The spec is immutable, so drivers prepare once per uid and cache the result.  Every way
this can fail is the user's to fix and ends the task: :class:`PrepareFailure` carries the
reason (``InvalidSpec`` naming the field, ``AgentNotFound`` listing what is registered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2

from agent_operator.crd.phases import Reason
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.spec import AgentTaskSpec
from agent_operator.crd.status import AgentInfo
from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound, SyncAgentBase
from agent_operator.serialization import SpecError, load_inputs, load_task_template

AgentLookup = Callable[[str, int], Any]


class PrepareFailure(Exception):
    """The task cannot run as specified; ``reason`` is the status reason."""

    def __init__(self, reason: Reason, message: str, *, transient: bool = False,
                 spec: AgentTaskSpec | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        #: worth trying again later (an agent source that cannot be asked right now)
        self.transient = transient
        #: the decoded spec of a task that waits (its timeout bounds the wait like any other)
        self.spec = spec


def _spec_field(field: str) -> str:
    return field if field.startswith("spec") else f"spec.{field}"


def _template(spec: AgentTaskSpec) -> tasks_pb2.TaskTemplate:
    try:
        return load_task_template(spec.template_value, field=spec.template_field)
    except SpecError as e:
        raise PrepareFailure(Reason.INVALID_SPEC, f"{_spec_field(e.field)}: {e.message}") from e


def _inputs(spec: AgentTaskSpec, template: tasks_pb2.TaskTemplate) -> literals_pb2.LiteralMap | None:
    if spec.inputs_value is None and not template.interface.inputs.variables:
        return None
    try:
        return load_inputs(spec.inputs_value if spec.inputs_value is not None else {}, template,
                           field=spec.inputs_field)
    except SpecError as e:
        raise PrepareFailure(Reason.INVALID_SPEC, f"{_spec_field(e.field)}: {e.message}") from e


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the agent calls of one AgentTask need, checked once.

    Template and inputs are decoded again where a call needs them (:meth:`template`,
    :meth:`inputs`: at create or do, and the template's interface once more for the
    outputs), not kept: a task spends nearly all its life between polls, which need
    neither, and every task in flight kept them decoded, in protobuf's own memory
    (1.7 KB for the benchmark's smallest template, 254 -> 237 MB RSS at 10,000 in flight;
    real templates carry containers, interfaces and configs).  The spec is immutable and was
    checked by :func:`prepare`, so decoding it again gives the same messages.
    """

    spec: AgentTaskSpec
    agent: Any
    #: ``status.agent``
    info: AgentInfo
    #: the agent class's own default poll interval, if it declares one
    poll_interval: float | None = None

    def template(self) -> tasks_pb2.TaskTemplate:
        """The task's TaskTemplate, decoded from the spec."""
        return _template(self.spec)

    def inputs(self, template: tasks_pb2.TaskTemplate) -> literals_pb2.LiteralMap | None:
        """The task's inputs for ``template`` (its :meth:`template`), decoded from the spec."""
        return _inputs(self.spec, template)


def prepare(task: AgentTask, lookup: AgentLookup = AgentRegistry.get_agent) -> Prepared:
    """Check template and inputs and find the agent, or raise PrepareFailure."""
    spec = task.spec
    if spec is None:
        error = task.spec_error
        raise PrepareFailure(Reason.INVALID_SPEC, f"{error.field}: {error.message}" if error else "spec: missing")
    template = _template(spec)
    try:
        agent = lookup(template.type, int(template.task_type_version))
    except FlyteAgentNotFound as e:
        raise PrepareFailure(Reason.AGENT_NOT_FOUND, str(e), transient=e.transient, spec=spec) from e
    _inputs(spec, template)
    interval = getattr(agent, "poll_interval", None)
    info = AgentInfo(
        name=str(getattr(agent, "name", type(agent).__name__)),
        task_type=template.type,
        task_type_version=int(template.task_type_version),
        sync=isinstance(agent, SyncAgentBase),
    )
    return Prepared(spec=spec, agent=agent, info=info,
                    poll_interval=float(interval) if isinstance(interval, Real) and not isinstance(interval, bool)
                    else None)
