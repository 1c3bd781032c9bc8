"""A whole AgentTask object (metadata + spec + status) as one typed value.

The one place that turns a raw object from the API server (or a manifest file, for
``run-local`` and ``validate``) into a typed value and rejects what is bad, naming the
field.  The controller calls :func:`load_agent_task` on every event; the core only ever
sees :class:`AgentTask`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_operator.crd.fields import InvalidField
from agent_operator.crd.names import API_VERSION, KIND
from agent_operator.crd.spec import AgentTaskSpec
from agent_operator.crd.status import AgentTaskStatus


@dataclass(frozen=True)
class ObjectMeta:
    """The parts of ``metadata`` the operator uses (the rest is ignored, not rejected)."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    finalizers: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def deleting(self) -> bool:
        """True once the object has a deletion timestamp (finalizers are running)."""
        return self.deletion_timestamp is not None

    @property
    def key(self) -> str:
        """``namespace/name`` (or just ``name``), for logs and messages."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class AgentTask:
    """One AgentTask: identity, the (immutable) spec and the observed status."""

    metadata: ObjectMeta
    spec: AgentTaskSpec
    status: AgentTaskStatus

    @property
    def key(self) -> str:
        """``namespace/name`` of the object."""
        return self.metadata.key


def _opt_str(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(f"metadata.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _str_map(meta: Mapping[str, Any], key: str) -> dict[str, str]:
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidField(f"metadata.{key}", f"expected a mapping, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidField(f"metadata.{key}.{k}", "expected a string value")
    return dict(value)


def load_metadata(raw: Any) -> ObjectMeta:
    """``metadata`` of an object: ``name`` is required; other unknown keys are ignored."""
    if not isinstance(raw, Mapping):
        raise InvalidField("metadata", f"expected a mapping, got {type(raw).__name__}")
    name = _opt_str(raw, "name")
    if not name:
        raise InvalidField("metadata.name", "required")
    generation = raw.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        raise InvalidField("metadata.generation", f"expected an integer, got {type(generation).__name__}")
    finalizers = raw.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise InvalidField("metadata.finalizers", "expected a list of strings")
    return ObjectMeta(
        name=name,
        namespace=_opt_str(raw, "namespace"),
        uid=_opt_str(raw, "uid"),
        generation=generation,
        resource_version=_opt_str(raw, "resourceVersion"),
        creation_timestamp=_opt_str(raw, "creationTimestamp"),
        deletion_timestamp=_opt_str(raw, "deletionTimestamp"),
        finalizers=tuple(finalizers),
        labels=_str_map(raw, "labels"),
        annotations=_str_map(raw, "annotations"),
    )


def load_agent_task(raw: Any, *, check_kind: bool = True) -> AgentTask:
    """Build an :class:`AgentTask` from its JSON form; :class:`InvalidField` names the bad field.

    ``check_kind=False`` skips the ``apiVersion``/``kind`` check (kopf hands over bodies
    that always match).
    """
    if not isinstance(raw, Mapping):
        raise InvalidField("<object>", f"expected a mapping, got {type(raw).__name__}")
    if check_kind:
        if raw.get("apiVersion") != API_VERSION:
            raise InvalidField("apiVersion", f"expected {API_VERSION!r}, got {raw.get('apiVersion')!r}")
        if raw.get("kind") != KIND:
            raise InvalidField("kind", f"expected {KIND!r}, got {raw.get('kind')!r}")
    metadata = load_metadata(raw.get("metadata"))
    if "spec" not in raw:
        raise InvalidField("spec", "required")
    spec = AgentTaskSpec.from_dict(raw["spec"])
    status = AgentTaskStatus.from_dict(raw.get("status"))
    return AgentTask(metadata=metadata, spec=spec, status=status)
