"""Find the connectors written with the Flyte 2 SDK and register them as SDK agents.

Discovery follows the SDK's own connector server (``c0``): every entry point of the group
``flyte.connectors`` is loaded (that is how a Flyte 2 connector package registers), then the
modules named by ``--flyte2-module`` (``c0 --modules``); whatever is then in
``flyte.connectors.ConnectorRegistry`` is wrapped, one agent per task category.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable
from importlib import metadata

from agent_operator.bridges.selection import FLYTE2, AgentSourceSelection
from agent_operator.sdk import AgentLoadError
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flyte.connectors"
INSTALL_HINT = "pip install 'flyte-agent-operator[flyte2]'"


def sdk_available() -> bool:
    """Whether the Flyte 2 SDK (``flyte``) can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("flyte") is not None and importlib.util.find_spec("flyteidl2") is not None
    except (ImportError, ValueError):
        return False


def connector_entry_points() -> list[str]:
    """Names of installed ``flyte.connectors`` entry points, without loading them."""
    return sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def import_connectors(modules: Iterable[str] = ()) -> None:
    """Load the entry points and ``modules`` (their import registers the connectors)."""
    if not sdk_available():
        raise AgentLoadError(f"the Flyte 2 connector bridge needs the Flyte 2 SDK: {INSTALL_HINT}")
    from agent_operator.bridges.flyte2sdk._private import check_version

    try:
        check_version()
    except ImportError as e:
        raise AgentLoadError(str(e)) from None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - name the entry point that failed
            raise AgentLoadError(f"Flyte 2 connector entry point {ep.name!r} ({ep.value}): {type(e).__name__}: {e}") from e
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - name the module that failed
            raise AgentLoadError(f"--flyte2-module {module!r}: {type(e).__name__}: {e}") from e


_WRAPPERS: dict[tuple[int, str, int], Agent] = {}


def load_flyte2_agents(selection: AgentSourceSelection | None = None, modules: Iterable[str] = ()) -> list[Agent]:
    """Import the connectors and register a wrapper per task category; returns those now serving."""
    import_connectors(list(modules))
    from flyte.connectors import ConnectorRegistry

    from agent_operator.bridges.flyte2sdk._private import registered_categories
    from agent_operator.bridges.flyte2sdk.adapter import Flyte2AsyncAgent

    selection = selection or AgentSourceSelection()
    serving: list[Agent] = []
    for _name, task_type, version in registered_categories():
        connector = ConnectorRegistry.get_connector(task_type, version)
        key = (id(connector), task_type, version)
        agent = _WRAPPERS.get(key)
        if agent is None:
            agent = _WRAPPERS[key] = Flyte2AsyncAgent(connector, task_type, version)
        if selection.register(agent, FLYTE2):
            serving.append(agent)
    log.info("Flyte 2 connector bridge: %d connector categories found, %d serving", len(_WRAPPERS), len(serving))
    return serving
