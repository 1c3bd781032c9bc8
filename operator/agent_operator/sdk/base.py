"""Agent base classes, named and shaped like flytekit's ``base_agent``.

An agent is a plain object keyed by a :class:`TaskCategory`.  Async agents split a job
into ``create`` → ``get``… → (``delete``), sync agents answer in one ``do``.  Every method
may be ``async def`` or plain; the operator runs plain ones in a thread so a slow agent
never stalls the event loop.  Agents never see Kubernetes: they get a flyteidl
``TaskTemplate``, an output prefix, inputs as a ``LiteralMap`` and, for ``create``, the
``TaskExecutionMetadata`` whose ``task_execution_id`` is stable across retries of the
same attempt (use it as an idempotency token).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2

from agent_operator.sdk.resource import Resource, ResourceMeta, TaskCategory

TaskTemplate = tasks_pb2.TaskTemplate
LiteralMap = literals_pb2.LiteralMap
#: flyteidl's runtime metadata message; flytekit's model class of the same name wraps it
TaskExecutionMetadata = agent_pb2.TaskExecutionMetadata


class AgentBase(ABC):
    """Common part of all agents: the task category served and a display ``name``.

    ``name`` is a class attribute (as in flytekit); a subclass that does not set one is
    named after its class, so two agents never collide on a generic default name.
    """

    name: ClassVar[str] = "AgentBase"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, task_type_name: str, task_type_version: int = 0, **kwargs: Any) -> None:
        if not task_type_name:
            raise ValueError(f"{type(self).__name__}: task_type_name must be a non-empty string")
        self._task_category = TaskCategory(name=task_type_name, version=int(task_type_version))

    @property
    def task_category(self) -> TaskCategory:
        """The task type and version this agent serves."""
        return self._task_category

    @property
    def task_type_name(self) -> str:
        """Shortcut for ``task_category.name``."""
        return self._task_category.name

    @property
    def task_type_version(self) -> int:
        """Shortcut for ``task_category.version``."""
        return self._task_category.version

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} category={self.task_category}>"


class SyncAgentBase(AgentBase):
    """An agent that finishes its work inside one call (a webhook, a metadata lookup).

    The operator calls ``do`` once per attempt and records the returned Resource.
    """

    name: ClassVar[str] = "Base Sync Agent"

    @abstractmethod
    def do(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        **kwargs: Any,
    ) -> Resource:
        """Run the task to completion and return its final Resource."""
        raise NotImplementedError


class AsyncAgentBase(AgentBase):
    """An agent for long-running jobs: ``create`` starts one, ``get`` polls it, ``delete`` stops it.

    ``metadata_type`` is the agent's :class:`ResourceMeta` subclass; the operator decodes
    stored metadata with it before calling ``get``/``delete``.
    """

    name: ClassVar[str] = "Base Async Agent"

    def __init__(self, metadata_type: type[ResourceMeta], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (isinstance(metadata_type, type) and issubclass(metadata_type, ResourceMeta)):
            raise TypeError(
                f"{type(self).__name__}: metadata_type must be a ResourceMeta subclass, "
                f"got {metadata_type!r}"
            )
        self._metadata_type = metadata_type

    @property
    def metadata_type(self) -> type[ResourceMeta]:
        """The ResourceMeta subclass ``create`` returns."""
        return self._metadata_type

    @abstractmethod
    def create(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> ResourceMeta:
        """Start the job; return metadata that lets ``get``/``delete`` find it again."""
        raise NotImplementedError

    @abstractmethod
    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """Report the job's phase (and outputs once it succeeded)."""
        raise NotImplementedError

    @abstractmethod
    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Stop the job.  Must be idempotent; raise if the job could not be stopped."""
        raise NotImplementedError

    def get_metrics(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        """Optional: task metrics (flytekit parity; not used by the operator)."""
        raise NotImplementedError

    def get_logs(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskLogsResponse:
        """Optional: task logs (flytekit parity; not used by the operator)."""
        raise NotImplementedError
