"""``AgentTask.spec``: what to run, and the policy the operator applies while running it.

The template and inputs stay in their JSON/base64 form here; turning them into flyteidl
messages is the reconcile core's job (``core/prepare.py``), because a bad template is
a task failure with reason ``InvalidSpec``, not a malformed Kubernetes object.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agent_operator.crd.durations import DURATION_PATTERN, parse_duration, parse_duration_ns
from agent_operator.crd.fields import InvalidField, api_field, load

#: the smallest ``spec.pollInterval`` the CRD accepts (and the core enforces again)
MIN_POLL_INTERVAL = "1s"
MAX_TEMPLATE_BASE64 = 1024 * 1024
MAX_INPUTS_BASE64 = 512 * 1024
MAX_SECRET_REFS = 16
#: JSON forms are bounded like the base64 ones; the API server cannot measure a nested
#: object, so only the model (validate, run-local, the operator) enforces these two
MAX_TEMPLATE_JSON = MAX_TEMPLATE_BASE64
MAX_INPUTS_JSON = MAX_INPUTS_BASE64
#: standard, padded base64 without line breaks.  A pattern rather than ``format: byte``:
#: the API server's byte format lets a JSON list through unchecked (``inputsBase64: []``
#: is accepted and stored), a pattern on ``type: string`` does not.
BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: a Kubernetes object name (RFC 1123 subdomain), as Secrets and ServiceAccounts use
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

IMMUTABLE_MESSAGE = (
    "spec is immutable: an AgentTask runs one task exactly once; to run a different task "
    "create a new AgentTask (or delete this one and create it again)"
)


#: ``timeout`` / ``pollInterval`` in seconds, asked on every decision: a task's strings are
#: few and shared ("60s"), and a cache here costs nothing per task (the spec has slots,
#: so no per-object cache)
_seconds = functools.lru_cache(maxsize=1024)(parse_duration)


def _json_size(value: Any) -> int:
    """Characters of the compact JSON form (what the API server stores)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _guarded(rule: str) -> str:
    """A CEL duration rule that only runs on strings the ``pattern`` accepts.

    The API server evaluates CEL rules even when a ``pattern`` failed, and ``duration()``
    of a malformed string would add a second, confusing evaluation error.
    """
    return f"!self.matches({DURATION_PATTERN!r}) || {rule}"


class DeletionPolicy(str, enum.Enum):
    """What deleting the AgentTask does to the agent's job."""

    DELETE = "Delete"
    ORPHAN = "Orphan"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A Secret in the task's namespace handed to the agent."""

    __api_doc__: ClassVar[str] = (
        "A Secret in the AgentTask's own namespace. Its data is passed to the agent's calls "
        "(keyword argument 'secrets': {secretName: {key: value}}) and never copied to status."
    )

    name: str = api_field("name", "Name of the Secret (same namespace as the AgentTask).",
                          required=True, default="", minLength=1, maxLength=253, pattern=DNS_SUBDOMAIN)


@dataclass(frozen=True, slots=True)
class AgentTaskSpec:
    """The desired task: a flyteidl TaskTemplate, its inputs and the run policy."""

    __api_doc__: ClassVar[str] = (
        "The task to run: a flyteidl TaskTemplate (its 'type' selects the agent), its inputs "
        "and how the operator runs it. Immutable after creation."
    )
    __schema_extra__: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": IMMUTABLE_MESSAGE},
            {
                "rule": "has(self.taskTemplate) != has(self.taskTemplateBase64)",
                "message": "set exactly one of spec.taskTemplate or spec.taskTemplateBase64",
                "fieldPath": ".taskTemplate",
            },
            {
                "rule": "!(has(self.inputs) && has(self.inputsBase64))",
                "message": "set at most one of spec.inputs or spec.inputsBase64",
                "fieldPath": ".inputs",
            },
        ]
    }

    task_template: Mapping[str, Any] | None = api_field(
        "taskTemplate",
        "The flyteidl core.TaskTemplate as its protobuf JSON mapping (camelCase or snake_case "
        "field names), e.g. what `agent-operator render` writes. Its 'type' (and "
        "'taskTypeVersion') selects the agent. Exactly one of taskTemplate and "
        "taskTemplateBase64 must be set.",
        default=None, maxProperties=32,
    )
    task_template_base64: str | None = api_field(
        "taskTemplateBase64",
        "The flyteidl core.TaskTemplate as base64 (standard alphabet, padded, no line breaks) of its binary "
        "protobuf encoding.",
        default=None, maxLength=MAX_TEMPLATE_BASE64, pattern=BASE64_PATTERN,
    )
    inputs: Mapping[str, Any] | None = api_field(
        "inputs",
        "Task inputs: plain values by input name, converted by the types the template's "
        "interface declares (e.g. {path: /tmp/x, n: 3}), or a flyteidl LiteralMap JSON "
        "mapping ({literals: {...}}).",
        default=None, maxProperties=256,
    )
    inputs_base64: str | None = api_field(
        "inputsBase64",
        "Task inputs as base64 (standard alphabet, padded, no line breaks) of a binary flyteidl "
        "core.LiteralMap.",
        default=None, maxLength=MAX_INPUTS_BASE64, pattern=BASE64_PATTERN,
    )
    output_prefix: str | None = api_field(
        "outputPrefix",
        "Where the agent may write outputs (a path or URL prefix, passed to the agent as "
        "output_prefix). Outputs too large to inline in status are reported there.",
        default=None, maxLength=2048,
    )
    timeout: str | None = api_field(
        "timeout",
        "Maximum run time of the task from its start (Go duration, e.g. '30m', '1h30m'). "
        "When it elapses the operator calls the agent's delete and sets phase TimedOut.",
        default=None, maxLength=64, pattern=DURATION_PATTERN,
        x_kubernetes_validations=[{"rule": _guarded("duration(self) > duration('0s')"),
                                   "message": "spec.timeout must be greater than 0"}],
    )
    poll_interval: str | None = api_field(
        "pollInterval",
        f"How often the operator asks an async agent for the job's status (Go duration, at "
        f"least {MIN_POLL_INTERVAL}; default: the agent's suggestion or the operator's default). "
        f"A small random jitter is added.",
        default=None, maxLength=64, pattern=DURATION_PATTERN,
        x_kubernetes_validations=[{"rule": _guarded(f"duration(self) >= duration('{MIN_POLL_INTERVAL}')"),
                                   "message": f"spec.pollInterval must be at least {MIN_POLL_INTERVAL}"}],
    )
    max_attempts: int = api_field(
        "maxAttempts",
        "How many attempts the task gets: a RETRYABLE_FAILED answer from the agent starts a "
        "new attempt (a new create with a new idempotency key) until this many were made.",
        default=1, minimum=1, maximum=100, default_=1,
    )
    deletion_policy: DeletionPolicy = api_field(
        "deletionPolicy",
        "Delete (default): deleting the AgentTask stops the agent's job first (the agent's "
        "delete), blocking deletion until that succeeded. Orphan: leave the job running.",
        default=DeletionPolicy.DELETE, default_="Delete",
    )
    service_account_name: str | None = api_field(
        "serviceAccountName",
        "Kubernetes service account the task runs as; passed to the agent as "
        "TaskExecutionMetadata.k8s_service_account.",
        default=None, maxLength=253, pattern=DNS_SUBDOMAIN,
    )
    secret_refs: tuple[SecretRef, ...] = api_field(
        "secretRefs",
        f"Secrets (in this namespace, at most {MAX_SECRET_REFS}, each named once) whose data is "
        f"handed to the agent; never copied to status, Events or logs.",
        default=(), maxItems=MAX_SECRET_REFS,
        x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["name"],
    )

    @property
    def timeout_seconds(self) -> float | None:
        """``timeout`` in seconds (None: no timeout)."""
        return _seconds(self.timeout) if self.timeout else None

    @property
    def poll_interval_seconds(self) -> float | None:
        """``pollInterval`` in seconds (None: not set)."""
        return _seconds(self.poll_interval) if self.poll_interval else None

    @classmethod
    def from_dict(cls, raw: Any, where: str = "spec") -> "AgentTaskSpec":
        """Parse and check a manifest's spec the way the CRD schema and CEL rules do.

        The API server already enforces all of this; ``run-local`` has no API server, so
        the same rules are applied here (one error type, naming the field).
        """
        spec = load(cls, raw, where)
        if (spec.task_template is None) == (spec.task_template_base64 is None):
            raise InvalidField(f"{where}.taskTemplate", "set exactly one of spec.taskTemplate or spec.taskTemplateBase64")
        if spec.inputs is not None and spec.inputs_base64 is not None:
            raise InvalidField(f"{where}.inputs", "set at most one of spec.inputs or spec.inputsBase64")
        for name, value, limit in (("taskTemplate", spec.task_template, MAX_TEMPLATE_JSON),
                                   ("inputs", spec.inputs, MAX_INPUTS_JSON)):
            if value is not None and _json_size(value) > limit:
                raise InvalidField(f"{where}.{name}", f"larger than {limit // 1024} KiB as JSON; "
                                   f"large data belongs in blob storage, passed by reference")
        for name in ("timeout", "pollInterval"):
            value = raw.get(name)
            if value is None:
                continue
            try:
                nanos = parse_duration_ns(value)
            except ValueError as e:
                raise InvalidField(f"{where}.{name}", str(e)) from None
            if name == "timeout" and nanos <= 0:
                raise InvalidField(f"{where}.timeout", "spec.timeout must be greater than 0")
            if name == "pollInterval" and nanos < parse_duration_ns(MIN_POLL_INTERVAL):
                raise InvalidField(f"{where}.pollInterval", f"spec.pollInterval must be at least {MIN_POLL_INTERVAL}")
        return spec

    @property
    def template_value(self) -> Any:
        """The template in whichever form was given (mapping or base64 string)."""
        return self.task_template if self.task_template is not None else self.task_template_base64

    @property
    def template_field(self) -> str:
        """The spec field that holds the template (for error messages)."""
        return "spec.taskTemplate" if self.task_template is not None else "spec.taskTemplateBase64"

    @property
    def inputs_value(self) -> Any:
        """The inputs in whichever form was given (None: no inputs)."""
        return self.inputs if self.inputs is not None else self.inputs_base64

    @property
    def inputs_field(self) -> str:
        """The spec field that holds the inputs (for error messages)."""
        return "spec.inputsBase64" if self.inputs_base64 is not None else "spec.inputs"
