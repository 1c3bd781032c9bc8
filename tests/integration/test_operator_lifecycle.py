"""AgentTask lifecycles through the real operator process, real API server and real kubectl:
happy paths, kubectl wait, intra-phase changes, retries, timeouts and user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent_operator.controller.cache import LAST_APPLIED
from operator_fixtures import Env, crd, env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster


def test_async_task_succeeds_and_kubectl_wait_sees_it(env: Env) -> None:
    env.apply("job", task_template("test-async", phases=["QUEUED", "RUNNING", "SUCCEEDED"],
                                   outputValues={"answer": 42}), pollInterval="1s")
    env.kubectl("-n", env.namespace, "wait", "--for=condition=Succeeded", "agenttask/job", "--timeout=60s")
    status = env.status("job")
    assert status["phase"] == "Succeeded" and status["outputs"] == {"answer": 42}
    assert status["agent"]["taskType"] == "test-async" and status["attempt"] == 1
    assert env.condition("job", "Ready")["status"] == "True"
    assert env.ledger.count("create", env.uid("job")) == 1
    table = env.kubectl("-n", env.namespace, "get", "at").stdout
    assert "job" in table and "Succeeded" in table


def test_kubectl_apply_bookkeeping_outlives_the_operators_writes(env: Env) -> None:
    """The operator drops kubectl's last-applied annotation from its cache only: on the
    object it stays, so later ``kubectl apply`` runs still merge three ways (a label applied
    and then left out of the manifest goes away) and the finished task does not run again."""
    env.apply("kept", task_template("test-async", phases=["QUEUED", "SUCCEEDED"]), pollInterval="1s")
    applied = env.get("kept")["metadata"]["annotations"][LAST_APPLIED]
    env.wait_phase("kept", "Succeeded")
    assert env.get("kept")["metadata"]["annotations"][LAST_APPLIED] == applied
    manifest = json.loads(applied)
    labelled = dict(manifest, metadata=dict(manifest["metadata"], labels={"team": "data"}))
    env.kubectl("apply", "-f", "-", input=json.dumps(labelled))
    assert env.get("kept")["metadata"].get("labels") == {"team": "data"}
    env.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    assert not env.get("kept")["metadata"].get("labels")
    assert env.status("kept")["phase"] == "Succeeded" and env.ledger.count("create", env.uid("kept")) == 1


def test_sync_task_succeeds_with_one_do(env: Env) -> None:
    env.apply("quick", task_template("test-sync", outputValues={"greeting": "hi"}))
    status = env.wait_phase("quick", "Succeeded")
    assert status["outputs"] == {"greeting": "hi"} and status["agent"]["sync"] is True
    assert env.ledger.count("do", env.uid("quick")) == 1
    assert not env.get("quick")["metadata"].get("finalizers")


def test_log_link_change_inside_running_reaches_status(env: Env) -> None:
    steps = [{"phase": "RUNNING", "logLinks": [{"name": "log", "uri": "http://logs/v1"}]}] * 2 + \
            [{"phase": "RUNNING", "logLinks": [{"name": "log", "uri": "http://logs/v2"}]}] * 30
    env.apply("links", task_template("test-async", phases=[*steps, "SUCCEEDED"]), pollInterval="1s")
    env.wait("first log link", lambda: env.status("links").get("logLinks") == [{"name": "log", "uri": "http://logs/v1"}])
    env.wait("changed log link", lambda: env.status("links").get("logLinks") == [{"name": "log", "uri": "http://logs/v2"}])
    assert env.status("links")["phase"] == "Running"


def test_retryable_failure_runs_a_new_attempt_with_a_new_key(env: Env) -> None:
    env.apply("retry", task_template("test-async", phases=["RUNNING", "SUCCEEDED"], retryableFailures=1),
              maxAttempts=3, pollInterval="1s")
    status = env.wait_phase("retry", "Succeeded", timeout=90)
    uid = env.uid("retry")
    assert status["attempt"] == 2
    assert [c.key for c in env.ledger.calls(uid, "create")] == [f"{uid}-1", f"{uid}-2"]
    assert any(e["reason"] == "Retrying" for e in env.events("retry"))


def test_retryable_failures_beyond_max_attempts_fail(env: Env) -> None:
    env.apply("exhaust", task_template("test-async", phases=["SUCCEEDED"], retryableFailures=9), maxAttempts=2,
              pollInterval="1s")
    status = env.wait_phase("exhaust", "Failed", timeout=90)
    assert status["reason"] == "AttemptsExhausted" and status["attempt"] == 2
    assert env.condition("exhaust", "Stalled")["status"] == "True"


def test_timeout_deletes_the_job_and_ends_timed_out(env: Env) -> None:
    env.apply("slow", task_template("test-async", phases=["RUNNING"]), timeout="3s", pollInterval="1s")
    status = env.wait_phase("slow", "TimedOut", timeout=60)
    assert "spec.timeout" in status["message"]
    assert env.ledger.count("delete", env.uid("slow")) == 1
    assert env.condition("slow", "Stalled")["status"] == "True"


def test_unknown_task_type_fails_listing_registered_types(env: Env) -> None:
    tmpl = task_template("test-async")
    tmpl["type"] = "no-such-agent"
    env.apply("unknown", tmpl)
    status = env.wait_phase("unknown", "Failed")
    assert status["reason"] == "AgentNotFound"
    assert "no-such-agent" in status["message"] and "test-async" in status["message"]


def test_malformed_template_fails_naming_the_field(env: Env) -> None:
    env.apply("broken", {"type": "test-async", "interface": {"inputs": {"variables": {"x": {"type": 5}}}}})
    status = env.wait_phase("broken", "Failed")
    assert status["reason"] == "InvalidSpec" and "spec.taskTemplate" in status["message"]


def test_agent_exception_fails_with_its_message(env: Env) -> None:
    env.apply("boom", task_template("test-async", errors={"create": {"kind": "permanent"}}))
    status = env.wait_phase("boom", "Failed")
    assert status["reason"] == "AgentError" and "injected permanent create error" in status["message"]


def test_transient_errors_are_retried_then_succeed(env: Env) -> None:
    env.apply("flaky", task_template("test-async", phases=["SUCCEEDED"], errors={"get": {"times": 2}}),
              pollInterval="1s")
    env.wait_phase("flaky", "Succeeded", timeout=60)
    assert env.ledger.count("get", env.uid("flaky")) == 3


def test_builtin_sensor_succeeds_when_the_file_appears(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "signal.txt"
    tmpl = {
        "id": {"resourceType": "TASK", "name": "sensor"}, "type": "sensor",
        "interface": {"inputs": {"variables": {"path": {"type": {"simple": "STRING"}}}}},
        "custom": {"sensor_module": "flytekit.sensor.file_sensor", "sensor_name": "FileSensor"},
    }
    env.apply("sensor", tmpl, inputs={"path": str(target)}, pollInterval="1s")
    env.wait("sensor running", lambda: env.status("sensor").get("phase") == "Running")
    target.write_text("here")
    status = env.wait_phase("sensor", "Succeeded")
    assert str(target) in status["message"]


def test_builtin_webhook_calls_a_local_server(env: Env) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from agent_http_server import serve

    routes = {("POST", "/hook"): lambda rec: (200, {"Content-Type": "application/json"}, b'{"ok": true}')}
    with serve(routes) as server:
        tmpl = {
            "id": {"resourceType": "TASK", "name": "hook"}, "type": "webhook",
            "interface": {"outputs": {"variables": {"info": {"type": {"simple": "STRUCT"}}}}},
            "custom": {"url": f"{server.base}/hook", "method": "POST", "data": {"hello": "world"}, "timeout_sec": 5},
        }
        env.apply("hook", tmpl)
        status = env.wait_phase("hook", "Succeeded", "Failed")
        assert status["phase"] == "Succeeded", status
        assert status["outputs"]["info"]["status_code"] == 200
        assert any(r.path.startswith("/hook") for r in server.requests)


def test_large_outputs_go_to_output_prefix_not_status(env: Env, tmp_path: Path) -> None:
    from flyteidl.core import literals_pb2

    env.apply("big", task_template("test-instant", outputBytes=100_000), outputPrefix=str(tmp_path / "out"),
              pollInterval="1s")
    status = env.wait_phase("big", "Succeeded")
    assert "outputs" not in status and status["outputsRef"] == str(tmp_path / "out" / "outputs.pb")
    lm = literals_pb2.LiteralMap()
    lm.ParseFromString((tmp_path / "out" / "outputs.pb").read_bytes())
    assert len(lm.literals["blob"].scalar.primitive.string_value) == 100_000


def test_operator_stops_cleanly_on_sigterm(env: Env) -> None:
    env.apply("running", task_template("test-async", phases=["RUNNING"]), pollInterval="1s")
    env.wait_phase("running", "Running")
    assert env.operator.stop(timeout=15) == 0
    env.operator.restart()
    env.wait("polled again after restart", lambda: env.ledger.count("get", env.uid("running")) >= 3)
    assert env.ledger.count("create", env.uid("running")) == 1


def test_slow_sync_task_shows_running_then_succeeds(env: Env) -> None:
    env.apply("slowsync", task_template("test-sync", runSeconds=6))
    env.wait("Running while do works", lambda: env.status("slowsync").get("phase") == "Running", timeout=30)
    env.wait_phase("slowsync", "Succeeded", timeout=60)
