"""`connectors` / `agents` and `serve connector` / `serve agent` are the same commands (flytekit 1.16
and Flyte 2 say connector; older scripts say agent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("agent-operator")


def _json(*argv: str) -> object:
    return json.loads(subprocess.run([str(EXE), *argv], check=True, capture_output=True, text=True).stdout)


def test_connectors_and_agents_list_the_same() -> None:
    rows = _json("connectors", "--flytekit", "off", "-o", "json")
    assert rows == _json("agents", "--flytekit", "off", "-o", "json")
    assert {r["taskType"] for r in rows} >= {"sensor", "webhook"}  # type: ignore[union-attr,index]


def test_serve_takes_connector_or_agent_and_refuses_anything_else() -> None:
    for what in ("connector", "agent"):
        help_text = subprocess.run([str(EXE), "serve", what, "--help"], check=True, capture_output=True, text=True)
        assert "--flyte2-service" in help_text.stdout
    bad = subprocess.run([str(EXE), "serve", "worker"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'worker'" in bad.stderr
