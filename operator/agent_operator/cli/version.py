"""`agent-operator version`: print the operator, CRD and library versions."""

from __future__ import annotations

import argparse
from importlib import metadata

from agent_operator import __version__


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``version`` sub-command."""
    p = sub.add_parser("version", help="print versions of the operator and its libraries")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one ``name version`` line per component."""
    print(f"flyte-agent-operator {__version__}")
    print("crd flyteagents.dev/v1alpha1")
    for dist in ("kopf", "kubernetes", "flyteidl", "protobuf"):
        try:
            print(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pragma: no cover - broken install
            print(f"{dist} (not installed)")
    return 0
