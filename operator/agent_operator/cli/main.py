"""Entry point of the `agent-operator` console script.

Each sub-command lives in its own module under ``agent_operator.cli`` and exposes
``register(subparsers)`` which adds its parser and sets ``func`` on it.  Modules are
imported lazily by name so that a missing optional dependency of one command never
breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import Sequence

from agent_operator import __version__

#: reStructuredText in docstrings (``code``, :mod:`x`) that --help shows as plain text
_RST_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj|ref|py:[a-z]+):`~?([^`]+)`")
_RST_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str | None) -> str | None:
    """``text`` without Sphinx markup: ``:mod:`a.b``` and ````x```` become ```a.b``` and ```x```."""
    if text is None:
        return None
    return _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(r"`\1`", text))

#: sub-command modules, in the order ``--help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "agent_operator.cli.version",
    "agent_operator.cli.run",
    "agent_operator.cli.run_local",
    "agent_operator.cli.agents",
    "agent_operator.cli.render",
    "agent_operator.cli.validate",
    "agent_operator.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="agent-operator",
        description="Run Flyte agents as Kubernetes controllers (AgentTask custom resources).",
        epilog="Exit codes: 0 success, 1 invalid input (or a task that did not succeed), 2 usage. "
               "`agent-operator COMMAND --help` explains a command; docs/cli.md has examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit (`agent-operator version` lists the libraries too)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    for command in sub.choices.values():
        # module docstrings double as descriptions: show them without their Sphinx markup
        command.description = plain_text(command.description)
        for action in command._actions:
            action.help = plain_text(action.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
