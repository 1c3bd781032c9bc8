"""The typed AgentTask model: spec/status parsing, bounds and the whole-object loader."""

from __future__ import annotations

from typing import Any

import pytest

from agent_operator.crd.fields import InvalidField
from agent_operator.crd.phases import ConditionType, Phase
from agent_operator.crd.resource import load_agent_task
from agent_operator.crd.spec import AgentTaskSpec, DeletionPolicy
from agent_operator.crd.status import AgentTaskStatus

TEMPLATE = {"type": "sensor", "id": {"name": "file_sensor"}}


def _obj(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flyteagents.dev/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": "t1", "namespace": "ns", "uid": "u-1", "generation": 1,
                     "managedFields": [{"manager": "kubectl"}], "finalizers": ["flyteagents.dev/agent-cleanup"]},
        "spec": {"taskTemplate": TEMPLATE, **spec},
    }


def test_spec_defaults_and_durations() -> None:
    spec = AgentTaskSpec.from_dict({"taskTemplate": TEMPLATE, "timeout": "1h30m", "pollInterval": "1500ms"})
    assert spec.max_attempts == 1 and spec.deletion_policy is DeletionPolicy.DELETE
    assert spec.timeout_seconds == 5400 and spec.poll_interval_seconds == 1.5
    assert spec.template_field == "spec.taskTemplate"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.taskTemplate"),
        ({"taskTemplate": TEMPLATE, "taskTemplateBase64": "AA=="}, "spec.taskTemplate"),
        ({"taskTemplate": TEMPLATE, "inputs": {}, "inputsBase64": "AA=="}, "spec.inputs"),
        ({"taskTemplate": TEMPLATE, "timeout": "0s"}, "spec.timeout"),
        ({"taskTemplate": TEMPLATE, "timeout": "-5s"}, "spec.timeout"),
        ({"taskTemplate": TEMPLATE, "pollInterval": "500ms"}, "spec.pollInterval"),
        ({"taskTemplate": TEMPLATE, "pollInterval": "soon"}, "spec.pollInterval"),
        ({"taskTemplate": TEMPLATE, "maxAttempts": 0}, "spec.maxAttempts"),
        ({"taskTemplate": TEMPLATE, "maxAttempts": 101}, "spec.maxAttempts"),
        ({"taskTemplate": TEMPLATE, "deletionPolicy": "Keep"}, "spec.deletionPolicy"),
        ({"taskTemplate": TEMPLATE, "secretRefs": [{"name": "a"}, {"name": "a"}]}, "spec.secretRefs[1]"),
        ({"taskTemplate": TEMPLATE, "secretRefs": [{"name": "Not_A_Name"}]}, "spec.secretRefs[0].name"),
        ({"taskTemplate": TEMPLATE, "secretRefs": [{"name": "a", "namespace": "other"}]},
         "spec.secretRefs[0].namespace"),
        ({"taskTemplate": TEMPLATE, "bogus": 1}, "spec.bogus"),
        ({"taskTemplate": TEMPLATE, "timeout": "9999999999999999h"}, "spec.timeout"),
    ],
)
def test_bad_spec_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        AgentTaskSpec.from_dict(spec)
    assert err.value.field == field


def test_status_round_trips_through_its_json_form() -> None:
    raw = {
        "phase": "Running", "reason": "Running", "message": "polling", "attempt": 1,
        "agent": {"name": "Sensor", "taskType": "sensor", "taskTypeVersion": 0, "sync": False},
        "logLinks": [{"name": "Dashboard", "uri": "http://x", "showWhilePending": True}],
        "startTime": "2026-01-02T03:04:05Z", "customInfo": {"k": [1, 2]},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Running", "message": "",
                        "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1}],
    }
    status = AgentTaskStatus.from_dict(raw)
    assert status.phase is Phase.RUNNING and not status.terminal
    assert status.condition(ConditionType.READY) is not None
    assert status.to_dict() == raw


@pytest.mark.parametrize(
    ("status", "field"),
    [
        ({"phase": "Done"}, "status.phase"),
        ({"startTime": "yesterday"}, "status.startTime"),
        ({"reason": "not a reason"}, "status.reason"),
        ({"message": "x" * 5000}, "status.message"),
        ({"attempt": "1"}, "status.attempt"),
        ({"conditions": [{"type": "Ready", "status": "Maybe", "reason": "R", "message": "",
                          "lastTransitionTime": "2026-01-02T03:04:05Z"}]}, "status.conditions[0].status"),
        ({"logLinks": [{"name": "x"}]}, "status.logLinks[0].uri"),
    ],
)
def test_bad_status_names_the_field(status: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        AgentTaskStatus.from_dict(status)
    assert err.value.field == field


def test_whole_object_loads_and_ignores_unknown_metadata() -> None:
    task = load_agent_task({**_obj(), "status": {"phase": "Succeeded"}})
    assert task.key == "ns/t1" and task.metadata.uid == "u-1"
    assert task.metadata.finalizers == ("flyteagents.dev/agent-cleanup",)
    assert task.status.terminal and task.spec.template_value == TEMPLATE


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.update(kind="Pod"), "kind"),
        (lambda o: o.update(apiVersion="v1"), "apiVersion"),
        (lambda o: o["metadata"].pop("name"), "metadata.name"),
        (lambda o: o["metadata"].update(generation="1"), "metadata.generation"),
        (lambda o: o["metadata"].update(labels={"a": 1}), "metadata.labels.a"),
        (lambda o: o.pop("spec"), "spec"),
        (lambda o: o.update(status={"phase": 3}), "status.phase"),
    ],
)
def test_whole_object_rejects_bad_data_naming_the_field(mutate: Any, field: str) -> None:
    obj = _obj()
    mutate(obj)
    with pytest.raises(InvalidField) as err:
        load_agent_task(obj)
    assert err.value.field == field
