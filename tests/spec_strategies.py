"""Hypothesis strategies for AgentTask manifests and status patches, valid and hostile.

Each spec field is absent, valid, or broken in one of the ways users (and attackers)
break it: wrong type, out of range, bad syntax, null, oversized, unknown sibling keys.
Shared by the offline fuzz (tests/unit/test_fuzz_validation.py) and the live comparison
against the API server (tests/integration/test_fuzz_admission.py); storable_patches also by
the deletion property (tests/unit/test_fuzz_deletion_ends.py) and the live operator fuzz.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import strategies as st

from admission_cases import API_VERSION, SENSOR_TEMPLATE

_ABSENT = object()

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                         st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
wrong_types = st.one_of(st.booleans(), st.integers(-5, 5), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

_number = st.one_of(st.integers(0, 3000).map(str), st.sampled_from(["0", "00", "1.", ".5", "0.0000000001", "1.5",
                                                                    "99999999999", "2562047", "9" * 20]))
_unit = st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h", "", "d", "S", "sec"])
durations = st.one_of(
    st.lists(st.tuples(_number, _unit).map("".join), min_size=1, max_size=3).map("".join),
    st.sampled_from(["0", "0s", "-5s", "+5s", "1s", "999ms", "1000ms", "5m", "1h30m", "", " 5s", "5s ", "1e3s",
                     "0.5s", "2562047h", "2562048h", "1µs", "1μs", "10us"]),
    st.text(max_size=8),
    wrong_types,
)

_name_chars = st.sampled_from(list("abcz09-.") + ["A", "_", " ", "é"])
object_names = st.one_of(st.sampled_from(["db", "api-key", "a.b", "x" * 253, "x" * 254]),
                         st.lists(_name_chars, min_size=0, max_size=12).map("".join))

_b64_chars = st.sampled_from(list("AZaz09+/=") + ["-", "_", " ", "\n", "!", "\r"])
base64_values = st.one_of(
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    st.lists(_b64_chars, max_size=16).map("".join),
    st.just(base64.b64encode(b"\n\x06sensor").decode()),
    wrong_types,
)
templates = st.one_of(
    st.just(SENSOR_TEMPLATE),
    st.fixed_dictionaries({"type": st.one_of(st.text(max_size=10), wrong_types)}),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.integers(28, 40).map(lambda n: {f"k{i}": i for i in range(n)}),
    wrong_types.filter(lambda v: not isinstance(v, dict)),
    st.text(max_size=10),
)
inputs_values = st.one_of(
    st.fixed_dictionaries({"path": st.one_of(st.text(max_size=20), wrong_types)}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.integers(250, 260).map(lambda n: {f"i{i}": i for i in range(n)}),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)
secret_refs = st.one_of(
    st.lists(st.one_of(
        st.fixed_dictionaries({"name": object_names}),
        st.fixed_dictionaries({"name": object_names}, optional={"namespace": st.just("other"),
                                                                 "key": st.text(max_size=3)}),
        st.just({}),
        st.none(),
        st.text(max_size=3),
    ), max_size=18),
    st.integers(14, 18).map(lambda n: [{"name": f"s{i}"} for i in range(n)]),
    wrong_types.filter(lambda v: not isinstance(v, list)),
)

#: spec key -> strategy of values (``None`` means JSON null)
SPEC_FIELDS: dict[str, Any] = {
    "taskTemplate": templates,
    "taskTemplateBase64": base64_values,
    "inputs": inputs_values,
    "inputsBase64": base64_values,
    "outputPrefix": st.one_of(st.text(max_size=20), st.integers(2040, 2056).map(lambda n: "x" * n), wrong_types),
    "timeout": durations,
    "pollInterval": durations,
    "maxAttempts": st.one_of(st.integers(-3, 105), st.sampled_from([2**40, -(2**40)]),
                             st.floats(0, 5, allow_nan=False), st.text(max_size=3), st.booleans()),
    "deletionPolicy": st.one_of(st.sampled_from(["Delete", "Orphan", "delete", "orphan", "Keep", ""]), wrong_types),
    "serviceAccountName": st.one_of(object_names, wrong_types),
    "secretRefs": secret_refs,
}
UNKNOWN_KEYS = st.sampled_from(["timeOut", "template", "namespace", "retries", "Inputs", "secrets"])


@st.composite
def specs(draw: st.DrawFn) -> Any:
    """A spec: usually a mapping mixing valid, broken, null and absent fields; sometimes not a mapping."""
    if draw(st.integers(0, 49)) == 0:
        return draw(st.one_of(st.none(), wrong_types.filter(lambda v: not isinstance(v, dict)), st.text(max_size=4)))
    spec: dict[str, Any] = {"taskTemplate": copy.deepcopy(SENSOR_TEMPLATE), "inputs": {"path": "/tmp/x"}}
    for key, strategy in SPEC_FIELDS.items():
        mode = draw(st.integers(0, 9))
        if mode <= 4:
            continue  # keep the default (template/inputs) or leave absent
        if mode == 5:
            spec.pop(key, None)
        elif mode == 6:
            spec[key] = None
        else:
            spec[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        spec[draw(UNKNOWN_KEYS)] = draw(json_scalars)
    return spec


@st.composite
def manifests(draw: st.DrawFn, name: str = "fuzz") -> dict[str, Any]:
    """A whole AgentTask manifest with a fixed valid name around a drawn spec."""
    obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name}}
    spec = draw(specs())
    if spec is not _ABSENT:
        obj["spec"] = spec
    if draw(st.integers(0, 49)) == 0:
        obj.pop("spec", None)
    return obj


_times = st.one_of(st.just("2026-01-02T03:04:05Z"), st.just("2026-01-02T03:04:05.123+01:00"),
                   st.text(max_size=10), wrong_types)
conditions = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["Ready", "Reconciling", "Stalled", "Succeeded", "", "bad type"]),
     "status": st.sampled_from(["True", "False", "Unknown", "Maybe"]),
     "reason": st.sampled_from(["Running", "AgentError", "", "no spaces allowed"]),
     "message": st.text(max_size=10), "lastTransitionTime": _times},
    optional={"observedGeneration": st.integers(-2, 5)}), max_size=3)

STATUS_FIELDS: dict[str, Any] = {
    "phase": st.one_of(st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "TimedOut", "Done", ""]),
                       wrong_types),
    "reason": st.one_of(st.sampled_from(["AgentNotFound", "InvalidSpec", "bad reason", ""]), wrong_types),
    "message": st.one_of(st.text(max_size=30), st.integers(4090, 4100).map(lambda n: "m" * n)),
    "agent": st.one_of(st.fixed_dictionaries({}, optional={
        "name": st.text(max_size=8), "taskType": st.text(max_size=8),
        "taskTypeVersion": st.integers(-1, 3), "sync": st.booleans(), "extra": st.integers()}), wrong_types),
    "resourceMeta": st.one_of(st.text(max_size=30), wrong_types),
    "createPending": _times,
    "attempt": st.one_of(st.integers(-1, 1001), wrong_types),
    "logLinks": st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)}, optional={
        "uri": st.text(max_size=10), "messageFormat": st.sampled_from(["JSON", "CSV", "XML"]),
        "showWhilePending": st.booleans()}), max_size=3),
    "outputs": st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=3), wrong_types),
    "customInfo": st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=3), wrong_types),
    "transientFailures": st.one_of(st.integers(-1, 10), wrong_types),
    "startTime": _times,
    "completionTime": _times,
    "observedGeneration": st.one_of(st.integers(-1, 10), wrong_types),
    "conditions": st.one_of(conditions, wrong_types),
}


@st.composite
def status_patches(draw: st.DrawFn) -> Any:
    """A status as a hostile or buggy writer of the status subresource might send it."""
    if draw(st.integers(0, 49)) == 0:
        return draw(st.one_of(st.none(), wrong_types.filter(lambda v: not isinstance(v, dict))))
    status: dict[str, Any] = {}
    for key, strategy in STATUS_FIELDS.items():
        if draw(st.integers(0, 3)) == 0:
            status[key] = draw(st.one_of(st.none(), strategy))
    if draw(st.integers(0, 9)) == 0:
        status[draw(st.sampled_from(["secret", "Phase", "spec"]))] = draw(json_scalars)
    return status


#: patches the API server stores (the schema's types and bounds) that a hostile status writer
#: would send: forged phases, handles, attempts, counters and poll hints
storable_patches = st.fixed_dictionaries({}, optional={
    "phase": st.sampled_from(["Pending", "Queued", "Running", "Succeeded", "Failed", "TimedOut"]),
    "reason": st.sampled_from(["Running", "Created", "ResourceMetaTampered", "X"]),
    "resourceMeta": st.one_of(st.text(max_size=40), st.just(None)),
    "attempt": st.integers(0, 5),
    "transientFailures": st.integers(0, 2**62),
    "customInfo": st.fixed_dictionaries({"nextPollSeconds": st.one_of(st.integers(0, 2**62), st.floats(0, 1e300))}),
    "startTime": st.sampled_from(["1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]),
    "conditions": st.just([]),
    "message": st.text(max_size=50),
})
