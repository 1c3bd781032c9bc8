"""Bad input that passes admission and reaches the real operator process (issue 9).

Each case in :data:`CASES` is an AgentTask the API server accepts but that cannot run as
written, or whose agent answers garbage, hangs or raises.  Each names the phase, reason
and message fragments it must end with.  All cases and one healthy canary per case are
created at once against one operator; every test then checks its case and its canary, so
one bad object is seen never to block the others.  The status-tampering tests at the end
edit status through the status subresource the way any holder of that RBAC could.

Admission-side bad input (rejected before storage) is tests/integration/test_crd_admission.py.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flyteidl.admin import task_pb2
from flyteidl.core import tasks_pb2
from google.protobuf import json_format

from operator_fixtures import Env, crd, make_env  # noqa: F401 - fixture
from agent_operator.testing.agents import AGENT_SPECS, LEDGER_ENV, Ledger, agent_task_manifest, task_template
from agent_operator.testing.bad_agents import BAD_AGENT_SPECS, bad_template
from agent_operator.testing.operator_proc import OperatorProcess

pytestmark = pytest.mark.cluster

TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")
CALL_TIMEOUT = 3  # --call-timeout and --do-timeout of the operator under test
HANG = 20         # how long the hanging agents sleep (threads cannot be cancelled: keep it short)
_TMPL = task_template("test-async", inputs={"n": "INTEGER"}, phases=["SUCCEEDED"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _task_spec_bytes() -> bytes:
    """A flyteidl.admin.TaskSpec (what ``pyflyte serialize`` writes), not a TaskTemplate."""
    return task_pb2.TaskSpec(template=json_format.ParseDict(_TMPL, tasks_pb2.TaskTemplate())).SerializeToString()


def _status_size_below(limit: int) -> Callable[[dict[str, Any]], None]:
    def check(status: dict[str, Any]) -> None:
        assert len(json.dumps(status)) < limit, f"status is {len(json.dumps(status))} bytes"
    return check


def _message_bounded(status: dict[str, Any]) -> None:
    assert len(status["message"].encode()) <= 4096 and "truncated" in status["message"]


def _log_links_clamped(status: dict[str, Any]) -> None:
    links = status["logLinks"]
    assert len(links) == 64 and all(len(link["name"]) <= 256 for link in links)
    assert all(len(link["uri"]) <= 4096 for link in links) and links[0]["name"].startswith("link-0-")


def _no_prefix_note(status: dict[str, Any]) -> None:
    assert "outputs" not in status and "outputsRef" not in status


@dataclass(frozen=True)
class Case:
    """One bad AgentTask and the outcome it must reach."""

    id: str
    spec: dict[str, Any]
    phase: str
    reason: str
    fragments: tuple[str, ...] = ()
    check: Callable[[dict[str, Any]], None] | None = None
    #: wait for Stalled=True instead of a terminal phase (the task is stuck, not finished)
    stalled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _bad(mode: str, task_type: str = "test-bad", **config: Any) -> dict[str, Any]:
    return {"taskTemplate": bad_template(mode, task_type, **config)}


CASES: tuple[Case, ...] = (
    # the spec: templates and inputs the API server cannot judge
    Case("random-bytes-template", {"taskTemplateBase64": _b64(random.Random(9).randbytes(96))},
         "Failed", "InvalidSpec", ("spec.taskTemplateBase64", "not a binary flyteidl.core.TaskTemplate")),
    Case("taskspec-not-template", {"taskTemplateBase64": _b64(_task_spec_bytes())},
         "Failed", "InvalidSpec", ("spec.taskTemplateBase64", "flyteidl.admin.TaskSpec", "agent-operator render")),
    Case("template-without-type", {"taskTemplate": {k: v for k, v in _TMPL.items() if k != "type"}},
         "Failed", "InvalidSpec", ("spec.taskTemplate.type", "required")),
    Case("unknown-task-type", {"taskTemplate": {**_TMPL, "type": "no-such-agent"}},
         "Failed", "AgentNotFound", ("no-such-agent", "test-async", "test-bad")),
    Case("input-wrong-type", {"taskTemplate": _TMPL, "inputs": {"n": "abc"}},
         "Failed", "InvalidSpec", ("spec.inputs.n", "expected integer", "'abc'")),
    Case("input-not-declared", {"taskTemplate": _TMPL, "inputs": {"n": 1, "m": 2}},
         "Failed", "InvalidSpec", ("spec.inputs.m", "not an input", "declared inputs: n")),
    Case("input-missing", {"taskTemplate": _TMPL},
         "Failed", "InvalidSpec", ("spec.inputs.n", "required input missing", "integer")),
    Case("inputs-base64-garbage", {"taskTemplate": _TMPL, "inputsBase64": _b64(random.Random(3).randbytes(64))},
         "Failed", "InvalidSpec", ("spec.inputsBase64", "not a binary LiteralMap")),
    # the agent raising
    Case("agent-raises", {"taskTemplate": task_template("test-async", errors={"create": {"kind": "permanent"}})},
         "Failed", "AgentError", ("create failed", "PermanentTestError", "injected permanent create error")),
    Case("agent-raises-1mib-message", _bad("raise-huge"), "Failed", "AgentError", ("get failed: BadAgentError: eee",),
         _message_bounded),
    Case("agent-raises-systemexit", _bad("raise-systemexit"), "Failed", "AgentError", ("SystemExit(3)",)),
    Case("sync-agent-raises-systemexit", _bad("raise-systemexit", "test-bad-sync"), "Failed", "AgentError",
         ("do failed", "SystemExit(3)")),
    # the agent answering garbage
    Case("create-returns-none", _bad("create-none"), "Failed", "AgentError",
         ("create returned NoneType, expected a ResourceMeta",)),
    Case("create-returns-dict", _bad("create-wrong-type"), "Failed", "AgentError",
         ("create returned dict, expected a ResourceMeta",)),
    Case("get-returns-none", _bad("get-none"), "Failed", "AgentError", ("answered NoneType, expected a Resource",)),
    Case("get-returns-dict", _bad("get-wrong-type"), "Failed", "AgentError", ("answered dict, expected a Resource",)),
    Case("do-returns-none", _bad("get-none", "test-bad-sync"), "Failed", "AgentError",
         ("do: agent answered NoneType",)),
    Case("undefined-phase", _bad("get-undefined-phase"), "Failed", "AgentError",
         ("phase <undefined 42>", "not a task phase")),
    Case("unset-phase", _bad("get-unset-phase"), "Failed", "AgentError", ("phase UNDEFINED", "not a task phase")),
    Case("outputs-not-serializable", _bad("get-bad-outputs"), "Failed", "AgentError",
         ("outputs", "outputs.n", "expected integer")),
    Case("nan-in-outputs-and-custominfo", _bad("get-nan", outputs={"x": "FLOAT", "y": "FLOAT"}), "Succeeded",
         "Succeeded", (), lambda s: (s["outputs"] == {"x": "nan", "y": "inf"}
                                     and s["customInfo"] == {"ratio": "nan", "limit": "-inf"}) or pytest.fail(str(s))),
    Case("message-not-a-string", _bad("get-message-not-str"), "Succeeded", "Succeeded", ("12345",)),
    Case("message-1mib", _bad("get-huge-message"), "Succeeded", "Succeeded", ("mmm",), _message_bounded),
    Case("log-links-oversize", _bad("get-huge-links"), "Succeeded", "Succeeded", (), _log_links_clamped),
    Case("custominfo-2mib", _bad("get-huge-custominfo"), "Succeeded", "Succeeded", (),
         lambda s: "exceeds 64 KiB" in s["customInfo"]["omitted"] or pytest.fail(str(s))),
    Case("custominfo-odd-keys-and-values", _bad("get-odd-custominfo"), "Succeeded", "Succeeded", (),
         lambda s: s["customInfo"]["1"] == "int key" and s["customInfo"]["set"] == [1, 2] or pytest.fail(str(s))),
    # the agent hanging: bounded by --call-timeout / --do-timeout, then the configured outcome
    # Stalled once the budget (2) is used; the count keeps growing while the earlier cases are
    # checked, so the message says ">= 2 in a row", not exactly 2
    Case("get-hangs-until-stalled", {"taskTemplate": task_template("test-async", hang="get", hangSeconds=HANG)},
         "Queued", "AgentUnavailable", ("get did not answer in time", "failed with a transient error ("),
         lambda s: _in_a_row(s["message"]) >= 2 or pytest.fail(s["message"]), stalled=True),
    Case("get-hangs-past-spec-timeout", {"taskTemplate": task_template("test-async", hang="get", hangSeconds=HANG),
                                         "timeout": "6s"},
         "TimedOut", "TimedOut", ("spec.timeout (6s) elapsed", "job was deleted")),
    Case("do-hangs", {"taskTemplate": task_template("test-sync", hang="do", hangSeconds=HANG)},
         "Failed", "AgentError", ("do did not finish within the operator's call limit",)),
    # huge outputs: not inlined
    Case("outputs-100kib-with-prefix", {"taskTemplate": task_template("test-async", phases=["SUCCEEDED"],
                                                                      outputBytes=100_000)},
         "Succeeded", "Succeeded", ("exceed 64 KiB: stored at",), _status_size_below(16_000),
         extra={"outputPrefix": True}),
    Case("outputs-100kib-without-prefix", {"taskTemplate": task_template("test-async", phases=["SUCCEEDED"],
                                                                         outputBytes=100_000)},
         "Succeeded", "Succeeded", ("spec.outputPrefix is not set: not stored",), _no_prefix_note),
)


@dataclass
class Run:
    """The module's namespace, operator and helpers."""

    namespace: str
    kubectl: Callable[..., Any]
    operator: OperatorProcess
    ledger: Ledger
    out_dir: Path
    env: Env


@pytest.fixture(scope="module")
def run(control_plane: Any, crd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:  # noqa: F811
    """One operator, every case and its canary applied at once."""
    tmp = tmp_path_factory.mktemp("bad-input")
    ns = f"bad-input-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    ledger = Ledger(tmp / "ledger.sqlite")
    op = OperatorProcess(
        str(control_plane.kubeconfig), namespaces=[ns], agents=[*AGENT_SPECS, *BAD_AGENT_SPECS],
        extra_args=["--default-poll-interval", "1", "--call-timeout", str(CALL_TIMEOUT),
                    "--do-timeout", str(CALL_TIMEOUT), "--transient-budget", "2"],
        env={LEDGER_ENV: str(ledger.path)}, log_path=tmp / "operator.log")
    op.start()
    try:
        op.wait_ready()
        items = []
        for case in CASES:
            spec = dict(case.spec)
            if case.extra.get("outputPrefix"):
                spec["outputPrefix"] = f"file://{tmp}/outputs/{case.id}"
            items.append({"apiVersion": "flyteagents.dev/v1alpha1", "kind": "AgentTask",
                          "metadata": {"name": case.id, "namespace": ns}, "spec": spec})
            items.append(agent_task_manifest(f"ok-{case.id}", task_template("test-instant"), namespace=ns))
        control_plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        yield Run(ns, control_plane.kubectl, op, ledger, tmp / "outputs",
                  Env(ns, control_plane.kubectl, str(control_plane.kubeconfig), ledger, op))
    finally:
        op.stop()
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _in_a_row(message: str) -> int:
    """N of "... transient error (N in a row) ..." (0 when the message says no such thing)."""
    found = re.search(r"transient error \((\d+) in a row\)", message)
    return int(found.group(1)) if found else 0


def _reached(env: Env, case: Case) -> dict[str, Any] | None:
    status = env.status(case.id)
    if case.stalled:
        stalled = next((c for c in status.get("conditions") or [] if c["type"] == "Stalled"), {})
        return status if stalled.get("status") == "True" else None
    return status if status.get("phase") in TERMINAL else None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_reaches_its_outcome_and_the_canary_succeeds(run: Run, case: Case) -> None:
    status = run.env.wait(f"{case.id} outcome", lambda: _reached(run.env, case), timeout=90)
    assert (status["phase"], status["reason"]) == (case.phase, case.reason), status.get("message")
    for fragment in case.fragments:
        assert fragment in status["message"], (fragment, status["message"][:600])
    if case.check is not None:
        case.check(status)
    if case.extra.get("outputPrefix"):
        ref = status["outputsRef"]
        assert ref.endswith("/outputs.pb") and Path(ref.removeprefix("file://")).stat().st_size > 100_000
    canary = run.env.wait_phase(f"ok-{case.id}", *TERMINAL, timeout=60)
    assert canary["phase"] == "Succeeded"


def _running(run: Run, name: str) -> dict[str, Any]:
    run.env.apply(name, task_template("test-async", phases=["RUNNING"]), pollInterval="1s")
    status: dict[str, Any] = run.env.wait(f"{name} running", lambda: (s := run.env.status(name)).get("phase")
                                          == "Running" and s.get("resourceMeta") and s, timeout=60)
    return status


def _patch_status(run: Run, name: str, status: dict[str, Any], check: bool = True) -> Any:
    return run.kubectl("-n", run.namespace, "patch", "agenttask", name, "--subresource=status", "--type=merge",
                       "-p", json.dumps({"status": status}), check=check)


def _polls_stop(run: Run, uid: str) -> None:
    time.sleep(1.5)  # a get already in flight when status was edited may still land
    gets = run.ledger.count("get", uid)
    time.sleep(4)  # four poll intervals: a poll would show in the ledger
    assert run.ledger.count("get", uid) == gets


@pytest.mark.parametrize("how", ["copied-from-another-task", "attempt-bumped"])
def test_tampered_resource_meta_is_refused_and_others_run_on(run: Run, how: str) -> None:
    victim, other = f"tamper-{how}"[:50], f"donor-{how}"[:50]
    donor = _running(run, other)
    _running(run, victim)
    uid = run.env.uid(victim)
    _patch_status(run, victim, {"resourceMeta": donor["resourceMeta"]} if how.startswith("copied") else {"attempt": 2})
    status = run.env.wait("refused", lambda: (s := run.env.status(victim)).get("reason") == "ResourceMetaTampered" and s)
    assert "refusing to call the agent" in status["message"] and status["phase"] == "Running"
    assert run.env.condition(victim, "Stalled")["status"] == "True"
    _polls_stop(run, uid)
    run.env.apply(f"ok-{how}"[:50], task_template("test-instant"))
    assert run.env.wait_phase(f"ok-{how}"[:50], *TERMINAL)["phase"] == "Succeeded"
    assert run.env.status(other)["phase"] == "Running"  # the donor is untouched


def test_phase_edited_to_succeeded_is_final_and_orphans_the_job(run: Run) -> None:
    """The operator's answer to a forged terminal phase: status is its record, a terminal
    phase is never re-derived. It stops polling and skips the agent's delete (SECURITY.md
    known limit: whoever may write agenttasks/status can end the tracking of a job)."""
    _running(run, "forged-phase")
    uid = run.env.uid("forged-phase")
    _patch_status(run, "forged-phase", {"phase": "Succeeded"})
    _polls_stop(run, uid)
    assert run.env.status("forged-phase")["phase"] == "Succeeded"
    run.kubectl("-n", run.namespace, "delete", "agenttask", "forged-phase", "--timeout=30s")
    assert run.ledger.count("delete", uid) == 0


def test_phase_edited_backwards_is_put_right_by_the_next_poll(run: Run) -> None:
    _running(run, "rewound")
    _patch_status(run, "rewound", {"phase": "Pending", "reason": "Pending"})
    run.env.wait("phase restored", lambda: run.env.status("rewound").get("phase") == "Running", timeout=30)


def test_phase_outside_the_enum_is_rejected_by_the_api_server(run: Run) -> None:
    _running(run, "enum-phase")
    proc = _patch_status(run, "enum-phase", {"phase": "Done", "reason": "not a reason!"}, check=False)
    assert proc.returncode != 0 and "status.phase" in proc.stderr and "status.reason" in proc.stderr


def _metric(env: Env, name: str, *labels: str) -> float:
    """Sum of one metric of the operator's own /metrics over the lines carrying ``labels``."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{env.operator.health_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    lines = [line for line in text.splitlines() if line.startswith(name + "{") and all(x in line for x in labels)]
    assert lines, f"the operator's /metrics has no {name} with {labels}"
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.fixture
def bad_env(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
            tmp_path: Path) -> Iterator[Env]:
    """A namespace with its own operator running the misbehaving agents (own metrics)."""
    args = tuple(a for spec in BAD_AGENT_SPECS for a in ("--agent", spec))
    yield from make_env(request, control_plane, namespace, tmp_path, extra_args=args)


def test_null_in_custom_info_costs_no_write_per_poll(bad_env: Env) -> None:
    """A merge patch deletes null members; the operator leaves them out so that the stored
    status equals what it computes and polling sends nothing (it sent a PATCH per poll)."""
    env = bad_env
    env.apply("null-info", bad_template("get-null-custominfo"), pollInterval="1s")
    env.wait("running", lambda: env.status("null-info").get("customInfo") == {"step": 1})
    gets = ("agent_operator_agent_call_duration_seconds_count", 'method="get"')
    patches = ("agent_operator_api_writes_total", 'resource="agenttasks/status"', 'verb="patch"')
    env.wait("first polls done", lambda: _metric(env, *gets) >= 2, timeout=30)
    sent, polled = _metric(env, *patches), _metric(env, *gets)
    env.wait("four more polls", lambda: _metric(env, *gets) >= polled + 4, timeout=30)
    assert _metric(env, *patches) == sent


def test_operator_survived_every_case(run: Run) -> None:
    """Runs last in this module: the process is alive and no handler ever raised."""
    for case in CASES:
        run.env.wait(f"{case.id} settled", lambda c=case: _reached(run.env, c), timeout=90)
    assert run.operator.running
    logs = run.operator.logs()
    assert "handler for" not in logs and "Traceback" not in logs, logs[-4000:]

