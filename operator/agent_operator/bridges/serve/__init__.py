"""Serve this process's agents to Flyte (``agent-operator serve``).

FlytePropeller's agent plugin (``agent-service``) pointed at this endpoint runs our
agents exactly as it runs a ``pyflyte serve connector`` deployment; with flyteidl2
installed, Flyte 2's executor reaches the async ones as connectors on the same port
(:mod:`agent_operator.bridges.serve.flyte2`).
"""

from agent_operator.bridges.serve.server import AgentServer, ServerTLS, start_agent_server
from agent_operator.bridges.serve.servicer import (
    AgentMetadataServicer,
    AsyncAgentServicer,
    SyncAgentServicer,
    resource_to_idl,
)

__all__ = [
    "AgentMetadataServicer",
    "AgentServer",
    "AsyncAgentServicer",
    "ServerTLS",
    "SyncAgentServicer",
    "resource_to_idl",
    "start_agent_server",
]
