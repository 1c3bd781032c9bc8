"""Remote Flyte agent services over gRPC, exposed as SDK agents.

``pyflyte serve connector`` / ``pyflyte serve agent`` deployments (and any service
implementing flyteidl's ``AsyncAgentService`` / ``SyncAgentService`` /
``AgentMetadataService``) become ordinary agents of this operator.  See
:mod:`.config` for the configuration file, :mod:`.cli` for the flags.
"""

from agent_operator.bridges.remote.agents import RemoteAsyncAgent, RemoteSyncAgent, resource_from_remote
from agent_operator.bridges.remote.cli import (
    add_remote_agent_args,
    build_remote_config,
    load_remote_agents,
    load_remote_pool,
    stop_remote_agents,
)
from agent_operator.bridges.remote.client import RemoteAgentClient
from agent_operator.bridges.remote.config import (
    Deployment,
    KeepaliveConfig,
    RemoteConfig,
    RemoteConfigError,
    StaticRoute,
    TLSConfig,
    load_remote_config_file,
    parse_remote_config,
)
from agent_operator.bridges.remote.discovery import RemoteAgentPool
from agent_operator.bridges.remote.errors import RemoteAgentError, classify_rpc_error

__all__ = [
    "Deployment",
    "KeepaliveConfig",
    "RemoteAgentClient",
    "RemoteAgentError",
    "RemoteAgentPool",
    "RemoteAsyncAgent",
    "RemoteConfig",
    "RemoteConfigError",
    "RemoteSyncAgent",
    "StaticRoute",
    "TLSConfig",
    "add_remote_agent_args",
    "build_remote_config",
    "classify_rpc_error",
    "load_remote_agents",
    "load_remote_config_file",
    "load_remote_pool",
    "parse_remote_config",
    "resource_from_remote",
    "stop_remote_agents",
]
