"""Deleting an AgentTask ends, whatever happened to it before (issue 9).

The live fuzz (tests/integration/test_fuzz_operator_live.py) deletes every object it made
and waits for the finalizers to go; this is the same property offline, with many more
examples: a task runs a few steps against a well-behaved or misbehaving agent, a hostile
writer patches its status, the user deletes it, and the core keeps going until it releases
the finalizer.  The only tasks allowed to wait are the ones that wait by design: a job
handle that fails its signature check (a human decides, with the skip-agent-delete
annotation) and a backoff counter forged high enough to delay the agent's delete for
minutes (it still ends: the run below follows it to the end).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent_operator.sdk import AgentRegistry
from agent_operator.testing.agents import LEDGER_ENV, TestAsyncAgent, TestInstantAgent, TestSyncAgent, task_template
from agent_operator.testing.bad_agents import BadAsyncAgent, BadSyncAgent, bad_template
from spec_strategies import storable_patches
from agent_operator.crd.status import AgentTaskStatus
from test_core_reconcile import Harness, deleting, view

#: seconds of simulated time a deletion may take: the longest backoff (5 min) a few times over
DELETION_BOUND = 3600.0
UIDS = itertools.count()


@pytest.fixture(autouse=True, scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv(LEDGER_ENV, str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite"))
    with AgentRegistry.snapshot():
        for cls in (TestAsyncAgent, TestSyncAgent, TestInstantAgent, BadAsyncAgent, BadSyncAgent):
            AgentRegistry.register(cls(), override=True)
        yield
    mp.undo()


templates = st.one_of(
    st.lists(st.sampled_from(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED"]), min_size=1, max_size=4)
    .map(lambda p: task_template("test-async", phases=p)),
    st.builds(lambda n: task_template("test-async", phases=["RUNNING"], errors={"delete": {"times": n}}),
              st.integers(1, 3)),
    st.just(task_template("test-instant")), st.just(task_template("test-sync")),
    st.sampled_from(["create-none", "create-wrong-type", "get-none", "get-nan", "get-huge-links",
                     "get-odd-custominfo", "get-undefined-phase", "raise-huge"]).map(bad_template),
)



def merge(status: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of ``status`` (null removes)."""
    out = dict(status)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def waits_by_design(status: dict[str, Any]) -> bool:
    return status.get("reason") == "ResourceMetaTampered"


@settings(max_examples=int(os.environ.get("DELETION_FUZZ_EXAMPLES", "400")), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=templates, steps_before=st.integers(0, 4), patch=st.one_of(st.none(), storable_patches),
       policy=st.sampled_from(["Delete", "Orphan"]), max_attempts=st.integers(1, 3))
# found by this test: the handle forged away, so the deleted task's create is re-asked and
# its answer ends the task; that status write used to be the last step (its echo wakes nobody)
@example(template=task_template("test-instant"), steps_before=1, patch={"phase": "Pending", "resourceMeta": None},
         policy="Delete", max_attempts=1)
def test_deleting_a_task_releases_its_finalizer_unless_its_handle_is_forged(
        template: dict[str, Any], steps_before: int, patch: dict[str, Any] | None, policy: str,
        max_attempts: int) -> None:
    uid = f"u{next(UIDS)}"  # a fresh idempotency key: the ledger is shared by all examples
    h = Harness(view(template, uid=uid, deletionPolicy=policy, maxAttempts=max_attempts))
    for _ in range(steps_before):
        action = h.step()
        if action is None:
            break
        h.clock.now += max(action.delay, 0.001)
    if patch is not None:
        patched = AgentTaskStatus.from_dict(merge(h.status, patch))
        h.view = dataclasses.replace(h.view, status=patched)
    h.view = deleting(h.view)
    start = h.clock.now
    trail: list[tuple[str, Any]] = []
    while h.clock.now - start < DELETION_BOUND:
        action = h.step()
        trail.append((action.kind.value if action else "done", h.view.status.reason))
        if action is None:
            break
        h.clock.now += max(action.delay, 0.001)
    finalizer_gone = h.backend.released or not h.view.metadata.has_finalizer
    assert finalizer_gone or waits_by_design(h.status), (
        f"deletion did not end in {DELETION_BOUND:.0f}s: {trail[-6:]} status="
        f"{ {k: str(v)[:80] for k, v in h.status.items() if k != 'conditions'} }")
