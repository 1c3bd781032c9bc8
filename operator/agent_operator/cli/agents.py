"""`agent-operator agents`: list the agents this process can load, as the operator would.

Loads built-in and installed agents from the ``agent_operator.agents`` entry points plus
``--agent module:Class`` specs, then prints one row per task category.  Useful to check
an image before deploying it: an agent missing here is an AgentTask failing with
``AgentNotFound`` later.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from agent_operator.sdk import AgentLoadError, AgentRegistry, SyncAgentBase, load_agents


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``agents`` sub-command."""
    p = sub.add_parser("agents", help="list the agents that are loaded (entry points and --agent specs)")
    p.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="also load this agent (a class or an instance); repeatable",
    )
    p.add_argument(
        "--no-entry-points",
        action="store_true",
        help="do not load agents from the 'agent_operator.agents' entry points",
    )
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=run)


def describe() -> list[dict[str, Any]]:
    """One record per registered task category, sorted by category."""
    rows = []
    for agent in AgentRegistry.agents():
        cls = type(agent)
        rows.append(
            {
                "name": agent.name,
                "taskType": agent.task_category.name,
                "taskTypeVersion": agent.task_category.version,
                "kind": "sync" if isinstance(agent, SyncAgentBase) else "async",
                "class": f"{cls.__module__}:{cls.__qualname__}",
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["TASK TYPE", "VERSION", "KIND", "NAME", "CLASS"]
    data = [[r["taskType"], str(r["taskTypeVersion"]), r["kind"], r["name"], r["class"]] for r in rows]
    widths = [max(len(row[i]) for row in [header, *data]) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *data]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load agents and print them; exit 1 naming the broken spec when one fails to load."""
    try:
        load_agents(args.agent, entry_points=not args.no_entry_points)
    except (AgentLoadError, ValueError) as e:
        print(f"agent-operator agents: {e}", file=sys.stderr)
        return 1
    rows = describe()
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(rows, sort_keys=False), end="")
    elif rows:
        print(_table(rows))
    else:
        print("no agents loaded", file=sys.stderr)
    return 0
