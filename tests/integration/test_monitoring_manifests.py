"""The optional manifests/monitoring kustomization renders with the real kubectl, and its
ServiceMonitor selects the base install's metrics Service.  (The Prometheus Operator's CRDs are
not available here, so the objects are rendered, not applied; the rules themselves are checked
by promtool in tests/unit/test_monitoring_rules.py.)"""

from __future__ import annotations

import json

import pytest

from agent_operator.testing.prometheus import rule_groups
from deploy_support import MANIFESTS, Kubectl, one, render

pytestmark = pytest.mark.cluster


def test_monitoring_overlay_renders_a_servicemonitor_for_the_metrics_service(kubectl: Kubectl) -> None:
    objs = render(kubectl, MANIFESTS / "monitoring")
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    assert {o["metadata"]["namespace"] for o in objs} == {"flyte-agent-operator"}
    monitor = one(objs, "ServiceMonitor")
    service = one(render(kubectl, MANIFESTS / "base"), "Service", "agent-operator-metrics")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), (selector, service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert one(objs, "PrometheusRule")["spec"]["groups"] == rule_groups()


def test_monitoring_overlay_ships_the_dashboard_for_the_grafana_sidecar(kubectl: Kubectl) -> None:
    dashboard = one(render(kubectl, MANIFESTS / "monitoring"), "ConfigMap", "agent-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((MANIFESTS / "monitoring" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["grafana-dashboard.json"]) == shipped
