"""The reconcile core: plain functions over plain data, no kopf, no API server.

Given an AgentTask (the typed :class:`~agent_operator.crd.resource.AgentTask`), what the agent
answered and the time, :mod:`~agent_operator.core.reconcile` returns the new status and
the next action.  The kopf controller, ``run-local`` and tests all drive the same core,
so there is one place that decides what happens to a task.
"""

from agent_operator.core.model import Action, ActionKind, Decision, EventRecord
from agent_operator.core.reconcile import absorb, decide

__all__ = ["Action", "ActionKind", "Decision", "EventRecord", "absorb", "decide"]
