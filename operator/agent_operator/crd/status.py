"""``AgentTask.status``: what the operator observed and decided, in kstatus shape.

The operator (``core/`` decides, ``controller/`` writes) is the only intended writer, but
the status subresource is writable by anyone with ``agenttasks/status`` RBAC: nothing in
here is trusted blindly.  ``resourceMeta`` carries an HMAC (checked by the core before an
agent sees it) and every field is bounded by the schema so that a hostile status patch
cannot grow the object without limit.

Secrets never appear here: ``secretRefs`` data is handed to the agent's calls only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agent_operator.crd.fields import api_field, dump, load, load_lenient
from agent_operator.crd.phases import ALL_PHASES, ConditionType, Phase

#: ``status.message`` and condition messages are cut to this many characters
MAX_MESSAGE = 4096
#: outputs larger than this (JSON) are not inlined; ``outputsRef`` says where they are
MAX_INLINE_OUTPUTS = 64 * 1024
#: bound of the signed ``resourceMeta`` (the core fails a create whose handle is larger)
MAX_RESOURCE_META = 64 * 1024
MAX_LOG_LINKS = 64
MAX_LOG_LINK_NAME = 256
MAX_LOG_LINK_URI = 4096
#: ``customInfo`` larger than this (JSON) is replaced by a note saying so
MAX_CUSTOM_INFO = 64 * 1024
MAX_CONDITIONS = 8
#: metav1.Condition's reason grammar (CamelCase identifier)
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
DATE_TIME = "date-time"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """Which agent the operator resolved for the template's task type."""

    __api_doc__: ClassVar[str] = (
        "The agent that runs this task, resolved from the template's type (and "
        "taskTypeVersion) in the operator's agent registry."
    )

    name: str | None = api_field("name", "The agent's name (as `agent-operator agents` lists it).",
                                 default=None, maxLength=256)
    task_type: str | None = api_field("taskType", "The task type from the template (spec.taskTemplate.type).",
                                      default=None, maxLength=256)
    task_type_version: int | None = api_field(
        "taskTypeVersion", "The task type version from the template (0 when unset).",
        default=None, minimum=0)
    sync: bool | None = api_field(
        "sync", "True for a synchronous agent (one 'do' call), false for an async agent "
        "(create, then get every poll interval).", default=None)


@dataclass(frozen=True, slots=True)
class LogLink:
    """A link to the job's logs or UI, as the agent reported it (flyteidl ``TaskLog``)."""

    __api_doc__: ClassVar[str] = "A link the agent reported for this task (flyteidl core.TaskLog)."

    name: str = api_field("name", "Display name of the link (e.g. 'Dashboard', 'Logs').",
                          required=True, default="", maxLength=MAX_LOG_LINK_NAME)
    uri: str = api_field("uri", "The link itself.", required=True, default="", maxLength=MAX_LOG_LINK_URI)
    message_format: str | None = api_field(
        "messageFormat", "Format of the log messages behind the link (flyteidl TaskLog.MessageFormat).",
        default=None, enum=["UNKNOWN", "CSV", "JSON"])
    ttl: str | None = api_field("ttl", "How long the link stays valid (Go duration), if the agent said.",
                                default=None, maxLength=64)
    show_while_pending: bool | None = api_field(
        "showWhilePending", "Show the link before the task runs (flyteidl TaskLog.ShowWhilePending).",
        default=None)
    hide_once_finished: bool | None = api_field(
        "hideOnceFinished", "Hide the link once the task finished (flyteidl TaskLog.HideOnceFinished).",
        default=None)


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``metav1.Condition``: the shape ``kubectl wait`` and kstatus read."""

    __api_doc__: ClassVar[str] = (
        "A metav1.Condition. Types: Ready (the task succeeded), Reconciling (the operator is "
        "still working on it), Stalled (it failed or cannot make progress without help), "
        "Succeeded (for `kubectl wait --for=condition=Succeeded`)."
    )

    type: str = api_field("type", "Condition type: Ready, Reconciling, Stalled or Succeeded.",
                          required=True, default="", maxLength=316,
                          pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                                  r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
    status: str = api_field("status", "True, False or Unknown.", required=True, default="Unknown",
                            enum=["True", "False", "Unknown"])
    observed_generation: int | None = api_field(
        "observedGeneration", "metadata.generation the condition was set for.", default=None, minimum=0)
    last_transition_time: str = api_field(
        "lastTransitionTime", "When the condition last changed status (RFC 3339).",
        required=True, default="", format=DATE_TIME)
    reason: str = api_field("reason", "Machine-readable CamelCase reason for the last transition.",
                            required=True, default="", minLength=1, maxLength=1024, pattern=REASON_PATTERN)
    message: str = api_field("message", "Human-readable details about the transition.",
                             required=True, default="", maxLength=32768)

    @property
    def is_true(self) -> bool:
        """True when ``status`` is ``"True"``."""
        return self.status == "True"


@dataclass(frozen=True, slots=True)
class AgentTaskStatus:
    """Everything the operator records about one AgentTask."""

    __api_doc__: ClassVar[str] = (
        "Observed state, written by the operator. Read the phase and conditions; the other "
        "fields let the operator resume after a restart without calling the agent twice."
    )

    phase: Phase | None = api_field(
        "phase", "Where the task is: " + ", ".join(ALL_PHASES) + ". Succeeded, Failed, "
        "Aborted and TimedOut are terminal.", default=None)
    reason: str | None = api_field(
        "reason", "Why the task is in its phase, CamelCase (e.g. AgentNotFound, InvalidSpec, "
        "AgentError, TransientAgentError, Timeout, ResourceMetaTampered, RetryableFailure).",
        default=None, maxLength=256, pattern=REASON_PATTERN)
    message: str | None = api_field(
        "message", f"Human-readable details: the agent's last message or the error (at most "
        f"{MAX_MESSAGE} characters).", default=None, maxLength=MAX_MESSAGE)
    agent: AgentInfo | None = api_field("agent", AgentInfo.__api_doc__, default=None)
    resource_meta: str | None = api_field(
        "resourceMeta", "The agent's handle on its job (opaque, signed with an HMAC by the "
        "operator; a value that fails the check is never passed to an agent).",
        default=None, maxLength=MAX_RESOURCE_META)
    create_pending: str | None = api_field(
        "createPending", "Set just before the agent's create is called and cleared once "
        "resourceMeta is recorded; still set after a restart means: ask the agent again with the "
        "same idempotency key instead of creating a second job.", default=None, format=DATE_TIME)
    attempt: int | None = api_field(
        "attempt", "The current attempt, from 1 (see spec.maxAttempts).", default=None, minimum=0, maximum=1000)
    log_links: tuple[LogLink, ...] = api_field(
        "logLinks", "Links to the job's logs and UIs, as the agent reported them.",
        default=(), maxItems=MAX_LOG_LINKS)
    outputs: Mapping[str, Any] | None = api_field(
        "outputs", f"Task outputs as plain values by output name (only when their JSON is at most "
        f"{MAX_INLINE_OUTPUTS // 1024} KiB; otherwise see outputsRef).", default=None)
    outputs_ref: str | None = api_field(
        "outputsRef", "Where the outputs are when they were too large to inline (a URI under "
        "spec.outputPrefix, or a note saying why they are not available).",
        default=None, maxLength=4096)
    custom_info: Mapping[str, Any] | None = api_field(
        "customInfo", "Free-form information the agent reported about the job (flyteidl "
        "Resource.custom_info).", default=None)
    transient_failures: int | None = api_field(
        "transientFailures", "Consecutive transient agent errors in the current attempt "
        "(retried with backoff; Stalled once the budget is used).", default=None, minimum=0)
    start_time: str | None = api_field("startTime", "When the operator first called the agent.",
                                       default=None, format=DATE_TIME)
    completion_time: str | None = api_field("completionTime", "When the task reached a terminal phase.",
                                            default=None, format=DATE_TIME)
    observed_generation: int | None = api_field(
        "observedGeneration", "metadata.generation of the spec this status describes (0: not "
        "looked at yet).",
        default=None, minimum=0, default_=0)
    conditions: tuple[Condition, ...] = api_field(
        "conditions", "Ready and Succeeded, plus Reconciling and Stalled while true (kstatus "
        "conventions; a failed task is Stalled=True so that GitOps tools fail fast).",
        default=(), maxItems=MAX_CONDITIONS,
        x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["type"])

    @classmethod
    def from_dict(cls, raw: Any, where: str = "status") -> "AgentTaskStatus":
        """Parse a status (``None`` or ``{}``: nothing observed yet); InvalidField names the field."""
        if raw is None:
            return cls()
        return load(cls, raw, where)

    @classmethod
    def from_stored(cls, raw: Any) -> "AgentTaskStatus":
        """A status the API server stored: fields the model cannot read (a schema change
        since they were written) are left out rather than failing the whole object."""
        return load_lenient(cls, raw, "status")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (camelCase, unset fields omitted), e.g. for a status patch."""
        out: dict[str, Any] = dump(self)
        return out

    def condition(self, type_: ConditionType | str) -> Condition | None:
        """The condition of that type, if set."""
        wanted = str(type_)
        return next((c for c in self.conditions if c.type == wanted), None)

    @property
    def terminal(self) -> bool:
        """True once the phase is terminal (Succeeded, Failed, Aborted, TimedOut)."""
        return self.phase is not None and self.phase.terminal
