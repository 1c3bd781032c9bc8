"""The shipped alert rules, checked and unit-tested by the real promtool (built from source).

``promtool check rules`` validates the rules extracted from manifests/monitoring/prometheusrule.yaml;
``promtool test rules`` runs tests/monitoring/alerts_test.yaml, which must hold a firing and a
not-firing case for every alert.  Every alert also needs a runbook section in docs/monitoring.md,
and the dashboard may only query metrics the operator exports.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_operator.observability import metrics
from agent_operator.testing.prometheus import promtool, rule_groups, write_rule_file

ROOT = Path(__file__).resolve().parents[2]
UNIT_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "monitoring.md"
DASHBOARD = ROOT / "manifests" / "monitoring" / "grafana-dashboard.json"


def alert_names() -> list[str]:
    return [r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r]


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rules")
    write_rule_file(directory / "agent-operator.rules.yaml")
    shutil.copy(UNIT_TESTS, directory / "alerts_test.yaml")
    return directory


def test_promtool_accepts_the_shipped_rules(rules_dir: Path) -> None:
    proc = promtool("check", "rules", "agent-operator.rules.yaml", cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout
    assert f"SUCCESS: {len(alert_names())} rules found" in proc.stdout, proc.stdout


def test_promtool_unit_tests_of_every_alert_pass(rules_dir: Path) -> None:
    proc = promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The harness can fail: a rule whose threshold moved makes the firing case fail."""
    groups = rule_groups()
    for rule in groups[0]["rules"]:
        if rule.get("alert") == "AgentOperatorAgentErrorRatio":
            rule["expr"] = rule["expr"].replace("> 0.25", "> 0.75")
    write_rule_file(tmp_path / "agent-operator.rules.yaml", groups)
    shutil.copy(UNIT_TESTS, tmp_path / "alerts_test.yaml")
    proc = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert proc.returncode != 0
    assert "AgentOperatorAgentErrorRatio" in proc.stdout, proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test") or []:
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for name in alert_names():
        assert cases.get(name) == {True, False}, f"{name}: needs a firing and a not-firing case, has {cases.get(name)}"


def test_every_alert_has_a_runbook_section() -> None:
    headings = {line[4:].strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("### ")}
    for group in rule_groups():
        for rule in group["rules"]:
            name = rule["alert"]
            assert name in headings, f"docs/monitoring.md lacks a '### {name}' runbook section"
            assert rule["annotations"]["runbook"] == f"docs/monitoring.md#{name.lower()}"
            assert rule["labels"]["severity"] in ("critical", "warning"), name


def test_rules_only_use_exported_metrics() -> None:
    exported = set(metrics.METRICS) | {"agent_operator_agent_call_duration_seconds_count"}
    for group in rule_groups():
        for rule in group["rules"]:
            used = set(re.findall(r"agent_operator_[a-z_]+", rule["expr"]))
            assert used and used <= exported, f"{rule['alert']}: unknown metrics {used - exported}"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets") or []]


def test_dashboard_panels_query_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert all(p.get("targets") for p in board["panels"] if p.get("type") != "row"), "a panel without a query"
    exported = set(metrics.METRICS) | {"agent_operator_agent_call_duration_seconds_bucket",
                                       "agent_operator_agent_call_duration_seconds_count"}
    for title, expr in dashboard_queries():
        used = set(re.findall(r"agent_operator_[a-z_]+", expr))
        assert used and used <= exported, f"panel {title!r}: unknown metrics {used - exported}"


def test_rules_command_prints_a_rule_file_promtool_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent_operator.testing.prometheus import main

    assert main(["rules"]) == 0
    (tmp_path / "agent-operator.rules.yaml").write_text(capsys.readouterr().out)
    proc = promtool("check", "rules", "agent-operator.rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
