"""The reconcile core drives test agents through whole lifecycles against an in-memory backend."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent_operator.core.clock import format_time
from agent_operator.core.context import ContextFactory
from agent_operator.core.model import ActionKind, EventRecord, MetadataChange
from agent_operator.core.prepare import prepare
from agent_operator.core.reconcile import Context, Settings, decide
from agent_operator.core.runner import CallLimits, Progress, advance
from agent_operator.core.signing import Signer
from agent_operator.crd import names
from agent_operator.crd.resource import AgentTask, load_stored_agent_task
from agent_operator.crd.status import AgentTaskStatus
from agent_operator.sdk import AgentRegistry
from agent_operator.testing.agents import (
    LEDGER_ENV,
    Ledger,
    TestAsyncAgent,
    TestInstantAgent,
    TestSyncAgent,
    task_template,
)

SIGNER = Signer(b"k" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class MemoryBackend:
    """Counts writes the way the API server would see them."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.events: list[EventRecord] = []
        self.released = False
        self.stored: dict[str, bytes] = {}

    async def patch_metadata(self, view: AgentTask, change: MetadataChange) -> AgentTask:
        self.writes.append("metadata")
        fin = view.metadata.finalizers + ((names.FINALIZER,) if change.add_finalizer else ())
        ann = dict(view.metadata.annotations)
        if change.create_pending is not None:
            ann[names.ANNOTATION_CREATE_PENDING] = str(change.create_pending)
        return with_meta(view, finalizers=fin, annotations=ann)

    async def write_status(self, view: AgentTask, status: AgentTaskStatus) -> AgentTask:
        self.writes.append("status")
        # what the API server stores: the JSON form, read back
        return dataclasses.replace(view, status=AgentTaskStatus.from_dict(status.to_dict()))

    async def release(self, view: AgentTask) -> None:
        self.writes.append("release")
        self.released = True

    async def emit(self, view: AgentTask, event: EventRecord) -> None:
        self.events.append(event)

    async def store_outputs(self, view: AgentTask, ref: str, data: bytes) -> None:
        self.stored[ref] = data


@pytest.fixture(autouse=True)
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger.sqlite"))
    with AgentRegistry.snapshot():
        for cls in (TestAsyncAgent, TestSyncAgent, TestInstantAgent):
            AgentRegistry.register(cls(), override=True)
        yield Ledger(tmp_path / "ledger.sqlite")


def view(template: dict[str, Any] | None = None, uid: str = "u1", **spec: Any) -> AgentTask:
    body = {"taskTemplate": template or task_template("test-async"), "pollInterval": "1s", **spec}
    meta = {"namespace": "ns", "name": "t", "uid": uid, "generation": 1,
            "creationTimestamp": format_time(1_800_000_000.0)}
    return load_stored_agent_task({"metadata": meta, "spec": body})


def with_meta(v: AgentTask, **changes: Any) -> AgentTask:
    """``v`` with metadata fields replaced."""
    return dataclasses.replace(v, metadata=dataclasses.replace(v.metadata, **changes))


def deleting(v: AgentTask) -> AgentTask:
    """``v`` after ``kubectl delete`` (deletionTimestamp set, finalizers still there)."""
    return with_meta(v, deletion_timestamp=format_time(1_800_000_000.0))


class Harness:
    def __init__(self, v: AgentTask, settings: Settings = Settings(default_poll_interval=1.0, jitter=0.0)) -> None:
        self.view = v
        self.backend = MemoryBackend()
        self.progress = Progress()
        self.clock = Clock()
        self.settings = settings
        self.secrets: dict[str, dict[str, str]] = {}
        self.context = ContextFactory(SIGNER, settings)

    @property
    def status(self) -> dict[str, Any]:
        """The status as the API server stores it (JSON)."""
        return self.view.status.to_dict()

    async def _secrets(self, v: AgentTask) -> dict[str, dict[str, str]]:
        return self.secrets

    def step(self) -> Any:
        out = asyncio.run(advance(self.view, self.context, self.backend, self.progress, clock=self.clock,
                                  secrets=self._secrets, limits=CallLimits(call_timeout=5, do_timeout=5)))
        self.view = out.view
        return out.action

    def run(self, max_steps: int = 50) -> None:
        for _ in range(max_steps):
            action = self.step()
            if action is None:
                return
            self.clock.now += max(action.delay, 0.001)
        raise AssertionError(f"no end after {max_steps} steps: {self.status}")

    def cond(self, ctype: str) -> str:
        """The condition's status; "absent" when the status does not hold it (kstatus: false)."""
        return next((c["status"] for c in self.status["conditions"] if c["type"] == ctype), "absent")


def test_async_task_succeeds_with_three_writes_and_no_writes_while_polling(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"] * 5 + ["SUCCEEDED"], outputValues={"n": 3})))
    h.run()
    assert h.status["phase"] == "Succeeded"
    assert h.status["outputs"] == {"n": 3}
    assert h.backend.writes == ["metadata", "status", "status"]
    assert agents.count("create", "u1") == 1 and agents.count("get", "u1") == 6
    assert h.cond("Succeeded") == "True" and h.cond("Ready") == "True"
    # kstatus's abnormal-true conditions are present only while true
    assert h.cond("Stalled") == "absent" and h.cond("Reconciling") == "absent"
    assert h.view.metadata.annotations[names.ANNOTATION_CREATE_PENDING] == "1"


def test_intra_phase_log_link_change_reaches_status() -> None:
    steps = [{"phase": "RUNNING", "logLinks": [{"name": "log", "uri": f"http://logs/{i}"}]} for i in (1, 1, 2)]
    h = Harness(view(task_template("test-async", phases=[*steps, "SUCCEEDED"])))
    seen = []
    for _ in range(20):
        action = h.step()
        seen.append([link["uri"] for link in h.status.get("logLinks", [])])
        if action is None:
            break
        h.clock.now += action.delay + 0.001
    assert ["http://logs/2"] in seen
    assert h.backend.writes.count("status") == 3  # Running(log 1), Running(log 2), Succeeded


def test_sync_task_costs_one_write(agents: Ledger) -> None:
    h = Harness(view(task_template("test-sync", outputValues={"a": "b"})))
    h.run()
    assert h.status["phase"] == "Succeeded" and h.status["outputs"] == {"a": "b"}
    assert h.backend.writes == ["status"]
    assert agents.count("do", "u1") == 1


def test_retryable_failure_starts_new_attempt_with_new_key(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["SUCCEEDED"], retryableFailures=1), maxAttempts=2))
    h.run()
    assert h.status["phase"] == "Succeeded" and h.status["attempt"] == 2
    assert [c.key for c in agents.calls("u1", "create")] == ["u1-1", "u1-2"]
    assert any(e.reason == "Retrying" for e in h.backend.events)


def test_retryable_failure_after_max_attempts_fails(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["SUCCEEDED"], retryableFailures=5), maxAttempts=2))
    h.run()
    assert h.status["phase"] == "Failed" and h.status["reason"] == "AttemptsExhausted"
    assert h.cond("Stalled") == "True" and h.cond("Succeeded") == "False"


def test_aborted_maps_to_aborted_and_undefined_phase_is_agent_error() -> None:
    h = Harness(view(task_template("test-async", phases=["ABORTED"])))
    h.run()
    assert h.status["phase"] == "Aborted"
    h = Harness(view(task_template("test-async", phases=["UNDEFINED"])))
    h.run()
    assert h.status["phase"] == "Failed" and h.status["reason"] == "AgentError"
    assert "UNDEFINED" in h.status["message"]


def test_transient_errors_back_off_then_stall_then_recover(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["SUCCEEDED"], errors={"get": {"times": 6}})),
                settings=Settings(default_poll_interval=1.0, jitter=0.0, transient_budget=3))
    delays = []
    stalled_seen = False
    for _ in range(30):
        action = h.step()
        if h.status.get("transientFailures"):
            stalled_seen |= h.cond("Stalled") == "True"
            assert h.cond("Reconciling") in ("True", "absent")
        if action is None:
            break
        delays.append(action.delay)
        h.clock.now += action.delay + 0.001
    assert h.status["phase"] == "Succeeded" and "transientFailures" not in h.status
    assert stalled_seen
    assert max(delays) >= 16  # 1, 2, 4, 8, 16, 32: exponential


def test_permanent_agent_error_fails_with_bounded_scrubbed_message() -> None:
    h = Harness(view(task_template("test-async", errors={"create": {"kind": "permanent"}}, leakSecret="s/k"),
                     secretRefs=[{"name": "s"}]))
    h.secrets = {"s": {"k": "supersecretvalue"}}
    h.run()
    assert h.status["phase"] == "Failed" and h.status["reason"] == "AgentError"
    assert "injected permanent create error" in h.status["message"]


def test_secret_value_is_scrubbed_from_status_message() -> None:
    h = Harness(view(task_template("test-instant", leakSecret="s/k"), secretRefs=[{"name": "s"}]))
    h.secrets = {"s": {"k": "supersecretvalue"}}
    h.run()
    assert "supersecretvalue" not in str(h.status) and "***" in h.status["message"]


def test_unknown_task_type_and_bad_template_fail_with_reasons() -> None:
    tmpl = task_template("test-async")
    tmpl["type"] = "no-such-type"
    h = Harness(view(tmpl))
    h.run()
    assert h.status["reason"] == "AgentNotFound" and "test-async" in h.status["message"]
    h = Harness(view({"type": "test-async", "interface": {"inputs": 7}}))
    h.run()
    assert h.status["reason"] == "InvalidSpec" and "spec.taskTemplate" in h.status["message"]
    h = Harness(view(task_template("test-async"), inputs={"nope": 1}))
    h.run()
    assert h.status["reason"] == "InvalidSpec" and "spec.inputs.nope" in h.status["message"]


def test_agent_lookup_that_may_succeed_later_waits_instead_of_failing(agents: Ledger) -> None:
    unsure: list[bool] = [True]

    def discovery_failing(category: Any) -> str | None:
        return "Remote agent service discovery failed (test)" if unsure[0] else None

    AgentRegistry.add_not_found_hint(discovery_failing, transient=True)
    h = Harness(view({**task_template("test-async"), "type": "later-type"}))
    action = h.step()
    status = h.status
    assert status["phase"] == "Pending" and status["reason"] == "AgentUnavailable", status
    assert "agent lookup failed with a transient error" in status["message"] and action.delay > 0
    assert h.cond("Reconciling") == "True"
    unsure[0] = False  # discovery answered, and the type is not there: now it is permanent
    h.clock.now += action.delay
    h.run()
    assert h.status["phase"] == "Failed" and h.status["reason"] == "AgentNotFound"


def test_waiting_for_an_agent_lookup_is_bounded_by_spec_timeout(agents: Ledger) -> None:
    AgentRegistry.add_not_found_hint(lambda category: "discovery failing (test)", transient=True)
    h = Harness(view({**task_template("test-async"), "type": "later-type"}, timeout="20s"))
    h.run()
    status = h.status
    assert status["phase"] == "TimedOut" and "spec.timeout (20s) elapsed while no agent was known" in status["message"]
    assert h.clock.now - 1_800_000_000.0 <= 20.5  # the last backoff was cut at the deadline


def test_timeout_deletes_job_and_times_out(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"]), timeout="5s"))
    h.run()
    assert h.status["phase"] == "TimedOut" and agents.count("delete", "u1") == 1
    assert h.cond("Stalled") == "True"


def test_tampered_resource_meta_is_refused(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"])))
    h.step()
    forged = base64.urlsafe_b64encode(b'{"x":1}').decode().rstrip("=")
    status = dataclasses.replace(h.view.status, resource_meta=f"v1.1.{forged}.AAAA")
    h.view = dataclasses.replace(h.view, status=status)
    gets = agents.count("get", "u1")
    h.clock.now += 5
    assert h.step() is None
    assert h.status["reason"] == "ResourceMetaTampered" and h.cond("Stalled") == "True"
    assert agents.count("get", "u1") == gets


def test_deletion_calls_agent_delete_once_then_releases(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"])))
    h.step()
    h.view = deleting(h.view)
    h.run()
    assert h.backend.released and agents.count("delete", "u1") == 1


def test_only_the_events_that_end_a_task_are_marked_final(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING", "SUCCEEDED"])))
    h.run()
    assert [(e.reason, e.final) for e in h.backend.events] == [
        ("Created", False), ("Running", False), ("Succeeded", True)]
    h = Harness(view(task_template("test-async", phases=["RUNNING"]), uid="u2"))
    h.step()
    h.view = deleting(h.view)
    h.run()
    assert h.backend.events[-1].reason == "AgentDeleted" and h.backend.events[-1].final


def test_deletion_with_orphan_policy_or_terminal_task_skips_agent(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"]), deletionPolicy="Orphan"))
    h.step()
    h.view = deleting(h.view)
    h.run()
    assert h.backend.released and agents.count("delete", "u1") == 0
    h = Harness(view(task_template("test-instant"), uid="u2"))
    h.run()
    h.view = deleting(h.view)
    h.run()
    assert h.backend.released and agents.count("delete", "u2") == 0


def test_failing_delete_retries_with_events_until_it_works(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"], errors={"delete": {"times": 2}})))
    h.step()
    h.view = deleting(h.view)
    h.run()
    assert h.backend.released and agents.count("delete", "u1") == 3
    assert sum(e.reason == "AgentDeleteFailed" for e in h.backend.events) == 2


def test_resume_after_crash_between_create_and_status_uses_same_key(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING", "SUCCEEDED"])))
    # the crash: marker written, create called, nothing else stored
    v = with_meta(h.view, finalizers=(names.FINALIZER,), annotations={names.ANNOTATION_CREATE_PENDING: "1"})
    TestAsyncAgent().create(prepare(v).template(), "", None,
                            __import__("agent_operator.core.identity", fromlist=["x"]).task_execution_metadata(
                                namespace="ns", name="t", uid="u1", attempt=1, max_attempts=1))
    h.view = v
    h.run()
    assert h.status["phase"] == "Succeeded"
    assert {c.key for c in agents.calls("u1", "create")} == {"u1-1"}
    assert any(e.reason == "CreateResumed" for e in h.backend.events)
    assert "metadata" not in h.backend.writes


def test_large_outputs_are_not_inlined(agents: Ledger) -> None:
    h = Harness(view(task_template("test-instant", outputBytes=70_000), outputPrefix="/tmp/out"))
    h.run()
    assert "outputs" not in h.status and h.status["outputsRef"] == "/tmp/out/outputs.pb"
    assert "/tmp/out/outputs.pb" in h.backend.stored
    h = Harness(view(task_template("test-instant", outputBytes=70_000), uid="u3"))
    h.run()
    assert "outputs" not in h.status and "not stored" in h.status["message"]


def test_conditions_keep_transition_time_when_status_unchanged() -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING", "RUNNING", "SUCCEEDED"])))
    h.step()
    first = {c["type"]: c["lastTransitionTime"] for c in h.status["conditions"]}
    h.clock.now += 100
    h.step()
    again = {c["type"]: c["lastTransitionTime"] for c in h.status["conditions"]}
    assert first == again and h.backend.writes == ["metadata", "status"]


def test_poll_interval_prefers_agent_hint_then_spec() -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"], nextPollSeconds=7), pollInterval="3s"))
    action = h.step()
    assert action.kind in (ActionKind.GET, ActionKind.REQUEUE) and action.delay == pytest.approx(7, abs=0.01)
    h = Harness(view(task_template("test-async", phases=["RUNNING"]), uid="u9", pollInterval="3s"))
    assert h.step().delay == pytest.approx(3, abs=0.01)


def test_decide_is_pure() -> None:
    v = view()
    ctx = Context(signer=SIGNER, prepared=prepare(v))
    assert decide(v, ctx, 1.0) == decide(v, ctx, 1.0)


def test_first_poll_after_restart_is_spread_over_one_interval() -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING"]), pollInterval="10s"))
    h.step()
    delays = set()
    for uid in ("a", "b", "c", "d"):
        v = with_meta(h.view, uid=uid)
        v = dataclasses.replace(v, status=dataclasses.replace(
            v.status, resource_meta=SIGNER.sign(b'{}', uid=uid, attempt=1)))
        ctx = Context(signer=SIGNER, prepared=prepare(v), settings=h.settings)
        action = decide(v, ctx, h.clock.now).action
        assert action.kind == ActionKind.GET and 0 <= action.delay < 10
        assert decide(v, ctx, h.clock.now).action == action
        delays.add(round(action.delay, 3))
    assert len(delays) > 1


def test_sync_retryable_failure_calls_do_again(agents: Ledger) -> None:
    h = Harness(view(task_template("test-sync", phases=["SUCCEEDED"], retryableFailures=1), maxAttempts=2))
    h.run()
    assert h.status["phase"] == "Succeeded" and h.status["attempt"] == 2
    assert [c.key for c in agents.calls("u1", "do")] == ["u1-1", "u1-2"]
    assert h.backend.writes == ["status"]


def test_running_task_is_polled_after_a_restart(agents: Ledger) -> None:
    h = Harness(view(task_template("test-async", phases=["RUNNING", "RUNNING", "SUCCEEDED"]), pollInterval="5s"))
    h.step()
    h.progress = Progress()  # the operator restarted: nothing in memory
    h.run()
    assert h.status["phase"] == "Succeeded" and agents.count("create", "u1") == 1


def test_slow_sync_do_shows_running_while_quick_one_costs_one_write() -> None:
    h = Harness(view(task_template("test-sync", runSeconds=0.5)))
    seen: list[str] = []
    real = h.backend.write_status

    async def spy(v: AgentTask, status: AgentTaskStatus) -> AgentTask:
        seen.append(str(status.phase))
        return await real(v, status)

    h.backend.write_status = spy  # type: ignore[method-assign]
    out = asyncio.run(advance(h.view, h.context, h.backend, h.progress, clock=h.clock,
                              limits=CallLimits(do_timeout=5, do_progress_after=0.1)))
    assert out.action is None and seen == ["Running", "Succeeded"]


def test_a_stored_spec_the_model_rejects_fails_the_task_naming_the_field() -> None:
    """Stored under an older schema (the API server does not re-check stored objects)."""
    h = Harness(view(task_template("test-async"), pollInterval="0.5s"))
    assert h.view.spec is None and h.view.spec_error is not None
    assert h.step() is None
    assert h.status["phase"] == "Failed" and h.status["reason"] == "InvalidSpec"
    assert h.status["message"].startswith("spec.pollInterval: ") and h.backend.writes == ["status"]


def test_prepared_keeps_no_decoded_template_and_decodes_the_same_one_each_time() -> None:
    v = view(task_template("test-async", inputs={"n": "INTEGER"}), inputs={"n": 3})
    prepared = prepare(v)
    # nothing decoded is kept per task in flight: only the spec, the agent and its info
    assert {f.name for f in dataclasses.fields(prepared)} == {"spec", "agent", "info", "poll_interval"}
    first, second = prepared.template(), prepared.template()
    assert first == second and first is not second and first.type == "test-async"
    inputs = prepared.inputs(first)
    assert inputs is not None and inputs.literals["n"].scalar.primitive.integer == 3
    assert prepare(view()).inputs(prepare(view()).template()) is None  # no inputs declared, none given


def test_inputs_the_interface_cannot_take_still_fail_when_prepared() -> None:
    from agent_operator.core.prepare import PrepareFailure

    with pytest.raises(PrepareFailure) as e:
        prepare(view(task_template("test-async", inputs={"n": "INTEGER"}), inputs={"n": "three"}))
    assert e.value.reason == "InvalidSpec" and "spec.inputs" in e.value.message
