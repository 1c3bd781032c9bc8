"""What both baselines share: finding the agent for a spec and the poll interval.

Kept tiny on purpose: the baselines must do the same agent work as the operator (parse the
same TaskTemplate with the same loader, call the same agent through the same ``invoke``)
so that the difference measured is the controller, not the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteidl.core import tasks_pb2

from agent_operator.crd.durations import parse_duration
from agent_operator.sdk import AsyncAgentBase
from agent_operator.sdk.resource import TaskExecution
from agent_operator.serialization import load_task_template
from bench.agents import by_task_type

AGENTS: dict[str, AsyncAgentBase] = by_task_type()
DEFAULT_POLL_SECONDS = 5.0
FINALIZER = "flyteagents.dev/agent-cleanup"


def prepare(spec: Mapping[str, Any]) -> tuple[AsyncAgentBase, tasks_pb2.TaskTemplate, float]:
    """The agent, the parsed template and the poll interval (seconds) of an AgentTask spec."""
    template = load_task_template(spec.get("taskTemplate") or spec.get("taskTemplateBase64"))
    agent = AGENTS[template.type]
    poll = spec.get("pollInterval")
    return agent, template, parse_duration(poll) if poll else DEFAULT_POLL_SECONDS


def phase_word(phase: int) -> str:
    """The AgentTask phase for a terminal ``TaskExecution`` phase."""
    if phase == TaskExecution.SUCCEEDED:
        return "Succeeded"
    if phase == TaskExecution.ABORTED:
        return "Aborted"
    return "Failed"
