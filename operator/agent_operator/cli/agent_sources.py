"""Where a process gets its agents: one set of flags and one loading order for every command.

``run``, ``run-local``, ``agents`` and ``serve`` all call :func:`add_arguments` on their
parser, :func:`load` after parsing and :func:`close` on the way out, so an agent loads
the same way everywhere.  Sources, in loading order:

1. built-in: the ``agent_operator.agents`` entry points (unless ``--no-entry-points``)
   and ``--agent module:Class`` specs;
2. flytekit: agents/connectors in flytekit's registries (``--flytekit auto|on|off``,
   ``--flytekit-module``), see :mod:`agent_operator.bridges.flytekit`.  ``auto`` imports
   flytekit only when it can add something: an installed flytekit plugin (entry points of
   ``flytekit.plugins``, how ``flytekitplugins-*`` register connectors), a module to load, or
   a selection naming it.  flytekit alone brings only ``sensor`` and ``webhook``, which have
   built-in equivalents, and importing it costs about a second and ~45 MB per process;
3. flyte2: connectors written with the Flyte 2 SDK, in this process
   (``--flyte2-connectors auto|on|off``, ``--flyte2-module``), see
   :mod:`agent_operator.bridges.flyte2sdk`; ``auto`` loads it only for an installed
   ``flyte.connectors`` entry point, a module or a selection naming it;
4. remote: Flyte agent services over gRPC (``--remote-*`` flags or ``--remote-config``;
   ``--remote-protocol flyte2`` for Flyte 2 connector services), see
   :mod:`agent_operator.bridges.remote`.

When two sources claim one task type, ``--agent-source TYPE=SOURCE`` (or ``agentSources``
in the remote config file) picks one; without it the first loaded wins, so built-ins win
(see :mod:`agent_operator.bridges.selection`).  Errors are :class:`AgentLoadError` or
``ValueError`` subclasses whose message names the flag, spec or config field.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from agent_operator.bridges.flytekit.availability import (
    INSTALL_HINT,
    flytekit_available,
    flytekit_plugin_entry_points,
    missing_agent_hint,
)
from agent_operator.bridges.remote.cli import add_remote_agent_args, build_remote_config, start_remote_pool, stop_remote_agents
from agent_operator.bridges.selection import BUILTIN, FLYTEKIT, AgentSourceSelection, add_selection_arg
from agent_operator.sdk import AgentLoadError, AgentRegistry, TaskCategory, load_agents

log = logging.getLogger(__name__)

#: environment variable giving the default of ``--flytekit``
FLYTEKIT_ENV = "AGENT_OPERATOR_FLYTEKIT"
FLYTEKIT_MODES = ("auto", "on", "off")

#: whether this process loaded the flytekit bridge (read by the "not found" hint)
_state: dict[str, Any] = {"flytekit": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every agent-source flag to ``parser``."""
    g = parser.add_argument_group("agents")
    g.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="also load this agent (a class or an instance); repeatable",
    )
    g.add_argument(
        "--no-entry-points",
        action="store_true",
        help="do not load agents from the 'agent_operator.agents' entry points",
    )
    add_selection_arg(g)
    default_mode = os.environ.get(FLYTEKIT_ENV, "auto")
    f = parser.add_argument_group("flytekit agents/connectors (in-process bridge)")
    f.add_argument(
        "--flytekit",
        choices=FLYTEKIT_MODES,
        default=default_mode if default_mode in FLYTEKIT_MODES else "auto",
        help=f"serve agents/connectors registered with flytekit: auto = when flytekit is installed and a "
        f"flytekit plugin, --flytekit-module or --agent-source ...=flytekit needs it; on = always (fails "
        f"without flytekit); off = never (env {FLYTEKIT_ENV}; default auto)",
    )
    f.add_argument(
        "--flytekit-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module so its flytekit connectors register (like `pyflyte serve connector "
        "--modules`); implies --flytekit on; repeatable",
    )
    g2 = parser.add_argument_group("Flyte 2 connectors (in-process bridge, extra [flyte2])")
    g2.add_argument(
        "--flyte2-connectors",
        choices=FLYTEKIT_MODES,
        default="auto",
        help="serve connectors written with the Flyte 2 SDK (flyte.connectors) in this process: auto = when a "
        "'flyte.connectors' entry point, --flyte2-module or --agent-source ...=flyte2 needs it; on = always; "
        "off = never",
    )
    g2.add_argument("--flyte2-module", action="append", default=[], metavar="MODULE",
                    help="import this module so its Flyte 2 connectors register (like `c0 --modules`); repeatable")
    add_remote_agent_args(parser)


def _load_flyte2(args: argparse.Namespace, selection: AgentSourceSelection) -> None:
    """The in-process Flyte 2 connector bridge, when asked for or when a connector package is installed."""
    from agent_operator.bridges.flyte2sdk import FLYTE2, INSTALL_HINT, connector_entry_points, sdk_available

    mode = getattr(args, "flyte2_connectors", "auto")
    modules = getattr(args, "flyte2_module", []) or []
    wanted = mode == "on" or bool(modules) or any(v == FLYTE2 for v in selection.choices.values())
    if wanted and mode == "off":
        raise AgentLoadError("--flyte2-module / --agent-source ...=flyte2 need the Flyte 2 bridge, but "
                             "--flyte2-connectors is off")
    if mode == "on" or (mode == "auto" and (wanted or (sdk_available() and connector_entry_points()))):
        if not sdk_available():
            raise AgentLoadError(f"the Flyte 2 connector bridge was requested but the Flyte 2 SDK is not installed: "
                                 f"{INSTALL_HINT}")
        from agent_operator.bridges.flyte2sdk import load_flyte2_agents

        load_flyte2_agents(selection, modules)


def _flytekit_hint(category: TaskCategory) -> str | None:
    return missing_agent_hint(category, bridge_enabled=bool(_state["flytekit"]))


def _drop_unselected_builtins(selection: AgentSourceSelection) -> None:
    """A task type handed to another source by configuration is not served by a built-in."""
    for agent in AgentRegistry.agents():
        category = agent.task_category
        if not selection.admits(category, BUILTIN):
            AgentRegistry.unregister(category.name, category.version)
            log.info("task type %s: built-in agent %r not used (selected source: %s)",
                     category, agent.name, selection.chosen(category))


def load(args: argparse.Namespace) -> None:
    """Fill the AgentRegistry from every configured source (see the module docstring).

    Remote configuration is read and checked before anything is imported, so a bad file
    fails fast; remote discovery keeps running in the background until :func:`close`.
    """
    remote_config = build_remote_config(args)
    selection = AgentSourceSelection.parse(getattr(args, "agent_source", []) or [], remote_config.agent_sources)
    AgentRegistry.add_not_found_hint(_flytekit_hint)
    _state["flytekit"] = False

    load_agents(getattr(args, "agent", []) or [], entry_points=not getattr(args, "no_entry_points", False))
    _drop_unselected_builtins(selection)

    mode = getattr(args, "flytekit", "auto")
    modules = getattr(args, "flytekit_module", []) or []
    wanted = mode == "on" or bool(modules) or any(v == FLYTEKIT for v in selection.choices.values())
    if wanted and mode == "off":
        raise AgentLoadError("--flytekit-module / --agent-source ...=flytekit need the flytekit bridge, "
                             "but --flytekit is off")
    plugins = flytekit_plugin_entry_points() if mode == "auto" and flytekit_available() else []
    if mode == "on" or (mode == "auto" and (wanted or plugins)):
        if not flytekit_available():
            raise AgentLoadError(f"the flytekit bridge was requested but flytekit is not installed: {INSTALL_HINT}")
        from agent_operator.bridges.flytekit.loader import load_flytekit_agents

        load_flytekit_agents(selection, modules)
        _state["flytekit"] = True
    elif mode == "auto" and not flytekit_available():
        log.info("flytekit is not installed: flytekit agents/connectors are not served (%s)", INSTALL_HINT)
    elif mode == "auto":
        log.info("flytekit bridge not loaded: no flytekit plugin is installed and nothing selects it "
                 "(flytekit's own sensor/webhook connectors have built-in equivalents; --flytekit on loads it anyway)")

    _load_flyte2(args, selection)
    start_remote_pool(remote_config, selection)


def close() -> None:
    """Stop background remote discovery (call on shutdown; safe to call twice)."""
    stop_remote_agents()
