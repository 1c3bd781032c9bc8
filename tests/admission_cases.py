"""The bad-input table of issue 9 (admission side): one source for the live and offline tests.

Each case is a manifest the API server must reject on create, the field the rejection
names and a piece of the message it gives.  ``tests/integration/test_crd_admission.py``
applies every case with the real kubectl; ``tests/unit/test_cli_validate.py`` checks that
``agent-operator validate`` rejects the same manifest naming the same field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "flyteagents.dev/v1alpha1"
SENSOR_TEMPLATE: dict[str, Any] = {
    "type": "sensor",
    "id": {"name": "file_sensor", "resourceType": "TASK"},
    "interface": {"inputs": {"variables": {"path": {"type": {"simple": "STRING"}}}}},
}
VALID_SPEC: dict[str, Any] = {"taskTemplate": SENSOR_TEMPLATE, "inputs": {"path": "/tmp/agent-operator-demo/x"}}
_DROP = object()


def manifest(name: str = "bad", *, spec: Any = _DROP, **top: Any) -> dict[str, Any]:
    """A valid AgentTask (the sensor template) with ``spec`` keys overridden (None drops a key)."""
    body: dict[str, Any] = copy.deepcopy(VALID_SPEC)
    obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name}}
    if spec is not _DROP:
        if isinstance(spec, dict):
            body.update(spec)
            body = {k: v for k, v in body.items() if v is not None}
        else:
            body = spec
        obj["spec"] = body
    else:
        obj["spec"] = body
    obj.update(top)
    return {k: v for k, v in obj.items() if v is not None}


@dataclass(frozen=True)
class BadInput:
    """A manifest the API server rejects on create, naming ``field``; ``message`` is in its error."""

    id: str
    obj: dict[str, Any]
    field: str
    message: str
    notes: str = ""
    extra: tuple[str, ...] = field(default=())


def _b64(n: int) -> str:
    return "A" * n


CASES: tuple[BadInput, ...] = (
    BadInput("missing-template", manifest(spec={"taskTemplate": None}), "spec.taskTemplate",
             "set exactly one of spec.taskTemplate or spec.taskTemplateBase64"),
    BadInput("both-template-forms", manifest(spec={"taskTemplateBase64": "AAAA"}), "spec.taskTemplate",
             "set exactly one of spec.taskTemplate or spec.taskTemplateBase64"),
    BadInput("template-base64-invalid", manifest(spec={"taskTemplate": None, "taskTemplateBase64": "not base64!!"}),
             "spec.taskTemplateBase64", "should match"),
    BadInput("template-base64-url-alphabet", manifest(spec={"taskTemplate": None, "taskTemplateBase64": "A-_A"}),
             "spec.taskTemplateBase64", "should match"),
    BadInput("template-base64-unpadded", manifest(spec={"taskTemplate": None, "taskTemplateBase64": "AAA"}),
             "spec.taskTemplateBase64", "should match"),
    BadInput("template-base64-oversized",
             manifest(spec={"taskTemplate": None, "taskTemplateBase64": _b64(1024 * 1024 + 4)}),
             "spec.taskTemplateBase64", "may not be more than 1048576"),
    BadInput("template-not-an-object", manifest(spec={"taskTemplate": "type: sensor"}), "spec.taskTemplate",
             "must be of type object"),
    BadInput("template-too-many-keys", manifest(spec={"taskTemplate": {f"k{i}": i for i in range(33)}}),
             "spec.taskTemplate", "must have at most 32 items"),
    BadInput("inputs-base64-invalid", manifest(spec={"inputs": None, "inputsBase64": "%%%%"}),
             "spec.inputsBase64", "should match"),
    BadInput("inputs-base64-oversized", manifest(spec={"inputs": None, "inputsBase64": _b64(512 * 1024 + 4)}),
             "spec.inputsBase64", "may not be more than 524288"),
    BadInput("both-input-forms", manifest(spec={"inputsBase64": "AAAA"}), "spec.inputs",
             "set at most one of spec.inputs or spec.inputsBase64"),
    BadInput("inputs-not-a-mapping", manifest(spec={"inputs": ["/tmp/x"]}), "spec.inputs", "must be of type object"),
    BadInput("inputs-too-many-keys", manifest(spec={"inputs": {f"i{i}": i for i in range(257)}}), "spec.inputs",
             "must have at most 256 items"),
    BadInput("unknown-spec-field", manifest(spec={"timeOut": "5m"}), "spec.timeOut", 'unknown field "spec.timeOut"',
             notes="rejected with kubectl --validate=strict (the default); pruned with --validate=false"),
    BadInput("unknown-top-level-field", manifest(specs={"timeout": "5m"}), "specs", 'unknown field "specs"'),
    BadInput("secret-ref-other-namespace", manifest(spec={"secretRefs": [{"name": "db", "namespace": "prod"}]}),
             "spec.secretRefs[0].namespace", 'unknown field "spec.secretRefs[0].namespace"',
             notes="secretRefs cannot point at another namespace: the field does not exist"),
    BadInput("timeout-zero", manifest(spec={"timeout": "0s"}), "spec.timeout", "spec.timeout must be greater than 0"),
    BadInput("timeout-bare-zero", manifest(spec={"timeout": "0"}), "spec.timeout", "should match"),
    BadInput("timeout-negative", manifest(spec={"timeout": "-5m"}), "spec.timeout", "should match"),
    BadInput("timeout-not-a-duration", manifest(spec={"timeout": "tomorrow"}), "spec.timeout", "should match"),
    BadInput("timeout-number", manifest(spec={"timeout": 300}), "spec.timeout", "must be of type string"),
    BadInput("timeout-overflow", manifest(spec={"timeout": "9999999999999999h"}), "spec.timeout",
             "spec.timeout must be greater than 0"),
    BadInput("poll-interval-zero", manifest(spec={"pollInterval": "0s"}), "spec.pollInterval",
             "spec.pollInterval must be at least 1s"),
    BadInput("poll-interval-below-floor", manifest(spec={"pollInterval": "500ms"}), "spec.pollInterval",
             "spec.pollInterval must be at least 1s"),
    BadInput("poll-interval-negative", manifest(spec={"pollInterval": "-10s"}), "spec.pollInterval", "should match"),
    BadInput("deletion-policy-unknown", manifest(spec={"deletionPolicy": "Keep"}), "spec.deletionPolicy",
             'supported values: "Delete", "Orphan"'),
    BadInput("deletion-policy-lowercase", manifest(spec={"deletionPolicy": "orphan"}), "spec.deletionPolicy",
             'supported values: "Delete", "Orphan"'),
    BadInput("max-attempts-zero", manifest(spec={"maxAttempts": 0}), "spec.maxAttempts",
             "should be greater than or equal to 1"),
    BadInput("max-attempts-too-many", manifest(spec={"maxAttempts": 101}), "spec.maxAttempts",
             "should be less than or equal to 100"),
    BadInput("max-attempts-not-integer", manifest(spec={"maxAttempts": "3"}), "spec.maxAttempts",
             "must be of type integer"),
    BadInput("too-many-secret-refs", manifest(spec={"secretRefs": [{"name": f"s{i}"} for i in range(17)]}),
             "spec.secretRefs", "must have at most 16 items"),
    BadInput("duplicate-secret-ref", manifest(spec={"secretRefs": [{"name": "db"}, {"name": "db"}]}),
             "spec.secretRefs[1]", "Duplicate value"),
    BadInput("secret-ref-bad-name", manifest(spec={"secretRefs": [{"name": "DB_PASSWORD"}]}),
             "spec.secretRefs[0].name", "should match"),
    BadInput("secret-ref-without-name", manifest(spec={"secretRefs": [{}]}), "spec.secretRefs[0].name",
             "Required value"),
    BadInput("service-account-bad-name", manifest(spec={"serviceAccountName": "Robot Account"}),
             "spec.serviceAccountName", "should match"),
    BadInput("output-prefix-too-long", manifest(spec={"outputPrefix": "s3://b/" + "x" * 2048}), "spec.outputPrefix",
             "may not be more than 2048"),
    BadInput("missing-spec", manifest(spec=None), "spec", "Required value"),
    BadInput("spec-not-an-object", manifest(spec="run the sensor"), "spec", "must be of type object"),
    BadInput("bad-object-name", manifest("Sensor_1"), "metadata.name", "RFC 1123 subdomain"),
)

#: an update the API server rejects: any change of spec after creation
IMMUTABLE_MESSAGE_PART = "spec is immutable"
SPEC_UPDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("change-inputs", {"inputs": {"path": "/tmp/agent-operator-demo/other"}}),
    ("add-timeout", {"timeout": "5m"}),
    ("change-max-attempts", {"maxAttempts": 3}),
)
