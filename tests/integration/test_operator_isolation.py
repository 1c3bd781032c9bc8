"""One hung agent cannot starve the others: plain agent methods run on one thread pool per
task type, so calls that outlive --call-timeout only use up their own agent's threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_fixtures import Env, crd, make_env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster


@pytest.fixture
def tight(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str, tmp_path: Path) -> Iterator[Env]:
    """An operator with few threads and a 1 s bound on agent calls."""
    yield from make_env(request, control_plane, namespace, tmp_path, extra_args=(
        "--call-timeout", "1", "--max-concurrency", "8", "--per-agent-concurrency", "2"))


def test_hung_agent_does_not_starve_other_agents(tight: Env) -> None:
    env = tight
    for i in range(4):
        env.apply(f"hung{i}", task_template("test-async", phases=["RUNNING"], hang="get", hangSeconds=600),
                  pollInterval="1s")
    # every timed-out get leaves a thread behind (hung for 10 min) until the agent's pool is full
    env.wait("hung gets piling up", lambda: env.ledger.count("get") >= 4, timeout=90)
    for i in range(3):
        env.apply(f"fine{i}", task_template("test-instant"), pollInterval="1s")
    for i in range(3):
        env.wait_phase(f"fine{i}", "Succeeded", timeout=30)
    status = env.status("hung0")
    assert status["phase"] == "Queued" and status["reason"] == "AgentUnavailable"
    assert "did not answer in time" in status["message"]
