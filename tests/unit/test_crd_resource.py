"""The typed AgentTask as the controller reads it: stored objects, the parse cache."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from agent_operator.crd import names
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.resource import AgentTaskCache, load_agent_task, load_stored_agent_task
from agent_operator.crd.status import AgentTaskStatus, Condition
from agent_operator.testing.agents import task_template


def stored(rv: str = "1", generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": "t", "namespace": "ns", "uid": "u1", "generation": generation, "resourceVersion": rv,
                     "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"taskTemplate": task_template("test-async"), **spec},
        "status": status if status is not None else {"phase": "Running", "attempt": 1},
    }


def test_a_stored_spec_the_model_rejects_becomes_spec_error_naming_the_field() -> None:
    raw = stored(pollInterval="0.5s")  # below the 1s floor: stored by an older schema, say
    with pytest.raises(InvalidField, match="spec.pollInterval"):
        load_agent_task(raw)
    task = load_stored_agent_task(raw)
    assert task.spec is None and task.spec_error is not None and task.spec_error.field == "spec.pollInterval"
    assert task.status.phase == "Running"
    assert task.metadata.creation_time == dt.datetime(2027, 1, 15, 8, tzinfo=dt.timezone.utc).timestamp()


def test_a_stored_status_field_the_model_cannot_read_is_left_out() -> None:
    raw = stored(status={"phase": "Running", "attempt": 2, "reason": "not a reason!", "startTime": "yesterday"})
    status = load_stored_agent_task(raw).status
    assert (status.phase, status.attempt, status.reason, status.start_time) == ("Running", 2, None, None)
    with pytest.raises(InvalidField, match="status.reason"):
        AgentTaskStatus.from_dict(raw["status"])


def test_status_json_round_trips_including_empty_outputs() -> None:
    status = AgentTaskStatus(outputs={}, custom_info={"k": [1, {"n": None}]}, attempt=1, conditions=(
        Condition(type="Ready", status="False", reason="Running", message="", last_transition_time="2027-01-15T08:00:00Z"),))
    data = status.to_dict()
    assert data["outputs"] == {} and "logLinks" not in data
    assert AgentTaskStatus.from_dict(data) == status


def test_cache_parses_once_per_resource_version_and_the_spec_once_per_generation() -> None:
    cache = AgentTaskCache()
    first = cache.load(stored(rv="1"))
    assert cache.load(copy.deepcopy(stored(rv="1"))) is first
    second = cache.load(stored(rv="2", status={"phase": "Running", "attempt": 1, "message": "new"}))
    assert second is not first and second.spec is first.spec and second.status.message == "new"
    third = cache.load(stored(rv="3", status={"phase": "Running", "attempt": 1, "message": "new"}))
    assert third.status is second.status  # same content: not parsed again
    regenerated = cache.load(stored(rv="4", generation=2))
    assert regenerated.spec is not first.spec and regenerated.spec == first.spec


def test_cache_takes_the_status_just_written_when_the_server_stored_exactly_that() -> None:
    cache = AgentTaskCache()
    cache.load(stored(rv="1"))
    written = AgentTaskStatus(phase=None, message="written", attempt=1)
    task = cache.load(stored(rv="2", status=written.to_dict()), written=(written.to_dict(), written))
    assert task.status is written
    other = cache.load(stored(rv="3", status={"message": "someone else"}), written=(written.to_dict(), written))
    assert other.status is not written and other.status.message == "someone else"


def test_cache_forgets_deleted_objects_and_stays_bounded() -> None:
    cache = AgentTaskCache(max_size=2)
    for i in range(3):
        raw = stored(rv="1")
        raw["metadata"]["uid"] = f"u{i}"
        cache.load(raw)
    assert len(cache) == 2
    cache.forget("u2")
    assert len(cache) == 1


def test_every_object_kept_per_task_has_no_instance_dict() -> None:
    """10,000 tasks in flight keep these per task; an instance ``__dict__`` costs ~100 bytes
    each (bench/RESULTS.md, 2026-12-02: 234 -> 227 MB at 10,000 with slots)."""
    condition = {"type": "Ready", "status": "False", "reason": "Running", "message": "m",
                 "lastTransitionTime": "2027-01-15T08:00:00Z", "observedGeneration": 1}
    task = load_stored_agent_task(stored(timeout="1h", pollInterval="60s",
                                         status={"phase": "Running", "attempt": 1, "conditions": [condition]}))
    kept = [task, task.metadata, task.spec, task.status, *task.status.conditions]
    assert len(kept) == 5
    assert task.spec is not None and task.spec.timeout_seconds == 3600.0 and task.spec.poll_interval_seconds == 60.0
    for value in kept:
        assert not hasattr(value, "__dict__"), type(value).__name__
