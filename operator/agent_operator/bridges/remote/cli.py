"""Command-line flags for remote agent services, shared by ``run``, ``run-local`` and ``serve``.

``add_remote_agent_args(parser)`` adds the flags; ``load_remote_agents(args)`` builds the
configuration (file first, flags on top), registers the remote agents and starts the
periodic discovery.  Call it after the built-in agents are loaded (see
:mod:`agent_operator.bridges.selection`).
"""

from __future__ import annotations

import argparse
import logging
import os
from types import MappingProxyType

from agent_operator.bridges.remote.config import (
    DEFAULT_DEPLOYMENT,
    RemoteConfig,
    RemoteConfigError,
    StaticRoute,
    load_remote_config_file,
    parse_deployment,
    parse_seconds,
)
from agent_operator.bridges.remote.discovery import RemoteAgentPool
from agent_operator.bridges.selection import AgentSourceSelection, add_selection_arg, parse_category
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)

#: environment variable naming the config file (a mounted ConfigMap key)
CONFIG_ENV = "AGENT_OPERATOR_REMOTE_CONFIG"


def add_remote_agent_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``--remote-*`` flags and ``--agent-source`` to ``parser``."""
    g = parser.add_argument_group("remote Flyte agent services (gRPC)")
    g.add_argument(
        "--remote-config",
        metavar="FILE",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML/JSON file in FlytePropeller's agent-service format (env {CONFIG_ENV})",
    )
    g.add_argument(
        "--remote-endpoint",
        action="append",
        default=[],
        metavar="[ID=]TARGET",
        help="agent service address: host:port, dns:///host:port or ipv4:a:port,b:port; "
        "without ID it is the default deployment (repeatable)",
    )
    g.add_argument("--remote-insecure", action="store_true", help="plaintext gRPC for --remote-endpoint services")
    g.add_argument("--remote-protocol", choices=("flyte1", "flyte2"), default="flyte1",
                   help="what --remote-endpoint services speak: flyte1 (flytekit connectors, `pyflyte serve "
                   "connector`) or flyte2 (Flyte 2 connectors, `c0`); default flyte1")
    g.add_argument("--remote-ca-file", metavar="PEM", help="trusted CA for --remote-endpoint services (TLS)")
    g.add_argument("--remote-cert-file", metavar="PEM", help="client certificate (mutual TLS)")
    g.add_argument("--remote-key-file", metavar="PEM", help="client key (mutual TLS)")
    g.add_argument("--remote-server-name", metavar="NAME", help="TLS server name to verify instead of the host")
    g.add_argument("--remote-timeout", metavar="DURATION", help="per-call deadline (default 10s)")
    g.add_argument("--remote-keepalive", metavar="DURATION", help="keepalive ping interval (default 5m; 0 = off)")
    g.add_argument(
        "--remote-task-type",
        action="append",
        default=[],
        metavar="TYPE[:VERSION][=ID]",
        help="route a task type to a deployment without discovery (repeatable)",
    )
    g.add_argument("--remote-sync-task-type", action="append", default=[], metavar="TYPE[:VERSION][=ID]",
                   help="like --remote-task-type for a sync (ExecuteTaskSync) type")
    g.add_argument("--remote-poll-interval", metavar="DURATION", help="ListAgents refresh period (default 60s; 0 = once)")
    add_selection_arg(parser)


def build_remote_config(args: argparse.Namespace) -> RemoteConfig:
    """The file named by ``--remote-config`` with the flag-given deployments and routes added."""
    base = load_remote_config_file(args.remote_config) if getattr(args, "remote_config", None) else RemoteConfig()
    deployments = dict(base.deployments)
    for spec in getattr(args, "remote_endpoint", []) or []:
        dep_id, sep, target = spec.partition("=")
        if not sep:
            dep_id, target = DEFAULT_DEPLOYMENT, spec
        body: dict[str, object] = {"endpoint": target, "insecure": bool(args.remote_insecure),
                                   "protocol": getattr(args, "remote_protocol", "flyte1") or "flyte1"}
        tls = {
            key: value
            for key, value in (
                ("caFile", args.remote_ca_file),
                ("certFile", args.remote_cert_file),
                ("keyFile", args.remote_key_file),
                ("serverName", args.remote_server_name),
            )
            if value
        }
        if tls:
            body["tls"] = tls
        if args.remote_timeout:
            body["defaultTimeout"] = args.remote_timeout
        if args.remote_keepalive:
            body["keepalive"] = {"time": args.remote_keepalive}
        deployments[dep_id] = parse_deployment(dep_id, body, f"--remote-endpoint {spec}")
    routes = list(base.routes)
    for flag, specs, sync in (
        ("--remote-task-type", getattr(args, "remote_task_type", []) or [], False),
        ("--remote-sync-task-type", getattr(args, "remote_sync_task_type", []) or [], True),
    ):
        for spec in specs:
            type_part, sep, dep_id = spec.partition("=")
            dep_id = dep_id if sep else DEFAULT_DEPLOYMENT
            if dep_id not in deployments:
                raise RemoteConfigError(f"{flag} {spec}", f"no agent deployment {dep_id!r}; known: {sorted(deployments)}")
            try:
                category = parse_category(type_part)
            except ValueError as e:
                raise RemoteConfigError(f"{flag} {spec}", str(e)) from None
            routes.append(StaticRoute(category, dep_id, sync))
    poll = base.poll_interval_s
    if getattr(args, "remote_poll_interval", None):
        poll = parse_seconds(args.remote_poll_interval, "--remote-poll-interval")
    return RemoteConfig(
        deployments=MappingProxyType(deployments),
        routes=tuple(routes),
        poll_interval_s=poll,
        agent_sources=base.agent_sources,
    )


def start_remote_pool(config: RemoteConfig, selection: AgentSourceSelection) -> RemoteAgentPool | None:
    """Run the first discovery, start the periodic refresh and remember the pool; None when unconfigured.

    Pools started here are stopped by :func:`stop_remote_agents`.
    """
    if config.empty:
        return None
    pool = RemoteAgentPool(config, selection)
    from agent_operator.sdk import AgentRegistry

    # while a service's discovery fails, its types are unknown, not absent: tasks wait
    AgentRegistry.add_not_found_hint(pool.not_found_hint, transient=True)
    pool.refresh()
    pool.start()
    _POOLS.append(pool)
    return pool


def load_remote_pool(args: argparse.Namespace) -> RemoteAgentPool | None:
    """Build the configuration from ``args`` and start its pool (see :func:`start_remote_pool`)."""
    config = build_remote_config(args)
    selection = AgentSourceSelection.parse(getattr(args, "agent_source", []) or [], config.agent_sources)
    return start_remote_pool(config, selection)


def load_remote_agents(args: argparse.Namespace) -> list[Agent]:
    """Register the remote agents configured by ``args``; returns those serving a task type."""
    pool = load_remote_pool(args)
    if pool is None:
        return []
    return [a for a in pool.agents() if _serving(a)]


def _serving(agent: Agent) -> bool:
    from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound

    try:
        return AgentRegistry.get_agent(agent.task_category.name, agent.task_category.version) is agent
    except FlyteAgentNotFound:
        return False


#: pools started by load_remote_agents (kept for the life of the process; stop_remote_agents ends them)
_POOLS: list[RemoteAgentPool] = []


def stop_remote_agents() -> None:
    """Stop every discovery thread started by :func:`load_remote_agents` (clean shutdown)."""
    while _POOLS:
        _POOLS.pop().stop()
