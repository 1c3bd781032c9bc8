"""Live fuzz (issue 9): random AgentTask specs and random status patches on the real API
server while one real operator process serves them, next to healthy canary tasks.

Whatever the API server accepts, the operator must keep running, give every object a
status, and keep serving the canaries: one created before the fuzz (running through
it) and one created after.  The offline counterpart with 10,000+ examples is
tests/unit/test_fuzz_reconcile.py; this one proves the same on the wire (kopf, the
scheduler, status merge patches) with ``LIVE_FUZZ_EXAMPLES`` (default 150) examples.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operator_fixtures import Env, crd  # noqa: F401 - fixture
from agent_operator.crd import names
from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.bad_agents import BAD_AGENT_SPECS, bad_template
from agent_operator.testing.operator_proc import OperatorProcess
from spec_strategies import specs, status_patches, storable_patches

pytestmark = pytest.mark.cluster

EXAMPLES = int(os.environ.get("LIVE_FUZZ_EXAMPLES", "150"))
TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")

runnable_specs = st.fixed_dictionaries(
    {"taskTemplate": st.one_of(
        st.lists(st.sampled_from(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED"]), min_size=1, max_size=4)
        .map(lambda p: task_template("test-async", phases=p)),
        st.just(task_template("test-instant")), st.just(task_template("test-sync")),
        st.sampled_from(["create-none", "get-none", "get-nan", "get-huge-links", "get-odd-custominfo",
                         "raise-huge", "raise-systemexit", "get-undefined-phase"]).map(bad_template))},
    optional={"pollInterval": st.sampled_from(["1s", "2s"]), "timeout": st.sampled_from(["3s", "1m"]),
              "maxAttempts": st.integers(1, 3), "deletionPolicy": st.sampled_from(["Delete", "Orphan"])})



@dataclass
class Fuzz:
    """The module's operator, namespace and what the fuzz did."""

    env: Env
    api: Any
    accepted: list[str] = field(default_factory=list)
    rejected: int = 0
    patched: int = 0
    patch_rejected: int = 0
    counter: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture(scope="module")
def fuzz(control_plane: Any, crd: str, k8s_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:  # noqa: F811
    from kubernetes import client

    tmp = tmp_path_factory.mktemp("live-fuzz")
    ns = f"live-fuzz-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    ledger = Ledger(tmp / "ledger.sqlite")
    op = OperatorProcess(str(control_plane.kubeconfig), namespaces=[ns], agents=[*AGENT_SPECS, *BAD_AGENT_SPECS],
                         extra_args=["--default-poll-interval", "1", "--call-timeout", "5", "--do-timeout", "5"],
                         env={LEDGER_ENV: str(ledger.path)}, log_path=tmp / "operator.log")
    op.start()
    try:
        op.wait_ready()
        env = Env(ns, control_plane.kubectl, str(control_plane.kubeconfig), ledger, op)
        yield Fuzz(env, client.CustomObjectsApi(k8s_api))
    finally:
        op.stop()
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _create(f: Fuzz, spec: Any) -> str | None:
    from kubernetes.client.exceptions import ApiException

    name = f"fuzz-{next(f.counter)}"
    body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name}, "spec": spec}
    try:
        f.api.create_namespaced_custom_object(names.GROUP, names.VERSION, f.env.namespace, names.PLURAL, body)
    except ApiException as e:
        assert e.status in (400, 422), e  # rejected at admission: that is test_fuzz_admission's business
        f.rejected += 1
        return None
    f.accepted.append(name)
    return name


def _patch_status(f: Fuzz, name: str, patch: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        f.api.patch_namespaced_custom_object_status(names.GROUP, names.VERSION, f.env.namespace, names.PLURAL, name,
                                                    {"status": patch}, _content_type="application/merge-patch+json")
        f.patched += 1
    except ApiException as e:
        assert e.status in (400, 409, 422), e
        f.patch_rejected += 1


def test_canary_started_before_the_fuzz(fuzz: Fuzz) -> None:
    fuzz.env.apply("canary-before", task_template("test-async", phases=["RUNNING"] * 8 + ["SUCCEEDED"]),
                   pollInterval="1s")
    fuzz.env.wait_phase("canary-before", "Running")


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=st.one_of(specs(), runnable_specs, runnable_specs), patch=st.one_of(st.none(), status_patches(), storable_patches, storable_patches),
       target=st.integers(0, 10**6))
def test_random_specs_and_status_patches(fuzz: Fuzz, spec: Any, patch: Any, target: int) -> None:
    name = _create(fuzz, spec)
    if patch is not None and fuzz.accepted:
        # patch this object or an earlier one (maybe already running or finished)
        _patch_status(fuzz, name or fuzz.accepted[target % len(fuzz.accepted)], patch)
    assert fuzz.env.operator.running, fuzz.env.operator.logs()[-4000:]


def test_operator_survives_and_keeps_serving(fuzz: Fuzz) -> None:
    env = fuzz.env
    print(f"live fuzz: {len(fuzz.accepted)} accepted, {fuzz.rejected} rejected at admission, "
          f"{fuzz.patched} status patches stored, {fuzz.patch_rejected} rejected")
    assert env.wait_phase("canary-before", *TERMINAL, timeout=90)["phase"] == "Succeeded"
    env.apply("canary-after", task_template("test-async", phases=["RUNNING", "SUCCEEDED"]), pollInterval="1s")
    assert env.wait_phase("canary-after", *TERMINAL, timeout=60)["phase"] == "Succeeded"
    items = json.loads(env.kubectl("-n", env.namespace, "get", "agenttasks", "-o", "json").stdout)["items"]
    assert len(items) == len(fuzz.accepted) + 2
    # every object got an answer from the operator: a phase (patches may have rewritten it)
    env.wait("every object has a status", lambda: all(
        (i.get("status") or {}).get("phase") for i in
        json.loads(env.kubectl("-n", env.namespace, "get", "agenttasks", "-o", "json").stdout)["items"]), timeout=90)
    # the operator has the last word on a task it refuses to run: a forged reason written
    # next to its refusal is put back (a write racing a status patch must not lose it)
    def refusals_consistent() -> bool:
        return all((i.get("status") or {}).get("reason") == "ResourceMetaTampered"
                   for i in json.loads(env.kubectl("-n", env.namespace, "get", "agenttasks", "-o", "json").stdout)["items"]
                   if str((i.get("status") or {}).get("message", "")).startswith("refusing to call the agent")
                   and (i.get("status") or {}).get("phase") not in TERMINAL)
    env.wait("refused tasks say ResourceMetaTampered", refusals_consistent, timeout=30)
    assert env.operator.running
    logs = env.operator.logs()
    assert "handler for" not in logs and "Traceback" not in logs, logs[-6000:]
    # deleting everything completes; only a task whose job handle was tampered with (or whose
    # backoff counter was) waits, for a human (the skip-agent-delete annotation), by design
    env.kubectl("-n", env.namespace, "delete", "agenttasks", "--all", "--wait=false")

    def remaining() -> list[dict[str, Any]]:
        out = env.kubectl("-n", env.namespace, "get", "agenttasks", "-o", "json").stdout
        return list(json.loads(out)["items"])

    def waits_by_design(item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        # a forged handle needs a human; a forged transientFailures counter means a long
        # backoff (up to 5 minutes) before the agent's delete is tried
        return status.get("reason") == "ResourceMetaTampered" or (status.get("transientFailures") or 0) >= 6

    def only_tampered_left() -> bool:
        return all(waits_by_design(i) for i in remaining())

    try:
        env.wait("deletion done except tampered handles", only_tampered_left, timeout=90)
    except AssertionError:
        left = [(i["metadata"]["name"], {k: str(v)[:120] for k, v in (i.get("status") or {}).items()
                                         if k in ("phase", "reason", "message", "transientFailures")})
                for i in remaining()]
        raise AssertionError(f"not deleted: {left}") from None
    for item in remaining():
        env.kubectl("-n", env.namespace, "annotate", "agenttask", item["metadata"]["name"],
                    f"{names.ANNOTATION_SKIP_AGENT_DELETE}=true")
    env.wait("every object gone", lambda: not remaining(), timeout=60)
