"""The write budget, measured where it counts: the API server's own request counters.

A task without intra-phase changes costs at most three object writes (finalizer +
create-pending marker, status after create, terminal status) and polling costs none.
"Polling" is counted in agent ``get`` calls from the ledger, not in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent_operator.testing.pytest_plugin import Cluster, cluster_for_tests
from operator_fixtures import Env, apiserver_writes, crd, env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def control_plane() -> Iterator[Cluster]:
    """A control plane of this module's own: apiserver_request_total counts cluster-wide, so
    objects other tests left on the session's cluster (and their namespaces' teardown) must
    not be able to add writes to the budget measured here."""
    yield from cluster_for_tests()


POLLS_MEASURED = 5


def _quiet(env: Env) -> bool:
    """No AgentTask outside this test's namespace (their writes would pollute the counters)."""
    items = json.loads(env.kubectl("get", "agenttasks", "-A", "-o", "json").stdout)["items"]
    return all(i["metadata"]["namespace"] == env.namespace for i in items)


def test_task_lifecycle_costs_at_most_three_writes_and_none_while_polling(env: Env) -> None:
    env.wait("no other AgentTasks on the cluster", lambda: _quiet(env), timeout=120, every=1.0)
    # a margin of polls after the measured ones: kubectl calls are slow on a loaded machine
    steps = ["RUNNING"] * (POLLS_MEASURED + 30) + ["SUCCEEDED"]
    before = apiserver_writes(env.kubectl)
    env.apply("budget", task_template("test-async", phases=steps), pollInterval="1s")
    env.wait_phase("budget", "Running")
    uid = env.uid("budget")

    polls_start = env.ledger.count("get", uid)
    during_start = apiserver_writes(env.kubectl)
    env.wait(f"{POLLS_MEASURED} more polls",
             lambda: env.ledger.count("get", uid) >= polls_start + POLLS_MEASURED, timeout=60)
    during = apiserver_writes(env.kubectl) - during_start
    assert env.status("budget")["phase"] == "Running"

    env.wait_phase("budget", "Succeeded", timeout=60)
    total = apiserver_writes(env.kubectl) - before
    print(f"object writes: {total} for the lifecycle, {during} during {POLLS_MEASURED} polls")
    assert during == 0
    assert total <= 3


def test_sync_task_costs_one_write(env: Env) -> None:
    env.wait("no other AgentTasks on the cluster", lambda: _quiet(env), timeout=120, every=1.0)
    before = apiserver_writes(env.kubectl)
    env.apply("once", task_template("test-sync"))
    env.wait_phase("once", "Succeeded")
    assert apiserver_writes(env.kubectl) - before == 1
