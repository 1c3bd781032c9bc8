"""flyte-agent-operator: run Flyte agents as Kubernetes controllers.

The agent SDK is re-exported here (``from agent_operator import AsyncAgentBase``).  The
re-exports resolve lazily so that importing the package for ``__version__`` (the CLI,
the controller) does not pay for loading flyteidl.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_SDK_EXPORTS = frozenset(
    {
        "AgentBase",
        "AgentLoadError",
        "AgentRegistry",
        "AsyncAgentBase",
        "AsyncAgentExecutorMixin",
        "FlyteAgentNotFound",
        "FlyteUserException",
        "Resource",
        "ResourceMeta",
        "SyncAgentBase",
        "SyncAgentExecutorMixin",
        "TaskCategory",
        "TaskExecutionMetadata",
        "TransientAgentError",
        "load_agents",
    }
)

__all__ = ["__version__", *sorted(_SDK_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _SDK_EXPORTS:
        from agent_operator import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'agent_operator' has no attribute {name!r}")
