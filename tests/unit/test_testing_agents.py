"""The test agents behave as their template says and record every call in the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_operator.core.identity import task_execution_metadata
from agent_operator.sdk import TaskExecution, TransientAgentError
from agent_operator.serialization import load_task_template
from agent_operator.testing.agents import (
    LEDGER_ENV,
    Ledger,
    PermanentTestError,
    TestAsyncAgent,
    TestInstantAgent,
    TestJobMeta,
    TestLatencyAgent,
    TestSyncAgent,
    agent_task_manifest,
    task_template,
)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    return Ledger(path)


def _md(uid: str = "uid1", attempt: int = 1):  # type: ignore[no-untyped-def]
    return task_execution_metadata(namespace="ns", name="t", uid=uid, attempt=attempt, max_attempts=3)


def test_async_agent_walks_phases_and_records_calls(ledger: Ledger) -> None:
    t = load_task_template(task_template("test-async", phases=["QUEUED", "RUNNING", "SUCCEEDED"], outputValues={"n": 3}))
    agent = TestAsyncAgent()
    meta = TestJobMeta.decode(agent.create(t, "/out", None, _md()).encode())
    phases = [agent.get(meta).phase for _ in range(4)]
    assert phases == [TaskExecution.QUEUED, TaskExecution.RUNNING, TaskExecution.SUCCEEDED, TaskExecution.SUCCEEDED]
    assert agent.get(meta).outputs == {"n": 3}
    agent.delete(meta)
    assert [c.method for c in ledger.calls("uid1")] == ["create"] + ["get"] * 5 + ["delete"]
    assert ledger.count("create", "uid1-1") == 1


def test_retryable_failures_end_early_attempts(ledger: Ledger) -> None:
    t = load_task_template(task_template("test-async", phases=["SUCCEEDED"], retryableFailures=1))
    agent = TestAsyncAgent()
    first = agent.create(t, "/out", None, _md(attempt=1))
    second = agent.create(t, "/out", None, _md(attempt=2))
    assert agent.get(first).phase == TaskExecution.RETRYABLE_FAILED
    assert agent.get(second).phase == TaskExecution.SUCCEEDED


def test_injected_errors_stop_after_times(ledger: Ledger) -> None:
    t = load_task_template(task_template("test-async", errors={"create": {"kind": "transient", "times": 2},
                                                             "get": {"kind": "permanent"}}))
    agent = TestAsyncAgent()
    for _ in range(2):
        with pytest.raises(TransientAgentError):
            agent.create(t, "/out", None, _md())
    meta = agent.create(t, "/out", None, _md())
    with pytest.raises(PermanentTestError):
        agent.get(meta)
    assert ledger.count("create", "uid1") == 3


def test_log_links_and_secret_leak_come_from_steps(ledger: Ledger) -> None:
    t = load_task_template(task_template(
        "test-instant", leakSecret="s/token",
        phases=[{"phase": "SUCCEEDED", "logLinks": [{"name": "log", "uri": "http://x/1"}]}]))
    agent = TestInstantAgent()
    secrets = {"s": {"token": "hunter2"}}
    res = agent.get(agent.create(t, "/out", None, _md(), secrets=secrets), secrets=secrets)
    assert res.log_links and res.log_links[0].uri == "http://x/1"
    assert res.message and "hunter2" in res.message


def test_latency_agent_is_async_and_sync_agent_does_once(ledger: Ledger) -> None:
    t = load_task_template(task_template("test-latency", phases=["SUCCEEDED"], latency=0.01))
    agent = TestLatencyAgent()

    async def run() -> int:
        meta = await agent.create(t, "/out", None, _md(uid="lat"))
        return (await agent.get(meta)).phase

    assert asyncio.run(run()) == TaskExecution.SUCCEEDED
    sync = TestSyncAgent()
    res = sync.do(load_task_template(task_template("test-sync", outputValues={"a": "b"})), "/out",
                  task_execution_metadata=_md(uid="sy"))
    assert res.phase == TaskExecution.SUCCEEDED and res.outputs == {"a": "b"}
    assert ledger.count("do", "sy") == 1


def test_manifest_helper_builds_agenttask() -> None:
    m = agent_task_manifest("x", task_template("test-async"), namespace="ns", maxAttempts=2)
    assert m["kind"] == "AgentTask" and m["spec"]["maxAttempts"] == 2
    assert m["spec"]["taskTemplate"]["type"] == "test-async"


def test_a_new_ledger_opened_by_several_threads_at_once_loses_no_call(tmp_path: Path) -> None:
    """Switching a new file to WAL takes a lock sqlite's busy timeout does not wait for; four
    threads recording their first call at once failed with "database is locked" in about one
    round in ten before the set-up retried (run-local runs its tasks concurrently)."""
    import threading

    for round_ in range(60):
        ledger = Ledger(tmp_path / f"ledger-{round_}.sqlite")
        errors: list[BaseException] = []

        def record(i: int, ledger: Ledger = ledger, errors: list[BaseException] = errors) -> None:
            try:
                ledger.append("t", "do", f"k{i}", 1, {})
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=record, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and ledger.count("do") == 4, errors
