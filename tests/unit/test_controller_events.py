"""The kopf adapter's cheap paths: which watch events wake an object, and status merge patches."""

from __future__ import annotations

from typing import Any

from agent_operator.controller.backend import merge_diff
from agent_operator.controller.operator import Controller, ControllerOptions
from agent_operator.core.signing import Signer


def _body(rv: int, *, status: dict[str, Any] | None = None, uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "t", "uid": uid, "resourceVersion": str(rv), **meta},
            "spec": {}, "status": status or {}}


def _controller() -> Controller:
    return Controller(api=None, signer=Signer(b"k" * 32), options=ControllerOptions())  # type: ignore[arg-type]


def test_new_object_is_scheduled_and_own_write_echo_is_ignored() -> None:
    c = _controller()
    c.on_event(None, _body(1))
    assert c.scheduler.due_in(("ns", "t")) is not None
    c.scheduler.cancel(("ns", "t"))
    c.remember(_body(5, status={"phase": "Running"}))  # the response of our own status patch
    c.on_event("MODIFIED", _body(3))  # an older event
    c.on_event("MODIFIED", _body(5, status={"phase": "Running"}))  # the echo
    assert c.scheduler.due_in(("ns", "t")) is None
    assert c.cache[("ns", "t")]["metadata"]["resourceVersion"] == "5"


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
    c.on_event("ADDED", _body(2, uid="u2"))
    assert c.cache[("ns", "t")]["metadata"]["uid"] == "u2"
    c.on_event("DELETED", _body(3, uid="u2"))
    assert ("ns", "t") not in c.cache and c.scheduler.due_in(("ns", "t")) is None


def test_merge_diff_nulls_removed_keys_at_every_level() -> None:
    old = {"phase": "Running", "resourceMeta": "x", "customInfo": {"a": 1, "b": 2}, "logLinks": [{"uri": "1"}]}
    new = {"phase": "Running", "customInfo": {"a": 1, "c": 3}, "logLinks": [{"uri": "2"}]}
    assert merge_diff(old, new) == {"resourceMeta": None, "customInfo": {"b": None, "c": 3},
                                    "logLinks": [{"uri": "2"}]}
    assert merge_diff(new, new) == {}


def test_operator_waits_for_the_crd_before_serving(monkeypatch: Any) -> None:
    import asyncio

    from agent_operator.controller import operator as op

    answers = iter([False, False, True])

    class FakeApi:
        async def crd_served(self) -> bool:
            return next(answers)

    monkeypatch.setattr(op, "CRD_POLL", 0.01)
    c = Controller(api=FakeApi(), signer=Signer(b"k" * 32), options=ControllerOptions())  # type: ignore[arg-type]
    assert asyncio.run(c.wait_for_crd()) is True
    assert not c.ready
