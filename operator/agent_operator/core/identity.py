"""Idempotency keys: how an agent recognises a retried ``create`` of the same attempt.

The key is ``<metadata.uid>-<attempt>``: stable across operator restarts (the uid never
changes, the attempt is in status) and different for every new attempt and for an
AgentTask deleted and created again under the same name.  It travels to the agent as
``TaskExecutionMetadata.task_execution_id`` in the shape Flyte itself fills, with the key
as the workflow execution name, so an agent written for Flyte finds it where it already
looks (``task_execution_id.node_execution_id.execution_id.name``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flyteidl.admin import agent_pb2
from flyteidl.core import identifier_pb2, tasks_pb2

#: the ``domain`` Flyte would fill; AgentTasks have no Flyte domain
DOMAIN = "agenttask"


def idempotency_key(uid: str, attempt: int) -> str:
    """``<uid>-<attempt>`` (attempt counts from 1)."""
    return f"{uid}-{attempt}"


def task_execution_metadata(
    *,
    namespace: str,
    name: str,
    uid: str,
    attempt: int,
    max_attempts: int,
    template: tasks_pb2.TaskTemplate | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
) -> agent_pb2.TaskExecutionMetadata:
    """The ``TaskExecutionMetadata`` handed to ``create`` for one attempt."""
    key = idempotency_key(uid, attempt)
    task_id = identifier_pb2.Identifier(
        resource_type=identifier_pb2.TASK,
        project=namespace,
        domain=DOMAIN,
        name=(template.id.name if template is not None and template.id.name else name),
        version=(template.id.version if template is not None else ""),
    )
    execution = identifier_pb2.WorkflowExecutionIdentifier(project=namespace, domain=DOMAIN, name=key)
    meta = agent_pb2.TaskExecutionMetadata(
        task_execution_id=identifier_pb2.TaskExecutionIdentifier(
            task_id=task_id,
            node_execution_id=identifier_pb2.NodeExecutionIdentifier(node_id=name, execution_id=execution),
            retry_attempt=max(attempt - 1, 0),
        ),
        namespace=namespace,
        max_attempts=max_attempts,
    )
    for k, v in (labels or {}).items():
        meta.labels[k] = v
    for k, v in (annotations or {}).items():
        meta.annotations[k] = v
    if service_account:
        meta.k8s_service_account = service_account
    return meta


def key_of(metadata: agent_pb2.TaskExecutionMetadata | None) -> str:
    """The idempotency key carried by ``metadata`` ("" when there is none)."""
    if metadata is None:
        return ""
    return str(metadata.task_execution_id.node_execution_id.execution_id.name)
