"""Offline validation and the real API server agree on random AgentTasks (issue 9).

200 random manifests (tests/spec_strategies.py) are sent to the API server as a
server-side dry-run create with strict field validation (what ``kubectl apply`` does by
default) and checked offline with ``admission_check``: both accept, or both reject and
the field the offline check names appears in the server's error.  Disagreements are
collected and reported together, with the manifest, so a failure is a ready bug report.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from agent_operator.crd.admission import admission_check
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.names import CRD_NAME, GROUP, PLURAL, VERSION
from spec_strategies import manifests

pytestmark = pytest.mark.cluster

#: AGENT_OPERATOR_LIVE_FUZZ_EXAMPLES=5000 for a longer hunt
LIVE_EXAMPLES = int(os.environ.get("AGENT_OPERATOR_LIVE_FUZZ_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def fuzz_namespace(control_plane: Any) -> Any:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(root / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    control_plane.kubectl("create", "namespace", "fuzz-admission")
    yield "fuzz-admission"
    control_plane.kubectl("delete", "namespace", "fuzz-admission", "--wait=false", check=False)


def _server_verdict(api: Any, namespace: str, obj: dict[str, Any]) -> tuple[bool, str]:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    try:
        CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, obj, dry_run="All", field_validation="Strict")
    except ApiException as e:
        if e.status not in (400, 422):
            raise
        return False, str(json.loads(e.body).get("message", e.body))
    return True, ""


def test_offline_and_admission_verdicts_agree(k8s_api: Any, fuzz_namespace: str) -> None:
    disagreements: list[str] = []
    seen = {"accepted": 0, "rejected": 0}

    @settings(max_examples=LIVE_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(obj=manifests())
    def check(obj: dict[str, Any]) -> None:
        try:
            admission_check(obj)
            offline: InvalidField | None = None
        except InvalidField as e:
            offline = e
        accepted, message = _server_verdict(k8s_api, fuzz_namespace, obj)
        seen["accepted" if accepted else "rejected"] += 1
        if accepted != (offline is None):
            disagreements.append(f"server {'accepted' if accepted else 'rejected: ' + message}; offline "
                                 f"{'accepted' if offline is None else 'rejected: ' + str(offline)}; "
                                 f"object: {json.dumps(obj)[:600]}")
        elif offline is not None and f"{offline.field}" not in message:
            disagreements.append(f"offline names {offline.field!r}, server says: {message}; object: "
                                 f"{json.dumps(obj)[:600]}")

    check()
    print(f"live fuzz: {seen['accepted']} accepted, {seen['rejected']} rejected, "
          f"{len(disagreements)} disagreements")
    assert not disagreements, "\n".join(disagreements[:20])
    assert seen["accepted"] > 0 and seen["rejected"] > 0
