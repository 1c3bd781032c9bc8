"""Metrics, health endpoint and structured logs of the operator (no cluster needed)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from prometheus_client import REGISTRY

from agent_operator.observability import health, metrics
from agent_operator.observability import logging as olog


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_agent_call_records_latency_and_error_kind() -> None:
    before = sample("agent_operator_agent_call_duration_seconds_count", agent="m1", method="get") or 0
    metrics.observe_agent_call("m1", "get", 0.02, None)
    metrics.observe_agent_call("m1", "get", 0.5, "transient")
    metrics.observe_agent_call("m1", "get", 0.5, "weird")
    assert sample("agent_operator_agent_call_duration_seconds_count", agent="m1", method="get") == before + 3
    assert sample("agent_operator_agent_errors_total", agent="m1", method="get", kind="transient") == 1
    assert sample("agent_operator_agent_errors_total", agent="m1", method="get", kind="other") == 1
    assert sample("agent_operator_agent_errors_total", agent="m1", method="get", kind="permanent") is None


def test_tasks_by_phase_drains_to_zero_instead_of_vanishing() -> None:
    metrics.set_tasks_by_phase({("m2", "Running"): 3, ("m2", "Pending"): 1})
    metrics.set_tasks_by_phase({("m2", "Succeeded"): 4})
    assert sample("agent_operator_tasks", agent="m2", phase="Running") == 0
    assert sample("agent_operator_tasks", agent="m2", phase="Succeeded") == 4


def test_counters_and_gauges_have_the_documented_labels() -> None:
    metrics.record_transition("m3", "Succeeded")
    metrics.record_retry("m3", "TransientAgentError")
    metrics.record_api_write("patch", "agenttasks/status")
    metrics.set_queue_depth(7)
    metrics.set_leader(True)
    assert sample("agent_operator_task_transitions_total", agent="m3", phase="Succeeded") == 1
    assert sample("agent_operator_retries_total", agent="m3", reason="TransientAgentError") == 1
    assert (sample("agent_operator_api_writes_total", verb="patch", resource="agenttasks/status") or 0) >= 1
    assert sample("agent_operator_reconcile_queue_depth") == 7
    assert sample("agent_operator_leader") == 1


def test_metric_names_listed_in_metrics_are_all_exported() -> None:
    body, _ = metrics.render()
    text = body.decode()
    for name in metrics.METRICS:
        assert f"# TYPE {name.removesuffix('_info')}" in text or f"# TYPE {name}" in text, name


@pytest.fixture
def server() -> Iterator[tuple[health.HealthServer, dict[str, bool]]]:
    state = {"ready": False, "live": True}
    srv = health.start_http_server(0, lambda: state["ready"], live=lambda: state["live"], host="127.0.0.1")
    try:
        yield srv, state
    finally:
        srv.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readyz_follows_the_ready_callback(server: tuple[health.HealthServer, dict[str, bool]]) -> None:
    srv, state = server
    assert get(srv.url + "/readyz")[0] == 503
    state["ready"] = True
    assert get(srv.url + "/readyz") == (200, "ok\n")
    assert get(srv.url + "/healthz") == (200, "ok\n")


def test_healthz_fails_when_live_check_fails_or_raises(server: tuple[health.HealthServer, dict[str, bool]]) -> None:
    srv, state = server
    state["live"] = False
    assert get(srv.url + "/healthz")[0] == 503
    del state["live"]  # the callback now raises KeyError
    assert get(srv.url + "/healthz")[0] == 503


def test_metrics_endpoint_serves_prometheus_text(server: tuple[health.HealthServer, dict[str, bool]]) -> None:
    srv, _ = server
    metrics.record_api_write("create", "events")
    status, body = get(srv.url + "/metrics")
    assert status == 200
    assert 'agent_operator_api_writes_total{resource="events",verb="create"}' in body
    assert get(srv.url + "/nope")[0] == 404


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = olog.configure("json", stream=buf)
    try:
        yield buf
    finally:
        logging.getLogger().removeHandler(handler)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_task_identity_from_context_and_spawned_tasks(json_log: io.StringIO) -> None:
    logger = logging.getLogger("agent_operator.test")

    async def agent_call() -> None:
        logger.info("inside a spawned task")

    async def reconcile() -> None:
        with olog.task_context("ns1", "task-a", "uid-1"):
            logger.info("reconciling %s", "task-a", extra={"attempt": 2})
            await asyncio.ensure_future(agent_call())
        logger.info("outside")

    asyncio.run(reconcile())
    out = lines(json_log)
    assert [(o["namespace"], o["name"], o["uid"]) for o in out] == [
        ("ns1", "task-a", "uid-1"), ("ns1", "task-a", "uid-1"), (None, None, None)]
    assert out[0]["message"] == "reconciling task-a" and out[0]["attempt"] == 2
    assert out[0]["level"] == "info" and out[0]["logger"] == "agent_operator.test"


def test_json_lines_take_identity_from_kopf_object_logger(json_log: io.StringIO) -> None:
    ref = {"apiVersion": "flyteagents.dev/v1alpha1", "kind": "AgentTask",
           "namespace": "ns2", "name": "task-b", "uid": "uid-2"}
    logging.getLogger("kopf.objects").warning("handler failed", extra={"k8s_ref": ref, "k8s_skip": True})
    (out,) = lines(json_log)
    assert (out["namespace"], out["name"], out["uid"]) == ("ns2", "task-b", "uid-2")
    assert "k8s_ref" not in out and out["level"] == "warning"


def test_json_lines_include_exceptions(json_log: io.StringIO) -> None:
    try:
        raise RuntimeError("agent exploded")
    except RuntimeError:
        logging.getLogger("x").exception("call failed")
    (out,) = lines(json_log)
    assert "RuntimeError: agent exploded" in str(out["exception"])


def test_text_format_prefixes_task_and_unknown_format_is_refused() -> None:
    buf = io.StringIO()
    handler = olog.configure("text", stream=buf)
    try:
        with olog.task_context("ns3", "task-c"):
            logging.getLogger("t").info("hello")
    finally:
        logging.getLogger().removeHandler(handler)
    assert buf.getvalue().rstrip().endswith("t: [ns3/task-c] hello")
    with pytest.raises(ValueError, match="json"):
        olog.configure("xml")


def test_metrics_reference_lists_every_metric() -> None:
    from pathlib import Path

    monitoring = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    section = monitoring[monitoring.index("## Metrics reference"):]
    for name in metrics.METRICS:
        assert f"`{name}`" in section, name


def test_build_info_carries_the_installed_version() -> None:
    from importlib.metadata import version

    body, _ = metrics.render()
    assert f'agent_operator_build_info{{version="{version("flyte-agent-operator")}"}} 1.0' in body.decode()
