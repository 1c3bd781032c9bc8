"""`agent-operator connectors` (alias `agents`): list the connectors this process can load, as the operator would.

flytekit 1.16 and Flyte 2 call them connectors; this project's SDK and older flytekit call them
agents.  Both command names work.

Loads agents exactly as ``run`` does (:mod:`agent_operator.cli.agent_sources`: entry
points, ``--agent`` specs, the flytekit bridge, remote agent services), then prints one
row per task category with the source serving it.  Useful to check
an image before deploying it: an agent missing here is an AgentTask failing with
``AgentNotFound`` later.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from agent_operator.bridges.selection import source_of
from agent_operator.cli import agent_sources
from agent_operator.sdk import AgentLoadError, AgentRegistry, SyncAgentBase


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``agents`` sub-command."""
    p = sub.add_parser(
        "connectors", aliases=["agents"],
        help="list the connectors (agents) that are loaded (entry points, --agent specs, flytekit, Flyte 2, "
        "remote services); `agents` is the same command",
    )
    agent_sources.add_arguments(p)
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table",
                   help="table (default), or json/yaml for scripts")
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
                "source": source_of(agent),
                "class": f"{cls.__module__}:{cls.__qualname__}",
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["TASK TYPE", "VERSION", "KIND", "SOURCE", "NAME", "CLASS"]
    data = [[r["taskType"], str(r["taskTypeVersion"]), r["kind"], r["source"], r["name"], r["class"]] for r in rows]
    widths = [max(len(row[i]) for row in [header, *data]) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *data]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load agents and print them; exit 2 (usage) naming the broken spec when one fails to load."""
    try:
        agent_sources.load(args)
    except (AgentLoadError, ValueError) as e:
        print(f"agent-operator {getattr(args, 'command', None) or 'connectors'}: {e}", file=sys.stderr)
        return 2
    try:
        rows = describe()
    finally:
        agent_sources.close()
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(rows, sort_keys=False), end="")
    elif rows:
        print(_table(rows))
    else:
        print("no connectors (agents) loaded", file=sys.stderr)
    return 0
