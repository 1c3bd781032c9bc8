"""A whole AgentTask object (metadata + spec + status) as one typed value.

The one place that turns a raw object into a typed value and rejects what is bad, naming
the field:

* :func:`load_agent_task` for a manifest (``validate``, ``run-local``, admission checks):
  strict, the first bad field is an :class:`InvalidField`;
* :func:`load_stored_agent_task` for an object the API server already stored (the
  controller): a spec the model rejects (stored before a schema change, or over a limit
  only the model enforces) becomes ``spec_error`` instead of an exception, so that the core
  can fail the task with ``InvalidSpec`` naming the field;
* :class:`AgentTaskCache` parses each stored object once per resourceVersion (and its
  immutable spec once per generation): the controller wakes an object on every poll.

The reconcile core (``decide`` / ``absorb``) takes :class:`AgentTask` and returns
:class:`~agent_operator.crd.status.AgentTaskStatus`; the status patch is its
:meth:`~agent_operator.crd.status.AgentTaskStatus.to_dict`, made by the same field
declarations that generate the CRD schema.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_operator.crd.durations import parse_time
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.names import ANNOTATION_CREATE_PENDING, API_VERSION, FINALIZER, KIND
from agent_operator.crd.spec import AgentTaskSpec
from agent_operator.crd.status import AgentTaskStatus


@dataclass(frozen=True, slots=True)
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

    @property
    def has_finalizer(self) -> bool:
        """True when the operator's finalizer is on the object."""
        return FINALIZER in self.finalizers

    @property
    def create_pending_attempt(self) -> int | None:
        """The attempt whose ``create`` was about to be called (the create-pending annotation)."""
        raw = self.annotations.get(ANNOTATION_CREATE_PENDING)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def creation_time(self) -> float | None:
        """``creationTimestamp`` in epoch seconds (None: not set, e.g. a manifest)."""
        return parse_time(self.creation_timestamp) if self.creation_timestamp else None


@dataclass(frozen=True, slots=True)
class AgentTask:
    """One AgentTask: identity, the (immutable) spec and the observed status.

    ``spec`` is None only for a stored object whose spec the model rejects
    (:func:`load_stored_agent_task`); ``spec_error`` then names the field.
    """

    metadata: ObjectMeta
    spec: AgentTaskSpec | None
    status: AgentTaskStatus
    spec_error: InvalidField | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """``namespace/name`` of the object."""
        return self.metadata.key

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` ("" for none)."""
        return self.metadata.namespace or ""

    @property
    def uid(self) -> str:
        """``metadata.uid`` ("" before the API server assigned one)."""
        return self.metadata.uid or ""

    @property
    def generation(self) -> int:
        """``metadata.generation`` (1 before the API server assigned one)."""
        return self.metadata.generation or 1

    @property
    def attempt(self) -> int:
        """The current attempt (1 before the first status write)."""
        value = self.status.attempt
        return value if value is not None and value >= 1 else 1

    @property
    def deleting(self) -> bool:
        """True once deletion was requested (finalizers are running)."""
        return self.metadata.deleting


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
    # type() first: the Mapping ABC check is slow, and this runs on every new resourceVersion
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidField(f"metadata.{key}", f"expected a mapping, got {type(value).__name__}")
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidField(f"metadata.{key}.{k}", "expected a string value")
    return dict(value)


def load_metadata(raw: Any) -> ObjectMeta:
    """``metadata`` of an object: ``name`` is required; other unknown keys are ignored."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
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


def _stored_spec(raw: Mapping[str, Any]) -> tuple[AgentTaskSpec | None, InvalidField | None]:
    try:
        return AgentTaskSpec.from_dict(raw.get("spec")), None
    except InvalidField as e:
        return None, e


def load_stored_agent_task(raw: Any, *, spec: tuple[AgentTaskSpec | None, InvalidField | None] | None = None,
                           status: AgentTaskStatus | None = None) -> AgentTask:
    """An object as the API server stored it: only ``metadata`` must be valid.

    A spec the model rejects is kept as ``spec_error``; a status field the model rejects
    is dropped (:meth:`AgentTaskStatus.from_stored`): the API server validated both on
    write, so either means a schema change since.  ``spec`` / ``status``: already parsed
    values of the same content (the spec is immutable per generation), to skip parsing.
    """
    if not isinstance(raw, Mapping):
        raise InvalidField("<object>", f"expected a mapping, got {type(raw).__name__}")
    metadata = load_metadata(raw.get("metadata"))
    parsed, error = spec if spec is not None else _stored_spec(raw)
    if status is None:
        status = AgentTaskStatus.from_stored(raw.get("status"))
    return AgentTask(metadata=metadata, spec=parsed, status=status, spec_error=error)


class AgentTaskCache:
    """Stored objects parsed once per resourceVersion: the spec once per generation (it is
    immutable), the status again only when its content changed.

    Bounded (least recently used first out) so that objects deleted while the operator
    was not watching cannot grow it forever; :meth:`forget` drops one at once.
    """

    def __init__(self, max_size: int = 200_000) -> None:
        self._max = max_size
        #: uid -> (typed object, the raw status it was read from)
        self._by_uid: OrderedDict[str, tuple[AgentTask, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_uid)

    def load(self, raw: Mapping[str, Any], *,
             written: tuple[Mapping[str, Any], AgentTaskStatus] | None = None) -> AgentTask:
        """The typed object for ``raw``, parsing only what changed since the last version.

        ``written``: the JSON form and the typed status the caller just wrote; when the
        stored status is exactly that, it is used as it is (a status write's response).
        """
        meta = raw.get("metadata")
        uid = meta.get("uid") if isinstance(meta, Mapping) else None
        if not isinstance(meta, Mapping) or not isinstance(uid, str) or not uid:
            return load_stored_agent_task(raw)
        entry = self._by_uid.get(uid)
        raw_status = raw.get("status")
        spec = status = None
        if entry is not None:
            cached, cached_raw_status = entry
            if meta.get("resourceVersion") and cached.metadata.resource_version == meta.get("resourceVersion"):
                self._by_uid.move_to_end(uid)
                return cached
            if cached.metadata.generation == meta.get("generation"):
                spec = (cached.spec, cached.spec_error)
            if raw_status == cached_raw_status:
                status = cached.status
        if status is None and written is not None and raw_status == written[0]:
            status = written[1]
        task = load_stored_agent_task(raw, spec=spec, status=status)
        self._by_uid[uid] = (task, raw_status)
        self._by_uid.move_to_end(uid)
        while len(self._by_uid) > self._max:
            self._by_uid.popitem(last=False)
        return task

    def forget(self, uid: str) -> None:
        """Drop the object with ``uid`` (it was deleted)."""
        self._by_uid.pop(uid, None)
