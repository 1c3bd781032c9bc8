"""The agent SDK: flytekit ``base_agent`` names and signatures on plain flyteidl.

Porting an agent from flytekit means changing
``from flytekit.extend.backend.base_agent import ...`` into
``from agent_operator.sdk import ...`` (or ``from agent_operator import ...``).
"""

from flyteidl.admin.agent_pb2 import Agent

from agent_operator.sdk.base import (
    AgentBase,
    AsyncAgentBase,
    LiteralMap,
    SyncAgentBase,
    TaskExecutionMetadata,
    TaskTemplate,
)
from agent_operator.sdk.errors import (
    AgentLoadError,
    FlyteAgentNotFound,
    FlyteUserException,
    TransientAgentError,
)
from agent_operator.sdk.executor import AsyncAgentExecutorMixin, SyncAgentExecutorMixin
from agent_operator.sdk.invoke import invoke, mirror_async_methods
from agent_operator.sdk.registry import AgentRegistry, load_agents
from agent_operator.sdk.resource import (
    Resource,
    ResourceMeta,
    TaskCategory,
    TaskExecution,
    TaskLog,
    convert_to_flyte_phase,
    is_terminal_phase,
)

# flytekit >= 1.15 names ("connector"); the same classes.
ConnectorBase = AgentBase
AsyncConnectorBase = AsyncAgentBase
SyncConnectorBase = SyncAgentBase
ConnectorRegistry = AgentRegistry
AsyncConnectorExecutorMixin = AsyncAgentExecutorMixin
SyncConnectorExecutorMixin = SyncAgentExecutorMixin
FlyteConnectorNotFound = FlyteAgentNotFound

__all__ = [
    "Agent",
    "AgentBase",
    "AgentLoadError",
    "AgentRegistry",
    "AsyncAgentBase",
    "AsyncAgentExecutorMixin",
    "AsyncConnectorBase",
    "AsyncConnectorExecutorMixin",
    "ConnectorBase",
    "ConnectorRegistry",
    "FlyteAgentNotFound",
    "FlyteConnectorNotFound",
    "FlyteUserException",
    "LiteralMap",
    "Resource",
    "ResourceMeta",
    "SyncAgentBase",
    "SyncAgentExecutorMixin",
    "SyncConnectorBase",
    "SyncConnectorExecutorMixin",
    "TaskCategory",
    "TaskExecution",
    "TaskExecutionMetadata",
    "TaskLog",
    "TaskTemplate",
    "TransientAgentError",
    "convert_to_flyte_phase",
    "invoke",
    "is_terminal_phase",
    "load_agents",
    "mirror_async_methods",
]
