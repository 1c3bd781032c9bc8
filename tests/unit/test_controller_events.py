"""The controller's cheap paths: which watch events wake an object, status merge patches,
which Events are posted, and the typed errors built from the API server's answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_operator.controller import errors
from agent_operator.controller.backend import merge_diff, retried
from agent_operator.controller.cache import ObjectCache
from agent_operator.controller.events import EventRecorder
from agent_operator.controller.operator import Controller, ControllerOptions
from agent_operator.core.model import EventRecord
from agent_operator.core.signing import Signer
from agent_operator.crd.phases import Phase


def _body(rv: int, *, status: dict[str, Any] | None = None, uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "t", "uid": uid, "resourceVersion": str(rv), **meta},
            "spec": {}, "status": status or {}}


def _controller() -> Controller:
    # no request is made in these tests: only the watch-event path runs
    return Controller(api=None, signer=Signer(b"k" * 32), options=ControllerOptions())  # type: ignore[arg-type]


def test_new_object_is_scheduled_and_own_write_echo_is_ignored() -> None:
    c = _controller()
    c.on_event(None, _body(1))
    assert c.scheduler.due_in(("ns", "t")) is not None
    c.scheduler.cancel(("ns", "t"))
    c.cache.remember(_body(5, status={"phase": "Running"}))  # the response of our own status patch
    c.on_event("MODIFIED", _body(3))  # an older event
    c.on_event("MODIFIED", _body(5, status={"phase": "Running"}))  # the echo
    assert c.scheduler.due_in(("ns", "t")) is None
    assert (c.cache.get(("ns", "t")) or {})["metadata"]["resourceVersion"] == "5"


def test_deletion_and_external_status_edits_wake_the_object() -> None:
    c = _controller()
    c.on_event(None, _body(1))
    c.scheduler.cancel(("ns", "t"))
    c.on_event("MODIFIED", _body(2, labels={"a": "b"}))
    assert c.scheduler.due_in(("ns", "t")) is None  # a label change needs no reconcile
    c.on_event("MODIFIED", _body(3, status={"resourceMeta": "forged"}, labels={"a": "b"}))
    assert c.scheduler.due_in(("ns", "t")) is not None
    c.scheduler.cancel(("ns", "t"))
    c.on_event("MODIFIED", _body(4, status={"resourceMeta": "forged"}, labels={"a": "b"},
                                 deletionTimestamp="2026-01-01T00:00:00Z"))
    assert c.scheduler.due_in(("ns", "t")) is not None


def test_recreated_object_with_same_name_starts_fresh() -> None:
    c = _controller()
    c.on_event(None, _body(10, status={"phase": "Succeeded"}))
    c.progress[("ns", "t")] = object()  # type: ignore[assignment]
    c.on_event("ADDED", _body(2, uid="u2"))
    assert (c.cache.get(("ns", "t")) or {})["metadata"]["uid"] == "u2"
    assert ("ns", "t") not in c.progress and c.scheduler.due_in(("ns", "t")) is not None
    c.on_event("DELETED", _body(3, uid="u2"))
    assert ("ns", "t") not in c.cache and c.scheduler.due_in(("ns", "t")) is None


def test_cache_never_goes_back_to_an_older_version() -> None:
    cache = ObjectCache()
    cache.remember(_body(7, managedFields=[{"manager": "kubectl"}]))
    cache.remember(_body(6))
    body = cache.get(("ns", "t")) or {}
    assert body["metadata"]["resourceVersion"] == "7" and "managedFields" not in body["metadata"]


def test_merge_diff_nulls_removed_keys_at_every_level() -> None:
    old = {"phase": "Running", "resourceMeta": "x", "customInfo": {"a": 1, "b": 2}, "logLinks": [{"uri": "1"}]}
    new = {"phase": "Running", "customInfo": {"a": 1, "c": 3}, "logLinks": [{"uri": "2"}]}
    assert merge_diff(old, new) == {"resourceMeta": None, "customInfo": {"b": None, "c": 3},
                                    "logLinks": [{"uri": "2"}]}
    assert merge_diff(new, new) == {}


@pytest.mark.parametrize(("mode", "posted"), [
    ("warnings", ["CreateResumed", "Retrying", "Succeeded"]),
    ("all", ["Created", "Running", "CreateResumed", "Retrying", "Succeeded"]),
])
def test_event_modes_decide_what_is_posted(mode: str, posted: list[str]) -> None:
    import asyncio

    from agent_operator.crd.resource import load_stored_agent_task

    sent: list[str] = []

    class Recorded:
        async def create_event(self, involved: dict[str, object], type_: str, reason: str, message: str) -> None:
            sent.append(reason)

    recorder = EventRecorder(Recorded(), ObjectCache(), mode)
    view = load_stored_agent_task(_body(1))
    stream = [EventRecord("Normal", "Created", "m"), EventRecord("Normal", "Created", "m"),  # a repeat
              EventRecord("Normal", "Running", "m"), EventRecord("Normal", "CreateResumed", "m"),
              EventRecord("Warning", "Retrying", "m"), EventRecord("Normal", "Succeeded", "m", final=True)]

    async def play() -> None:
        for event in stream:
            await recorder.record(view, event)
        await recorder.drain()
        assert recorder.pending == 0

    asyncio.run(play())
    assert sent == posted


class _Sink:
    """Records the reasons posted; ``gate`` (when set) holds every post until it opens."""

    def __init__(self, gate: Any = None) -> None:
        self.sent: list[str] = []
        self.gate = gate

    async def create_event(self, involved: dict[str, object], type_: str, reason: str, message: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(reason)


def test_events_wait_while_the_controller_has_a_backlog_and_follow_once_it_is_gone() -> None:
    import asyncio

    from agent_operator.crd.resource import load_stored_agent_task

    sink, backlog = _Sink(), [True]
    recorder = EventRecorder(sink, ObjectCache(), backlog=lambda: backlog[0])

    async def play() -> None:
        await recorder.record(load_stored_agent_task(_body(1)), EventRecord("Normal", "Succeeded", "m", final=True))
        await asyncio.sleep(0.35)
        assert sink.sent == [] and recorder.pending == 1  # held back: the tasks' status goes first
        backlog[0] = False
        await recorder.drain(timeout=5.0)

    asyncio.run(play())
    assert sink.sent == ["Succeeded"] and recorder.pending == 0


def test_a_held_back_event_is_posted_once_it_is_max_defer_old_even_under_backlog() -> None:
    import asyncio

    from agent_operator.controller import events
    from agent_operator.crd.resource import load_stored_agent_task

    now = [100.0]
    sink = _Sink()
    recorder = EventRecorder(sink, ObjectCache(), backlog=lambda: True, clock=lambda: now[0])

    async def play() -> None:
        await recorder.record(load_stored_agent_task(_body(1)), EventRecord("Warning", "Retrying", "m"))
        await asyncio.sleep(0.25)
        assert sink.sent == []
        now[0] += events.MAX_DEFER  # a sustained backlog delays Events, never starves them
        await recorder.drain(timeout=5.0)

    asyncio.run(play())
    assert sink.sent == ["Retrying"]


def test_events_over_the_queue_limit_are_dropped_and_counted() -> None:
    import asyncio

    from agent_operator.crd.resource import load_stored_agent_task
    from agent_operator.observability import metrics

    def dropped() -> float:
        return metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}_events_dropped_total") or 0.0

    before = dropped()

    async def play() -> list[str]:
        gate = asyncio.Event()
        sink = _Sink(gate)
        recorder = EventRecorder(sink, ObjectCache(), queue_limit=2)
        for i in range(4):  # the first is being posted (held by the gate), one more waits
            body = _body(1) | {"metadata": {**_body(1)["metadata"], "name": f"t{i}"}}
            await recorder.record(load_stored_agent_task(body), EventRecord("Normal", "Succeeded", "m", final=True))
        assert recorder.pending == 2
        gate.set()
        await recorder.drain(timeout=5.0)
        return sink.sent

    assert asyncio.run(play()) == ["Succeeded", "Succeeded"]
    assert dropped() == before + 2


def test_event_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="events mode 'some'"):
        EventRecorder(None, ObjectCache(), "some")  # type: ignore[arg-type]


def test_typed_errors_carry_the_api_status() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
              "message": "AgentTask.flyteagents.dev \"t\" is invalid: status.phase: Unsupported value",
              "details": {"causes": [{"field": "status.phase", "reason": "FieldValueNotSupported",
                                      "message": "Unsupported value: \"x\""}]}}
    e = errors.error_for(422, json.dumps(status).encode())
    assert isinstance(e, errors.Invalid) and e.code == 422 and e.reason == "Invalid"
    assert e.causes[0]["field"] == "status.phase" and "is invalid" in str(e)
    busy = errors.error_for(429, b'{"kind":"Status","message":"too many requests"}', retry_after="3")
    assert isinstance(busy, errors.TooManyRequests) and busy.retry_after == 3.0
    assert isinstance(errors.error_for(503, b"etcd unavailable"), errors.ServerError)
    assert isinstance(errors.error_for(404, b""), errors.NotFound)
    assert isinstance(errors.error_for(409, b""), errors.Conflict)
    assert isinstance(errors.error_for(403, b""), errors.Forbidden)
    other = errors.error_for(418, b"teapot")
    assert type(other) is errors.ApiError and other.code == 418 and "teapot" in str(other)


def test_only_a_new_attempt_or_a_transient_failure_counts_as_a_retry() -> None:
    from agent_operator.crd.status import AgentTaskStatus as S

    assert not retried(S(), S(phase=Phase.RUNNING, attempt=1))  # the first status of a task
    assert not retried(S(attempt=1), S(attempt=1, phase=Phase.SUCCEEDED))
    assert retried(S(attempt=1), S(attempt=2))
    assert retried(S(attempt=1), S(attempt=1, transient_failures=1))
    assert not retried(S(attempt=1, transient_failures=2), S(attempt=1, transient_failures=1))


def test_stopping_posts_held_back_events_at_once() -> None:
    import asyncio

    from agent_operator.crd.resource import load_stored_agent_task

    sink = _Sink()
    recorder = EventRecorder(sink, ObjectCache(), backlog=lambda: True)

    async def play() -> None:
        await recorder.record(load_stored_agent_task(_body(1)), EventRecord("Normal", "Succeeded", "m", final=True))
        await asyncio.sleep(0.25)
        assert sink.sent == []
        await recorder.drain(timeout=5.0)

    asyncio.run(play())
    assert sink.sent == ["Succeeded"]
