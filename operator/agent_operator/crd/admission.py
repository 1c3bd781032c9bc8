"""The API server's admission checks of an AgentTask, applied offline.

``agent-operator validate`` (CI, before ``kubectl apply``) and ``run-local`` (no API
server at all) call :func:`admission_check`: the same schema and CEL rules the CRD
declares (they come from the same model in ``spec.py``), plus what the API server checks
for every object (names, strict unknown-field decoding).  The verdict matches a real
``kubectl apply --validate=strict`` (the integration tests and the fuzz compare both on
the real control plane); the error is the first one, as an :class:`InvalidField` naming
the field.

Known difference: the API server cannot bound the size of a *JSON* ``taskTemplate`` /
``inputs`` (arbitrary nested objects have no CEL size function); the model does
(``spec.MAX_TEMPLATE_JSON``), so offline checks are stricter there, and the operator
rejects such a task with ``InvalidSpec``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from agent_operator.crd.fields import InvalidField, find_pruned_field
from agent_operator.crd.manifest import object_schema
from agent_operator.crd.names import API_VERSION, KIND
from agent_operator.crd.resource import AgentTask, load_agent_task
from agent_operator.crd.spec import IMMUTABLE_MESSAGE

#: metav1.ObjectMeta's JSON fields: anything else is an unknown field under strict validation
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_ANNOTATIONS_BYTES = 256 * 1024

#: the CRD's openAPIV3Schema, built once (read-only)
_object_schema = functools.cache(object_schema)


def _check_qualified_key(key: Any, where: str) -> None:
    """A label/annotation key: optional DNS-subdomain prefix, then a name of at most 63 characters."""
    if not isinstance(key, str):
        raise InvalidField(where, "keys must be strings")
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise InvalidField(f"{where}.{key}", "the key's prefix must be a DNS subdomain (e.g. example.com/)")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        raise InvalidField(f"{where}.{key}", "keys are at most 63 characters: alphanumerics, '-', '_', '.'")


def check_metadata(meta: Any) -> None:
    """What the API server checks in ``metadata`` on create (name, namespace, labels, annotations)."""
    if not isinstance(meta, Mapping):
        raise InvalidField("metadata", "required: a mapping with at least name (or generateName)")
    unknown = sorted(set(meta) - OBJECT_META_FIELDS)
    if unknown:
        raise InvalidField(f"metadata.{unknown[0]}", "unknown field")
    name = meta.get("name")
    if name is None and not meta.get("generateName"):
        raise InvalidField("metadata.name", "required: name or generateName")
    if name is not None:
        if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise InvalidField("metadata.name", f"{name!r} is not a valid name: lowercase letters, digits, "
                               f"'-' and '.', at most 253 characters, starting and ending alphanumeric")
    namespace = meta.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
            raise InvalidField("metadata.namespace", f"{namespace!r} is not a valid namespace name")
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise InvalidField("metadata.labels", "expected a mapping")
    for key, value in labels.items():
        _check_qualified_key(key, "metadata.labels")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise InvalidField(f"metadata.labels.{key}", "label values are at most 63 characters: "
                               "alphanumerics, '-', '_', '.'")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise InvalidField("metadata.annotations", "expected a mapping")
    total = 0
    for key, value in annotations.items():
        _check_qualified_key(key, "metadata.annotations")
        if not isinstance(value, str):
            raise InvalidField(f"metadata.annotations.{key}", "expected a string")
        total += len(key) + len(value.encode())
    if total > MAX_ANNOTATIONS_BYTES:
        raise InvalidField("metadata.annotations", "may not be larger than 256 KiB in total")


def admission_check(obj: Any) -> AgentTask:
    """Check ``obj`` (a manifest) as the API server would on create; return the typed task.

    ``status`` in a manifest is ignored (the status subresource drops it on create), so it
    is not checked here; ``generateName`` stands in for a missing name.
    """
    if not isinstance(obj, Mapping):
        raise InvalidField("<document>", f"expected a mapping (an AgentTask object), got {type(obj).__name__}")
    # strict field validation runs while decoding, before any other check
    pruned = find_pruned_field({k: v for k, v in obj.items() if k != "metadata"}, _object_schema())
    if pruned:
        raise InvalidField(pruned, "unknown field")
    if obj.get("apiVersion") != API_VERSION:
        raise InvalidField("apiVersion", f"expected {API_VERSION!r}, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != KIND:
        raise InvalidField("kind", f"expected {KIND!r}, got {obj.get('kind')!r}")
    meta = obj.get("metadata")
    check_metadata(meta)
    assert isinstance(meta, Mapping)
    if meta.get("name") is None:
        meta = {**meta, "name": f"{meta['generateName']}xxxxx"}
    if "spec" not in obj:
        raise InvalidField("spec", "required")
    return load_agent_task({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": obj["spec"]})


def admission_check_update(old: Any, new: Any) -> AgentTask:
    """Check an update of ``old`` to ``new``: ``new`` must be valid and keep the spec unchanged.

    Mirrors the CRD's ``self == oldSelf`` rule on ``spec`` (after defaulting, so omitting
    a defaulted field is not a change).
    """
    task = admission_check(new)
    before = admission_check(old)
    if before.spec != task.spec:
        raise InvalidField("spec", IMMUTABLE_MESSAGE)
    return task
