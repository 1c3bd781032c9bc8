"""A real Prometheus (built from source) scrapes a real operator on loopback.

An agent outage makes ``AgentOperatorAgentErrorRatio`` go pending, then firing, from the
operator's real series; every query of the Grafana dashboard is evaluated on the same
Prometheus and must answer without error and with at least one series.  The rules are the
shipped ones with each ``for`` cut to a few seconds (the 10-minute hold is promtool's to test).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.testing.prometheus import PrometheusServer, rule_groups, write_rule_file
from operator_fixtures import Env, crd, make_env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "manifests" / "monitoring" / "grafana-dashboard.json"
HOLD = "8s"


def fast_rules(directory: Path) -> Path:
    """The shipped rules with every ``for`` set to :data:`HOLD`."""
    groups = copy.deepcopy(rule_groups())
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = HOLD
    return write_rule_file(directory / "agent-operator.rules.yaml", groups)


@pytest.fixture
def watched(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
            tmp_path: Path) -> Iterator[tuple[Env, PrometheusServer]]:
    """An operator for ``namespace`` and a Prometheus scraping its /metrics every second."""
    for env in make_env(request, control_plane, namespace, tmp_path):
        prom = PrometheusServer([f"127.0.0.1:{env.operator.health_port}"],
                                rule_files=[fast_rules(tmp_path)], workdir=tmp_path / "prometheus")
        with prom:
            yield env, prom


def wait_for(what: str, pred: Any, prom: PrometheusServer, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s; alerts: {prom.alerts()}\n"
                                 f"prometheus log:\n{prom.logs()[-3000:]}")
        time.sleep(0.3)


def alert_states(prom: PrometheusServer, name: str) -> dict[str, str]:
    """``{agent label: state}`` of the active alerts called ``name``."""
    return {a["labels"].get("agent", ""): a["state"] for a in prom.alerts() if a["labels"]["alertname"] == name}


def test_an_agent_outage_takes_the_error_ratio_alert_to_firing(watched: tuple[Env, PrometheusServer],
                                                               tmp_path: Path) -> None:
    env, prom = watched
    wait_for("the operator scraped", lambda: prom.target_health() == ["up"], prom)
    env.apply("healthy", task_template("test-async", phases=["RUNNING", "SUCCEEDED"]), pollInterval="1s")
    env.wait_phase("healthy", "Succeeded")
    calls = wait_for("the healthy calls scraped",
                     lambda: prom.query("sum by (agent) (agent_operator_agent_call_duration_seconds_count) >= 2"),
                     prom)
    assert len(calls) == 1, calls
    agent = calls[0]["metric"]["agent"]  # the test agent's registered name
    assert prom.query("sum by (agent) (rate(agent_operator_agent_errors_total[5m]))") == []
    assert alert_states(prom, "AgentOperatorAgentErrorRatio") == {}

    outage = tmp_path / "outage"
    outage.touch()  # every call of a task naming this file raises TransientAgentError
    env.apply("broken", task_template("test-async", outageFile=str(outage)), pollInterval="1s")
    states: list[str] = []

    def seen(state: str) -> bool:
        current = alert_states(prom, "AgentOperatorAgentErrorRatio")
        if current:
            assert set(current) == {agent}, current
            states.append(current[agent])
        return state in states

    wait_for("AgentOperatorAgentErrorRatio pending", lambda: seen("pending"), prom)
    wait_for("AgentOperatorAgentErrorRatio firing", lambda: seen("firing"), prom)
    assert states.index("pending") < states.index("firing")
    ratio = prom.query(f'sum by (agent) (rate(agent_operator_agent_errors_total{{agent="{agent}"}}[5m])) '
                       '/ sum by (agent) (rate(agent_operator_agent_call_duration_seconds_count[5m]))')
    assert float(ratio[0]["value"][1]) > 0.25
    # nothing else is wrong with this operator, so nothing else is active
    active = {a["labels"]["alertname"] for a in prom.alerts()}
    assert active == {"AgentOperatorAgentErrorRatio"}, prom.alerts()

    # every dashboard query answers with series while tasks, errors and retries happened
    board = json.loads(DASHBOARD.read_text())
    empty = []
    for panel in board["panels"]:
        for target in panel.get("targets") or []:
            if not prom.query(target["expr"]):  # a PromQL error raises PrometheusError here
                empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, f"dashboard queries without series: {empty}"

    # the runbook's listing of tasks with phase and reason (docs/monitoring.md, TasksStalled)
    listing = env.kubectl("get", "agenttasks", "-A", "-o", "custom-columns=NS:.metadata.namespace,"
                          "NAME:.metadata.name,PHASE:.status.phase,REASON:.status.reason").stdout
    rows = {tuple(line.split()[:3]) for line in listing.splitlines()[1:]}
    assert (env.namespace, "healthy", "Succeeded") in rows, listing
    assert any(r[:2] == (env.namespace, "broken") for r in rows), listing

    outage.unlink()  # the agent recovers: the task finishes and the ratio drains
    env.wait_phase("broken", "Succeeded", timeout=120)
