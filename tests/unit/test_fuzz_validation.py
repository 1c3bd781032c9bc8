"""Hypothesis fuzz of the offline validation (issue 9): random specs and status patches.

Whatever a manifest or a status write contains, the checks either accept it or raise the
one error type (InvalidField / SpecError) naming a field that is really there - they
never crash with anything else, and ``validate`` always produces a verdict.  10,000
random manifests, 2,000 status patches, 1,000 whole objects; the live comparison with the API server is
tests/integration/test_fuzz_admission.py.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from agent_operator.cli.validate import Options, validate_document
from agent_operator.crd.admission import admission_check
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.resource import load_agent_task
from agent_operator.crd.status import AgentTaskStatus
from spec_strategies import STATUS_FIELDS, manifests, status_patches

FUZZ = settings(max_examples=10_000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KNOWN = frozenset({("sensor", 0), ("webhook", 0)})


def _names_a_real_key(field: str, obj: Any) -> bool:
    """``spec.secretRefs[1].name`` -> the object has spec / secretRefs, or the key is the one missing."""
    head = field.split(".")[0].split("[")[0]
    if head in ("apiVersion", "kind", "metadata", "spec", "status"):
        return True
    return isinstance(obj, dict) and head in obj


@FUZZ
@given(obj=manifests())
def test_random_manifests_are_accepted_or_rejected_naming_a_field(obj: dict[str, Any]) -> None:
    try:
        task = admission_check(obj)
    except InvalidField as e:
        assert e.field and _names_a_real_key(e.field, obj), e
        assert e.message
        result = validate_document(obj, "fuzz.yaml", 1, Options(known_task_types=KNOWN))
        assert not result.valid and result.findings[0].field == e.field
        return
    assert task.spec.template_value is not None
    # decoding the accepted ones: a verdict for each, errors inside spec only
    result = validate_document(obj, "fuzz.yaml", 1, Options(known_task_types=KNOWN))
    for finding in result.findings:
        assert finding.field.startswith("spec.") and finding.message, finding


@settings(max_examples=2_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=status_patches())
def test_random_status_patches_load_or_name_the_field(status: Any) -> None:
    try:
        parsed = AgentTaskStatus.from_dict(status)
    except InvalidField as e:
        assert e.field.startswith("status"), e
        rest = e.field[len("status."):].split(".")[0].split("[")[0]
        assert e.field == "status" or rest in STATUS_FIELDS or rest in status, e
        return
    # what loads also round-trips (empty collections mean absent): the controller can write back what it read
    assert AgentTaskStatus.from_dict(parsed.to_dict()).to_dict() == parsed.to_dict()


@settings(max_examples=1_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=manifests(), status=status_patches())
def test_controller_loader_never_crashes_on_any_object(obj: dict[str, Any], status: Any) -> None:
    full = {**obj, "metadata": {"name": "fuzz", "namespace": "ns", "uid": "u"}, "status": status}
    try:
        task = load_agent_task(full)
    except InvalidField as e:
        assert e.field.split(".")[0].split("[")[0] in ("spec", "status", "metadata"), e
    else:
        assert task.key == "ns/fuzz"
