"""Serve this process's agents to Flyte (``agent-operator serve``).

FlytePropeller's agent plugin (``agent-service``) pointed at this endpoint runs our
agents exactly as it runs a ``pyflyte serve connector`` deployment.
"""

from agent_operator.bridges.serve.server import ServerTLS, start_agent_server
from agent_operator.bridges.serve.servicer import (
    AgentMetadataServicer,
    AsyncAgentServicer,
    SyncAgentServicer,
    resource_to_idl,
)

__all__ = [
    "AgentMetadataServicer",
    "AsyncAgentServicer",
    "ServerTLS",
    "SyncAgentServicer",
    "resource_to_idl",
    "start_agent_server",
]
