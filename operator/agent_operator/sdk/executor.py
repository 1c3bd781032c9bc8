"""Local execution of one task through its registered agent (flytekit's executor mixins).

A class that mixes these in and exposes ``task_template`` (a flyteidl TaskTemplate) can be
called like a function: ``MyTask().execute(x=1)`` looks up the agent for the template's
task type, converts the keyword arguments by the template's interface, runs
``create``/``get``… or ``do``, and returns the outputs as a ``LiteralMap``.  It is the
in-process tool for agent authors; the operator and ``run-local`` drive agents through
the reconcile core instead.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from flyteidl.core import literals_pb2, tasks_pb2

from agent_operator.sdk.base import AsyncAgentBase, SyncAgentBase
from agent_operator.sdk.errors import FlyteUserException
from agent_operator.sdk.invoke import invoke
from agent_operator.sdk.registry import AgentRegistry
from agent_operator.sdk.resource import Resource, ResourceMeta, TaskExecution, is_terminal_phase


class _LocalTaskMixin:
    """Shared plumbing: where the template, output prefix and inputs come from."""

    #: seconds between two ``get`` calls of the async mixin
    poll_interval: ClassVar[float] = 1.0

    task_template: tasks_pb2.TaskTemplate
    output_prefix: str | None = None

    @property
    def _task_label(self) -> str:
        return getattr(self, "name", None) or self._template().id.name or type(self).__name__

    def _template(self) -> tasks_pb2.TaskTemplate:
        template = getattr(self, "task_template", None)
        if not isinstance(template, tasks_pb2.TaskTemplate):
            raise TypeError(
                f"{type(self).__name__} must provide a flyteidl TaskTemplate as 'task_template' "
                f"to run through an agent"
            )
        return template

    def _output_prefix(self) -> str:
        return self.output_prefix or tempfile.mkdtemp(prefix="agent-operator-local-")

    def _inputs(self, template: tasks_pb2.TaskTemplate, kwargs: dict[str, Any]) -> literals_pb2.LiteralMap:
        from agent_operator.serialization import load_inputs

        return load_inputs(kwargs, template)

    def _outputs(
        self, template: tasks_pb2.TaskTemplate, resource: Resource, output_prefix: str
    ) -> literals_pb2.LiteralMap:
        if resource.phase != TaskExecution.SUCCEEDED:
            phase = TaskExecution.Phase.Name(resource.phase)
            raise FlyteUserException(
                f"Failed to run the task {self._task_label} ({phase}) with error: {resource.message}"
            )
        if resource.outputs is None:
            stored = Path(output_prefix) / "outputs.pb"
            lm = literals_pb2.LiteralMap()
            if template.interface.outputs.variables and stored.is_file():
                lm.ParseFromString(stored.read_bytes())
            return lm
        types = {k: v.type for k, v in template.interface.outputs.variables.items()}
        return resource.to_flyte_idl(types).outputs


class SyncAgentExecutorMixin(_LocalTaskMixin):
    """This mixin class is used to run the sync task locally, and it's only used for local execution."""

    def execute(self, **kwargs: Any) -> literals_pb2.LiteralMap:
        """Run ``do`` of the agent registered for ``task_template.type`` and return its outputs."""
        template = self._template()
        agent = AgentRegistry.get_agent(template.type, template.task_type_version)
        if not isinstance(agent, SyncAgentBase):
            raise TypeError(f"agent {agent.name!r} for {agent.task_category} is not a sync agent")
        output_prefix = self._output_prefix()
        inputs = self._inputs(template, kwargs)
        resource = asyncio.run(
            invoke(agent.do, task_template=template, output_prefix=output_prefix, inputs=inputs)
        )
        return self._outputs(template, resource, output_prefix)


class AsyncAgentExecutorMixin(_LocalTaskMixin):
    """This mixin class is used to run the async task locally, and it's only used for local execution.

    Ctrl-C (SIGINT) while polling calls the agent's ``delete`` before the
    ``KeyboardInterrupt`` propagates, so an interrupted local run leaves no remote job.
    """

    resource_meta: ResourceMeta | None = None
    _clean_up_task: bool = False

    def execute(self, **kwargs: Any) -> literals_pb2.LiteralMap:
        """Run ``create`` then ``get`` until a terminal phase; return the outputs."""
        template = self._template()
        agent = AgentRegistry.get_agent(template.type, template.task_type_version)
        if not isinstance(agent, AsyncAgentBase):
            raise TypeError(f"agent {agent.name!r} for {agent.task_category} is not an async agent")
        output_prefix = self._output_prefix()
        inputs = self._inputs(template, kwargs)
        self._clean_up_task = False
        resource = asyncio.run(self._run(agent, template, output_prefix, inputs))
        return self._outputs(template, resource, output_prefix)

    async def _run(
        self,
        agent: AsyncAgentBase,
        template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap,
    ) -> Resource:
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._loop = loop
        meta = await invoke(
            agent.create, task_template=template, output_prefix=output_prefix, inputs=inputs,
            task_execution_metadata=None,
        )
        self.resource_meta = meta
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGINT, partial(self.agent_signal_handler, meta))
        try:
            while True:
                if self._clean_up_task:
                    await invoke(agent.delete, resource_meta=meta)
                    raise KeyboardInterrupt(f"task {self._task_label} interrupted; agent delete called")
                resource: Resource = await invoke(agent.get, resource_meta=meta)
                if is_terminal_phase(resource.phase):
                    return resource
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)

    def agent_signal_handler(self, resource_meta: ResourceMeta, signum: int, frame: FrameType | None) -> Any:
        """Request cancellation: the poll loop calls ``delete(resource_meta)`` and stops."""
        self._clean_up_task = True
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wakeup.set)
