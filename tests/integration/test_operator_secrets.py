"""spec.secretRefs: Secret data reaches the agent, never status, Events or the operator log;
a missing Secret is retried with a message naming it."""

from __future__ import annotations

import json

import pytest

from operator_fixtures import Env, crd, env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster

TOKEN = "tok-5f3a9c1e-very-secret"


def _secret(env: Env, name: str) -> None:
    env.kubectl("-n", env.namespace, "create", "secret", "generic", name, f"--from-literal=token={TOKEN}")


def test_secret_reaches_agent_and_is_scrubbed_everywhere(env: Env) -> None:
    _secret(env, "creds")
    env.apply("uses-secret", task_template("test-instant", leakSecret="creds/token"),
              secretRefs=[{"name": "creds"}], pollInterval="1s")
    status = env.wait_phase("uses-secret", "Succeeded")
    uid = env.uid("uses-secret")
    assert env.ledger.calls(uid, "create")[0].detail["secrets"] == ["creds"]
    assert "***" in status["message"]
    obj = json.dumps(env.get("uses-secret"))
    events = json.dumps(env.events("uses-secret"))
    assert TOKEN not in obj and TOKEN not in events and TOKEN not in env.operator.logs()


def test_missing_secret_is_retried_until_it_exists(env: Env) -> None:
    env.apply("waits", task_template("test-instant"), secretRefs=[{"name": "later"}], pollInterval="1s")
    status = env.wait("waiting for the Secret",
                      lambda: "later" in (s := env.status("waits")).get("message", "") and s)
    # from the same snapshot: Reconciling=True while under the transient budget, Stalled=True
    # once over it (present only while true); a second read raced the operator's retries
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    assert conditions.get("Reconciling") == "True" or conditions.get("Stalled") == "True", conditions
    assert status.get("transientFailures", 0) >= 1
    _secret(env, "later")
    env.wait_phase("waits", "Succeeded", timeout=90)
