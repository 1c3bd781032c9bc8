"""Which task types the configured agent services serve, kept current in the registry.

At start and then every ``pollInterval`` each deployment is asked ``ListAgents``; every
reported category becomes a :class:`RemoteAsyncAgent` / :class:`RemoteSyncAgent` in the
process-wide :class:`~agent_operator.sdk.AgentRegistry` (subject to the source selection),
so ``agent-operator agents`` and the reconcile core see remote types like any other.

Precedence inside the remote bridge: a static route (``agentForTaskTypes``) beats
discovery; among discovered deployments the later one in the config wins (``agents``
entries after ``defaultAgent``).  A service that is down or lacks ListAgents keeps what
was discovered before.  A type that disappears stays registered: calls for it then fail
with the service's NOT_FOUND message, which says more than "no agent" would.

The refresh runs in a daemon thread on blocking channels, so it works the same under the
kopf event loop, ``run-local`` and ``serve`` without any of them scheduling it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import grpc

from agent_operator.bridges.remote.agents import RemoteAsyncAgent, RemoteSyncAgent
from agent_operator.bridges.remote.client import RemoteAgentClient
from agent_operator.bridges.remote.config import Deployment, RemoteConfig
from agent_operator.bridges.remote.errors import RemoteAgentError
from agent_operator.bridges.selection import REMOTE, AgentSourceSelection
from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound, TaskCategory, TransientAgentError
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)

RemoteAgent = RemoteAsyncAgent | RemoteSyncAgent
#: refresh period (seconds) while some deployment's ListAgents fails
RETRY_UNREACHABLE_S = 5.0



def client_for(deployment: Deployment) -> RemoteAgentClient:
    """The client speaking the deployment's protocol (flyteidl, or flyteidl2 for ``protocol: flyte2``)."""
    if deployment.protocol == "flyte2":
        from agent_operator.bridges.remote.flyte2 import Flyte2ConnectorClient

        return Flyte2ConnectorClient(deployment)
    return RemoteAgentClient(deployment)


class RemoteAgentPool:
    """The remote agents of one configuration and their discovery loop."""

    def __init__(self, config: RemoteConfig, selection: AgentSourceSelection | None = None) -> None:
        self.config = config
        self.selection = selection or AgentSourceSelection.parse((), config.agent_sources)
        self.clients = {dep_id: client_for(dep) for dep_id, dep in config.deployments.items()}
        self._agents: dict[tuple[str, TaskCategory, bool], RemoteAgent] = {}
        self._discovered: dict[str, dict[TaskCategory, tuple[str, bool]]] = {}
        #: deployment id -> why its last ListAgents failed (cleared when it answers)
        self.discovery_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _agent(self, dep_id: str, category: TaskCategory, is_sync: bool, remote_name: str) -> RemoteAgent:
        """The one agent object per (deployment, category, kind), reused across refreshes."""
        key = (dep_id, category, is_sync)
        agent = self._agents.get(key)
        if agent is None:
            cls = RemoteSyncAgent if is_sync else RemoteAsyncAgent
            agent = cls(self.clients[dep_id], category, remote_name, dep_id)
            self._agents[key] = agent
        return agent

    def _discover(self, dep_id: str) -> None:
        """Ask one deployment; keep the previous answer when it cannot be asked."""
        client = self.clients[dep_id]
        try:
            listed = client.list_agents_blocking()
        except (TransientAgentError, RemoteAgentError) as e:
            code = getattr(e, "code", None)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                log.info("agent service %s (%s) has no ListAgents; using static routes only", dep_id, client.endpoint)
            else:
                log.warning("discovery of agent service %s failed (keeping previous answer): %s", dep_id, e)
                self.discovery_errors[dep_id] = str(e)
            return
        self.discovery_errors.pop(dep_id, None)
        found: dict[TaskCategory, tuple[str, bool]] = {}
        for meta in listed:
            for task_type in meta.supported_task_types:
                found.setdefault(TaskCategory(task_type, 0), (meta.name, meta.is_sync))
            for cat in meta.supported_task_categories:
                found[TaskCategory(cat.name, cat.version)] = (meta.name, meta.is_sync)
        self._discovered[dep_id] = found

    def resolve(self) -> dict[TaskCategory, RemoteAgent]:
        """Category -> agent after remote-internal precedence (no registry change)."""
        chosen: dict[TaskCategory, RemoteAgent] = {}
        for dep_id in self.config.deployments:  # config order: defaultAgent first
            for category, (remote_name, is_sync) in self._discovered.get(dep_id, {}).items():
                chosen[category] = self._agent(dep_id, category, is_sync, remote_name)
        for route in self.config.routes:
            discovered = self._discovered.get(route.deployment, {}).get(route.category)
            remote_name = discovered[0] if discovered else route.category.name
            chosen[route.category] = self._agent(route.deployment, route.category, route.sync, remote_name)
        return chosen

    def refresh(self) -> list[Agent]:
        """Discover every deployment and register the result; returns the agents serving now."""
        with self._lock:
            for dep_id in self.config.deployments:
                self._discover(dep_id)
            serving: list[Agent] = []
            ours = set(map(id, self._agents.values()))
            for category, agent in self.resolve().items():
                try:
                    current = AgentRegistry.get_agent(category.name, category.version)
                except FlyteAgentNotFound:
                    current = None
                if current is agent:
                    serving.append(agent)
                elif current is not None and id(current) in ours:
                    # the remote route for this type moved (new deployment, sync <-> async)
                    AgentRegistry.register(agent, override=True)
                    log.info("task type %s now served by %r", category, agent.name)
                    serving.append(agent)
                elif self.selection.register(agent, f"{REMOTE}:{agent.deployment_id}"):
                    log.info("task type %s served by remote agent %r (%s)", category, agent.name, agent.client.endpoint)
                    serving.append(agent)
            return serving

    def not_found_hint(self, category: TaskCategory) -> str | None:
        """For "cannot find agent" messages: remote services whose task types are unknown right now."""
        if not self.discovery_errors:
            return None
        failing = "; ".join(f"{dep} ({self.clients[dep].endpoint}): {err}" for dep, err in sorted(self.discovery_errors.items()))
        return (
            f"Remote agent service discovery failed, so task types they serve are unknown until they answer "
            f"(next try within {self.next_wait():g}s; a static route in agentForTaskTypes avoids this): {failing}"
        )

    def next_wait(self) -> float:
        """Seconds until the next refresh: ``pollInterval``, shorter while a service is unreachable.

        Until a service answers ListAgents its task types are unknown and AgentTasks of those
        types fail with AgentNotFound, so an unreachable service is asked again within
        :data:`RETRY_UNREACHABLE_S` (an operator and its agent service often start together).
        """
        interval = self.config.poll_interval_s
        return min(interval, RETRY_UNREACHABLE_S) if self.discovery_errors else interval

    def start(self) -> None:
        """Refresh every ``pollInterval`` in a daemon thread (no-op when the interval is 0)."""
        if self.config.poll_interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.next_wait()):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - discovery must never die silently mid-run
                    log.exception("remote agent discovery failed")

        self._thread = threading.Thread(target=loop, name="remote-agent-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresh thread and close the discovery channels."""
        self._stop.set()
        AgentRegistry.remove_not_found_hint(self.not_found_hint)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for client in self.clients.values():
            client.close_blocking()

    def agents(self) -> Iterable[RemoteAgent]:
        """Every remote agent object created so far (serving or not)."""
        return list(self._agents.values())
