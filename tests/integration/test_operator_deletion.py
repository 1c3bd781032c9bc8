"""Deletion, crashes and tampering through the real operator process and real kubectl:
the finalizer calls the agent's delete exactly once, Orphan leaves the job, namespaces
finish deleting, a SIGKILLed operator never creates a job twice, a forged resourceMeta is
never handed to an agent."""

from __future__ import annotations

import base64
import json

import pytest

from operator_fixtures import Env, crd, env, task_template  # noqa: F401 - fixtures

from agent_operator.crd.names import ANNOTATION_CREATE_PENDING, ANNOTATION_SKIP_AGENT_DELETE, FINALIZER

pytestmark = pytest.mark.cluster


def _running(env: Env, name: str, **config: object) -> str:
    env.apply(name, task_template("test-async", phases=["RUNNING"], **config), pollInterval="1s")
    env.wait_phase(name, "Running")
    return env.uid(name)


def _gone(env: Env, name: str) -> bool:
    proc = env.kubectl("-n", env.namespace, "get", "agenttask", name, check=False)
    return proc.returncode != 0 and "NotFound" in proc.stderr


def test_delete_cancels_remote_job_once(env: Env) -> None:
    uid = _running(env, "victim")
    assert FINALIZER in env.get("victim")["metadata"]["finalizers"]
    env.kubectl("-n", env.namespace, "delete", "agenttask", "victim", "--timeout=60s")
    assert _gone(env, "victim")
    assert env.ledger.count("delete", uid) == 1


def test_failing_delete_is_retried_with_events_until_it_works(env: Env) -> None:
    uid = _running(env, "sticky", errors={"delete": {"kind": "transient", "times": 2}})
    env.kubectl("-n", env.namespace, "delete", "agenttask", "sticky", "--wait=false")
    env.wait("object gone", lambda: _gone(env, "sticky"), timeout=60)
    assert env.ledger.count("delete", uid) == 3


def test_orphan_policy_leaves_the_job_alone(env: Env) -> None:
    env.apply("orphan", task_template("test-async", phases=["RUNNING"]), deletionPolicy="Orphan", pollInterval="1s")
    env.wait_phase("orphan", "Running")
    uid = env.uid("orphan")
    env.kubectl("-n", env.namespace, "delete", "agenttask", "orphan", "--timeout=60s")
    assert env.ledger.count("delete", uid) == 0


def test_deleting_a_finished_task_does_not_call_the_agent(env: Env) -> None:
    env.apply("done", task_template("test-instant"), pollInterval="1s")
    env.wait_phase("done", "Succeeded")
    uid = env.uid("done")
    env.kubectl("-n", env.namespace, "delete", "agenttask", "done", "--timeout=60s")
    assert env.ledger.count("delete", uid) == 0


def test_namespace_deletion_completes(env: Env, control_plane: object) -> None:
    uids = [_running(env, f"t{i}") for i in range(3)]
    env.kubectl("delete", "namespace", env.namespace, "--wait=false")
    env.wait("namespace gone", lambda: env.kubectl("get", "namespace", env.namespace, check=False).returncode != 0,
             timeout=90, every=1.0)
    assert all(env.ledger.count("delete", uid) == 1 for uid in uids)


def test_operator_killed_mid_task_does_not_create_twice(env: Env) -> None:
    env.apply("survivor", task_template("test-async", phases=["RUNNING"] * 4 + ["SUCCEEDED"]), pollInterval="1s")
    env.wait_phase("survivor", "Running")
    uid = env.uid("survivor")
    env.operator.kill()
    env.operator.restart()
    env.wait_phase("survivor", "Succeeded", timeout=60)
    assert env.ledger.count("create", uid) == 1


def test_operator_killed_during_create_resumes_with_same_key(env: Env) -> None:
    # create takes 4 s: the kill lands after the create-pending marker, before resourceMeta
    env.apply("slowcreate", task_template("test-async", phases=["SUCCEEDED"], hang="create", hangSeconds=4),
              pollInterval="1s")
    env.wait("create called", lambda: env.ledger.count("create") >= 1, timeout=30)
    obj = env.get("slowcreate")
    assert obj["metadata"]["annotations"][ANNOTATION_CREATE_PENDING] == "1"
    assert "resourceMeta" not in (obj.get("status") or {})
    env.operator.kill()
    env.operator.restart()
    env.wait_phase("slowcreate", "Succeeded", timeout=60)
    uid = env.uid("slowcreate")
    assert {c.key for c in env.ledger.calls(uid, "create")} == {f"{uid}-1"}
    assert any(e["reason"] == "CreateResumed" for e in env.events("slowcreate"))


def test_tampered_resource_meta_is_refused(env: Env) -> None:
    uid = _running(env, "forged")
    forged = base64.urlsafe_b64encode(json.dumps({"key": "someone-else"}).encode()).decode().rstrip("=")
    patch = {"status": {"resourceMeta": f"v1.1.{forged}.bm90LWEtbWFj"}}
    env.kubectl("-n", env.namespace, "patch", "agenttask", "forged", "--subresource=status", "--type=merge",
                "-p", json.dumps(patch))
    status = env.wait("refused", lambda: (s := env.status("forged")).get("reason") == "ResourceMetaTampered" and s)
    assert env.condition("forged", "Stalled")["status"] == "True"
    gets = env.ledger.count("get", uid)
    env.wait("no further polls", lambda: env.ledger.count("get", uid) == gets, timeout=5)
    # deletion cannot call delete with a forged handle; the annotation releases it
    env.kubectl("-n", env.namespace, "delete", "agenttask", "forged", "--wait=false")
    env.kubectl("-n", env.namespace, "annotate", "agenttask", "forged", f"{ANNOTATION_SKIP_AGENT_DELETE}=true")
    env.wait("released", lambda: _gone(env, "forged"), timeout=30)
    assert env.ledger.count("delete", uid) == 0
    assert "someone-else" not in str(status)
