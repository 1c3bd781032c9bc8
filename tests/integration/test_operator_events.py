"""Kubernetes Events from the real operator: by default (``--events warnings``) only Warnings
and the transition that ends a task's story, and with ``--events all`` one per transition;
under a backlog the Events wait for the tasks' status, and none is lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.testing.agents import agent_task_manifest
from operator_fixtures import Env, crd, env, make_env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster


@pytest.fixture
def chatty_env(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
               tmp_path: Path) -> Iterator[Env]:
    """A namespace with an operator started with ``--events all``."""
    yield from make_env(request, control_plane, namespace, tmp_path, extra_args=("--events", "all"))


@pytest.fixture
def narrow_env(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
               tmp_path: Path) -> Iterator[Env]:
    """A namespace with an operator that drives one task at a time (a backlog forms at once)."""
    yield from make_env(request, control_plane, namespace, tmp_path,
                        extra_args=("--max-concurrency", "1", "--per-agent-concurrency", "1"))


def reasons(env: Env, name: str) -> list[str]:
    return sorted(str(e["reason"]) for e in env.events(name))


def test_events_all_posts_an_event_for_every_transition(chatty_env: Env) -> None:
    env = chatty_env
    env.apply("chatty", task_template("test-async", phases=["RUNNING", "SUCCEEDED"]), pollInterval="1s")
    env.wait_phase("chatty", "Succeeded")
    env.wait("Created, Running and Succeeded Events",
             lambda: {"Created", "Running", "Succeeded"} <= set(reasons(env, "chatty")))


def test_default_posts_only_the_final_event_of_a_healthy_task(env: Env) -> None:  # noqa: F811
    env.apply("quiet", task_template("test-async", phases=["RUNNING", "SUCCEEDED"]), pollInterval="1s")
    env.wait_phase("quiet", "Succeeded")
    env.wait("the Succeeded Event", lambda: "Succeeded" in reasons(env, "quiet"))
    # a later task's final Event is posted after this one's: had Created/Running been
    # posted for "quiet", they would be visible by now
    env.apply("later", task_template("test-sync"))
    env.wait_phase("later", "Succeeded")
    env.wait("the later task's Event", lambda: "Succeeded" in reasons(env, "later"))
    assert reasons(env, "quiet") == ["Succeeded"]
    # the transitions not posted are still in the operator's log
    assert f"{env.namespace}/quiet: Created:" in env.operator.logs()


def test_default_still_posts_warnings_and_the_deletion(env: Env) -> None:  # noqa: F811
    env.apply("flaky", task_template("test-async", phases=["RUNNING"] * 60, errors={"get": {"times": 2}}),
              pollInterval="1s")
    env.wait("an AgentUnavailable Warning", lambda: any(
        e["type"] == "Warning" and e["reason"] == "AgentUnavailable" for e in env.events("flaky")))
    env.wait_phase("flaky", "Running")
    uid = env.uid("flaky")
    env.kubectl("-n", env.namespace, "delete", "agenttask", "flaky", "--timeout=60s")
    assert env.ledger.count("delete", uid) == 1
    env.wait("the AgentDeleted Event", lambda: "AgentDeleted" in reasons(env, "flaky"))
    assert "Created" not in reasons(env, "flaky")


def test_under_a_backlog_events_follow_the_status_and_none_is_lost(narrow_env: Env) -> None:
    env = narrow_env
    names = [f"queued-{i}" for i in range(10)]
    template = task_template("test-sync", latency=0.4)  # each task holds the one slot for 0.4 s
    manifests = [agent_task_manifest(n, template, namespace=env.namespace) for n in names]
    env.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
    finished = sorted(env.wait_phase(n, "Succeeded", timeout=120)["completionTime"] for n in names)
    env.wait("one Succeeded Event per task", lambda: all(reasons(env, n) == ["Succeeded"] for n in names))
    posted = sorted(str(e["metadata"]["creationTimestamp"]) for n in names for e in env.events(n))
    # the Events were held while more tasks were due than the one slot: the first was posted
    # only once the last task had its slot, after the others had finished (RFC 3339 in UTC,
    # second precision, compares as text); posted at once, it would precede them by ~3 s
    assert posted[0] >= finished[-2], (posted, finished)
