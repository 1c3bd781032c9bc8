"""Test configuration: the real local control plane fixtures come from the project's plugin."""

from __future__ import annotations

import sys
from typing import Any

pytest_plugins = ["agent_operator.testing.pytest_plugin"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the chaos suite's table (tasks, kills, lost, duplicates, orphans, ...) when it ran."""
    support = sys.modules.get("chaos_support")
    lines = support.summary_lines() if support is not None else []
    if lines:
        terminalreporter.section("chaos summary")
        for line in lines:
            terminalreporter.write_line(line)
