"""Configuration of remote Flyte agent services (file and CLI flags).

The file format is FlytePropeller's ``agent-service`` plugin section, so an existing
propeller config can be pasted into a ConfigMap unchanged (the section may be given
bare, under ``agent-service:`` or under ``plugins: {agent-service: ...}``)::

    defaultAgent:                       # serves every type ListAgents reports for it
      endpoint: dns:///flyteagent.flyte.svc.cluster.local:8000
      insecure: true
      defaultTimeout: 10s               # per-call deadline unless `timeouts` names the call
      timeouts: {CreateTask: 30s, ExecuteTaskSync: 60s}
    agents:                             # more deployments, by id
      bigquery:
        endpoint: bigquery-agent:8000
        tls: {caFile: /etc/agent-tls/ca.crt, serverName: bigquery-agent}
        keepalive: {time: 5m, timeout: 20s}
      flyte2:
        endpoint: flyte2-connectors:8000
        protocol: flyte2                # a Flyte 2 connector service (`c0`): flyteidl2, ListConnectors
    agentForTaskTypes:                  # static routes (services without ListAgents)
      bigquery_query_job_task: bigquery
      my_sync_type: {agent: bigquery, version: 1, sync: true}
    pollInterval: 60s                   # ListAgents refresh period; 0 = only at start
    agentSources: {sensor: remote}      # see agent_operator.bridges.selection

Everything a user can get wrong raises :class:`RemoteConfigError` naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from agent_operator.sdk import TaskCategory
from agent_operator.serialization.timefmt import to_duration

#: RPCs whose deadline can be configured (propeller's names)
OPERATIONS: frozenset[str] = frozenset(
    {"CreateTask", "GetTask", "DeleteTask", "ExecuteTaskSync", "ListAgents", "ListConnectors", "GetTaskLogs",
     "GetTaskMetrics"}
)
DEFAULT_DEPLOYMENT = "default"
#: gRPC's own round_robin policy: one sub-channel per resolved address, calls rotate over them
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


class RemoteConfigError(ValueError):
    """A remote agent configuration value is invalid; the message names the field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"remote agent config: {field_path}: {message}")
        self.field = field_path
        self.reason = message


@dataclass(frozen=True)
class TLSConfig:
    """Client-side TLS: trusted roots (system roots when unset), optional client cert (mTLS)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class KeepaliveConfig:
    """HTTP/2 keepalive pings.

    The default interval (5 minutes) equals gRPC servers' default minimum accepted ping
    interval: pinging more often makes a stock server (flytekit's included) close the
    connection with ENHANCE_YOUR_CALM unless it was configured to allow it.
    """

    time_s: float = 300.0
    timeout_s: float = 20.0
    permit_without_calls: bool = False


@dataclass(frozen=True)
class Deployment:
    """One agent service endpoint and how to talk to it."""

    id: str
    endpoint: str
    insecure: bool = False
    tls: TLSConfig = field(default_factory=TLSConfig)
    default_timeout_s: float | None = 10.0
    timeouts_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    keepalive: KeepaliveConfig = field(default_factory=KeepaliveConfig)
    service_config: str = ROUND_ROBIN_SERVICE_CONFIG
    #: "flyte1": flyteidl AsyncAgentService & co. (pyflyte serve connector, our serve);
    #: "flyte2": flyteidl2.connector services (the Flyte 2 SDK's ``c0``), async only
    protocol: str = "flyte1"

    def timeout_for(self, operation: str) -> float | None:
        """Deadline (seconds) of one RPC; None means no deadline."""
        return self.timeouts_s.get(operation, self.default_timeout_s)


@dataclass(frozen=True)
class StaticRoute:
    """A task category routed to a deployment by configuration rather than discovery."""

    category: TaskCategory
    deployment: str
    sync: bool = False


@dataclass(frozen=True)
class RemoteConfig:
    """All remote deployments, static routes, the discovery period and source choices."""

    deployments: Mapping[str, Deployment] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[StaticRoute, ...] = ()
    poll_interval_s: float = 60.0
    agent_sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def empty(self) -> bool:
        """True when no deployment is configured (the remote bridge is off)."""
        return not self.deployments


def parse_seconds(value: Any, where: str, *, allow_zero: bool = True) -> float:
    """Seconds from ``10s`` / ``1m30s`` / ``1.5s`` / a number (or its text, as flags give it)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    d = to_duration(value)
    if d is None:
        raise RemoteConfigError(where, f"expected a duration such as 10s, 1m30s or a number of seconds, got {value!r}")
    seconds = d.ToNanoseconds() / 1e9
    if seconds < 0 or (seconds == 0 and not allow_zero) or not math.isfinite(seconds):
        raise RemoteConfigError(where, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return seconds


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RemoteConfigError(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RemoteConfigError(where, f"expected true or false, got {value!r}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RemoteConfigError(where, f"expected a non-empty string, got {value!r}")
    return value


_DEPLOYMENT_KEYS = {"endpoint", "insecure", "tls", "defaultTimeout", "timeouts", "keepalive", "defaultServiceConfig",
                    "protocol"}
PROTOCOLS = ("flyte1", "flyte2")


def parse_deployment(dep_id: str, raw: Any, where: str) -> Deployment:
    """One deployment mapping (``endpoint``, ``insecure``, ``tls``, timeouts, ``keepalive``)."""
    body = _mapping(raw, where)
    unknown = sorted(set(body) - _DEPLOYMENT_KEYS)
    if unknown:
        raise RemoteConfigError(where, f"unknown field(s) {unknown}; known: {sorted(_DEPLOYMENT_KEYS)}")
    endpoint = _opt_str(body.get("endpoint"), f"{where}.endpoint")
    if endpoint is None:
        raise RemoteConfigError(f"{where}.endpoint", "is required (host:port, dns:///host:port or ipv4:a:p,b:p)")
    tls_raw = _mapping(body.get("tls"), f"{where}.tls")
    tls_unknown = sorted(set(tls_raw) - {"caFile", "certFile", "keyFile", "serverName"})
    if tls_unknown:
        raise RemoteConfigError(f"{where}.tls", f"unknown field(s) {tls_unknown}")
    tls = TLSConfig(
        ca_file=_opt_str(tls_raw.get("caFile"), f"{where}.tls.caFile"),
        cert_file=_opt_str(tls_raw.get("certFile"), f"{where}.tls.certFile"),
        key_file=_opt_str(tls_raw.get("keyFile"), f"{where}.tls.keyFile"),
        server_name=_opt_str(tls_raw.get("serverName"), f"{where}.tls.serverName"),
    )
    if (tls.cert_file is None) != (tls.key_file is None):
        raise RemoteConfigError(f"{where}.tls", "certFile and keyFile must be given together")
    insecure = _bool(body.get("insecure", False), f"{where}.insecure")
    if insecure and tls_raw:
        raise RemoteConfigError(f"{where}.tls", "is set but insecure is true; drop one of them")
    default_timeout: float | None = 10.0
    if "defaultTimeout" in body:
        default_timeout = parse_seconds(body["defaultTimeout"], f"{where}.defaultTimeout") or None
    timeouts: dict[str, float] = {}
    for op, value in _mapping(body.get("timeouts"), f"{where}.timeouts").items():
        if op not in OPERATIONS:
            raise RemoteConfigError(f"{where}.timeouts.{op}", f"unknown call; known: {sorted(OPERATIONS)}")
        timeouts[op] = parse_seconds(value, f"{where}.timeouts.{op}", allow_zero=False)
    ka_raw = _mapping(body.get("keepalive"), f"{where}.keepalive")
    ka_unknown = sorted(set(ka_raw) - {"time", "timeout", "permitWithoutCalls"})
    if ka_unknown:
        raise RemoteConfigError(f"{where}.keepalive", f"unknown field(s) {ka_unknown}")
    defaults = KeepaliveConfig()
    keepalive = KeepaliveConfig(
        time_s=parse_seconds(ka_raw.get("time", defaults.time_s), f"{where}.keepalive.time"),
        timeout_s=parse_seconds(ka_raw.get("timeout", defaults.timeout_s), f"{where}.keepalive.timeout", allow_zero=False),
        permit_without_calls=_bool(ka_raw.get("permitWithoutCalls", False), f"{where}.keepalive.permitWithoutCalls"),
    )
    service_config = body.get("defaultServiceConfig") or ROUND_ROBIN_SERVICE_CONFIG
    try:
        json.loads(service_config)
    except (TypeError, json.JSONDecodeError) as e:
        raise RemoteConfigError(f"{where}.defaultServiceConfig", f"not a JSON gRPC service config: {e}") from None
    protocol = body.get("protocol", "flyte1")
    if protocol not in PROTOCOLS:
        raise RemoteConfigError(f"{where}.protocol", f"{protocol!r} is not one of {list(PROTOCOLS)} (flyte1: a flytekit "
                                                     f"connector service; flyte2: a Flyte 2 connector service)")
    return Deployment(
        id=dep_id,
        protocol=protocol,
        endpoint=endpoint,
        insecure=insecure,
        tls=tls,
        default_timeout_s=default_timeout,
        timeouts_s=MappingProxyType(timeouts),
        keepalive=keepalive,
        service_config=service_config,
    )


def _unwrap(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the bare section, ``agent-service:`` or ``plugins: {agent-service: ...}``."""
    if "plugins" in doc and isinstance(doc["plugins"], Mapping) and "agent-service" in doc["plugins"]:
        return _mapping(doc["plugins"]["agent-service"], "plugins.agent-service")
    if "agent-service" in doc:
        return _mapping(doc["agent-service"], "agent-service")
    return doc


_TOP_KEYS = {"defaultAgent", "agents", "agentForTaskTypes", "pollInterval", "agentSources"}
#: propeller keys that mean nothing here; accepted so a pasted propeller section loads
_IGNORED_KEYS = {"webApi", "resourceConstraints", "supportedTaskTypes"}


def parse_remote_config(doc: Any) -> RemoteConfig:
    """Validate a decoded config document (see the module docstring for the shape)."""
    if doc is None:
        return RemoteConfig()
    body = _unwrap(_mapping(doc, "(top level)"))
    unknown = sorted(set(body) - _TOP_KEYS - _IGNORED_KEYS)
    if unknown:
        raise RemoteConfigError("(top level)", f"unknown field(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    deployments: dict[str, Deployment] = {}
    if body.get("defaultAgent") and _mapping(body["defaultAgent"], "defaultAgent").get("endpoint"):
        deployments[DEFAULT_DEPLOYMENT] = parse_deployment(DEFAULT_DEPLOYMENT, body["defaultAgent"], "defaultAgent")
    for dep_id, raw in _mapping(body.get("agents"), "agents").items():
        if dep_id == DEFAULT_DEPLOYMENT and DEFAULT_DEPLOYMENT in deployments:
            raise RemoteConfigError(f"agents.{dep_id}", "the id 'default' is taken by defaultAgent")
        deployments[str(dep_id)] = parse_deployment(str(dep_id), raw, f"agents.{dep_id}")
    routes: list[StaticRoute] = []
    for task_type, target in _mapping(body.get("agentForTaskTypes"), "agentForTaskTypes").items():
        where = f"agentForTaskTypes.{task_type}"
        version, sync = 0, False
        if isinstance(target, Mapping):
            unknown_route = sorted(set(target) - {"agent", "version", "sync"})
            if unknown_route:
                raise RemoteConfigError(where, f"unknown field(s) {unknown_route}; known: agent, version, sync")
            target_id = _opt_str(target.get("agent"), f"{where}.agent")
            version = target.get("version", 0)
            if not isinstance(version, int) or isinstance(version, bool):
                raise RemoteConfigError(f"{where}.version", f"expected an integer, got {version!r}")
            sync = _bool(target.get("sync", False), f"{where}.sync")
        else:
            target_id = _opt_str(target, where)
        if target_id is None or target_id not in deployments:
            raise RemoteConfigError(
                where, f"names agent {target_id!r}, which is not configured; known: {sorted(deployments)}"
            )
        routes.append(StaticRoute(TaskCategory(str(task_type), version), target_id, sync))
    poll = parse_seconds(body.get("pollInterval", 60), "pollInterval")
    sources = {str(k): str(v) for k, v in _mapping(body.get("agentSources"), "agentSources").items()}
    return RemoteConfig(
        deployments=MappingProxyType(deployments),
        routes=tuple(routes),
        poll_interval_s=poll,
        agent_sources=MappingProxyType(sources),
    )


def load_remote_config_file(path: str | Path) -> RemoteConfig:
    """Read a YAML or JSON file (JSON is YAML) such as a mounted ConfigMap key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RemoteConfigError(str(p), f"cannot read: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RemoteConfigError(str(p), f"not valid YAML/JSON: {e}") from None
    try:
        return parse_remote_config(doc)
    except RemoteConfigError as e:
        raise RemoteConfigError(f"{p}: {e.field}", e.reason) from None
