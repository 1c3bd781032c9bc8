"""Find the agents/connectors flytekit knows about and register them as SDK agents.

Discovery follows ``pyflyte serve connector`` step by step, so the same image serves the
same task types under either:

1. ``import flytekit`` runs flytekit's plugin discovery (entry points of the group
   ``flytekit.plugins``, which is how ``flytekitplugins-*`` packages register their
   connectors) and registers flytekit's own ``SensorEngine`` (task type ``sensor``);
2. ``flytekit.extras.webhook`` is imported for the ``webhook`` connector;
3. the modules named by ``--flytekit-module`` are imported (``pyflyte serve connector
   --modules``), for in-house connectors that register themselves on import;
4. everything in flytekit's registries is wrapped: ``ConnectorRegistry`` (1.15+ names)
   and, when it is a different class (older flytekit), the deprecated ``AgentRegistry``
   from ``flytekit.extend.backend.base_agent``.  In 1.16 the agent names are aliases of
   the connector classes, so an agent registered with ``AgentRegistry.register`` lands in
   the same table.

Which wrapper serves a task type that a built-in agent also claims is decided by
:mod:`agent_operator.bridges.selection`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

from agent_operator.bridges.flytekit.availability import INSTALL_HINT, flytekit_available
from agent_operator.bridges.selection import FLYTEKIT, AgentSourceSelection
from agent_operator.sdk import AgentLoadError
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)


class FlytekitNotInstalled(AgentLoadError):
    """The flytekit bridge was requested but flytekit cannot be imported."""


def _registries() -> list[Any]:
    """flytekit's registry classes (connector and, if distinct, the deprecated agent one)."""
    found: list[Any] = []
    for module_name, attr in (
        ("flytekit.extend.backend.base_connector", "ConnectorRegistry"),
        ("flytekit.extend.backend.base_agent", "AgentRegistry"),
    ):
        try:
            registry = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
        if all(registry is not r for r in found):
            found.append(registry)
    return found


def flytekit_connectors() -> list[Any]:
    """Every connector object in flytekit's registries, in a stable order, without duplicates."""
    seen: dict[int, Any] = {}
    for registry in _registries():
        table = getattr(registry, "_REGISTRY", {})
        for category in sorted(table, key=lambda c: (c.name, c.version)):
            seen.setdefault(id(table[category]), table[category])
    return list(seen.values())


def import_flytekit(modules: Iterable[str] = ()) -> None:
    """Import flytekit (plugin discovery), its webhook connector and the extra ``modules``."""
    if not flytekit_available():
        raise FlytekitNotInstalled(f"the flytekit bridge needs flytekit: {INSTALL_HINT}")
    try:
        import flytekit  # noqa: F401 - runs flytekit.load_implicit_plugins()
        import flytekit.extend.backend.base_connector  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a broken flytekit plugin fails here
        raise AgentLoadError(f"importing flytekit failed: {type(e).__name__}: {e}") from e
    try:
        import flytekit.extras.webhook  # noqa: F401 - registers the webhook connector
    except ImportError as e:
        log.warning("flytekit webhook connector not loaded (%s); install httpx: %s", e, INSTALL_HINT)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - name the module that failed
            raise AgentLoadError(f"--flytekit-module {module!r}: {type(e).__name__}: {e}") from e


def wrap(connector: Any) -> Agent:
    """The SDK agent wrapping one flytekit connector (async or sync)."""
    from flytekit.extend.backend.base_connector import AsyncConnectorBase, SyncConnectorBase

    from agent_operator.bridges.flytekit.adapter import FlytekitAsyncAgent, FlytekitSyncAgent

    if isinstance(connector, SyncConnectorBase):
        return FlytekitSyncAgent(connector)
    if isinstance(connector, AsyncConnectorBase):
        return FlytekitAsyncAgent(connector)
    raise AgentLoadError(f"flytekit registry holds {connector!r}, which is neither a sync nor an async connector")


_WRAPPERS: dict[int, Agent] = {}


def load_flytekit_agents(
    selection: AgentSourceSelection | None = None, modules: Iterable[str] = ()
) -> list[Agent]:
    """Import flytekit and register a wrapper per connector; returns the wrappers now serving.

    A wrapper is created once per connector object, so calling this again (e.g. after
    importing more modules) keeps the registered objects stable.
    """
    modules = list(modules)
    import_flytekit(modules)
    from agent_operator.bridges.flytekit.guard import allow_modules
    from agent_operator.bridges.flytekit.secrets import install

    install()
    allow_modules(modules)
    selection = selection or AgentSourceSelection()
    serving: list[Agent] = []
    for connector in flytekit_connectors():
        agent = _WRAPPERS.get(id(connector))
        if agent is None:
            agent = _WRAPPERS[id(connector)] = wrap(connector)
        if selection.register(agent, FLYTEKIT):
            serving.append(agent)
    log.info("flytekit bridge: %d connector(s) found, %d serving", len(_WRAPPERS), len(serving))
    return serving
