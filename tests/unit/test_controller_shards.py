"""The controller's uid-shard paths: the client-side filter (same hash as the API server), the
selector handed to kopf, the per-call fence and the drain before a handover."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_operator.controller import kopf_adapter
from agent_operator.controller.operator import Controller, ControllerOptions, ShardFenceClosed
from agent_operator.core.reconcile import Context
from agent_operator.core.scheduler import PollScheduler
from agent_operator.core.signing import Signer
from agent_operator.ha import metrics, ring, shards


def _body(uid: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": "1"}, "spec": {}, "status": {}}


def _controller(**options: Any) -> Controller:
    return Controller(api=None, signer=Signer(b"k" * 32), options=ControllerOptions(**options))  # type: ignore[arg-type]


def _uid_in(slot: int, slots: int) -> str:
    for i in range(100000):
        uid = f"00000000-0000-0000-0000-{i:012d}"
        if ring.slot_of(uid, slots) == slot:
            return uid
    raise AssertionError("no uid found")


def test_events_outside_the_replicas_slots_are_dropped_and_counted() -> None:
    mine, theirs = _uid_in(0, 2), _uid_in(1, 2)
    view = shards.ShardView(slots=2, covered=frozenset({0}), driving=lambda: frozenset({0}))
    c = _controller(shard_covers=view.covers)
    before = metrics.FILTERED._value.get()  # noqa: SLF001 - prometheus_client has no public getter
    c.on_event(None, _body(mine, "a"))
    c.on_event(None, _body(theirs, "b"))
    assert ("ns", "a") in c.cache and ("ns", "b") not in c.cache
    assert metrics.FILTERED._value.get() == before + 1  # noqa: SLF001


def test_the_selector_goes_to_kopf_for_list_and_watch() -> None:
    pytest.importorskip("kopf")
    selector = ring.selector([0], 2)
    settings = kopf_adapter.settings(watch_inactivity_timeout=70, api_timeout=30, shard_selector=selector)
    collected = settings.watching.shard_selectors
    assert list(collected.values()) == [selector]
    unsharded = kopf_adapter.settings(watch_inactivity_timeout=70, api_timeout=30)
    assert not list(unsharded.watching.shard_selectors.values())


def test_a_closed_fence_refuses_the_agent_call_and_retries_later() -> None:
    open_ = {"x": True}
    c = _controller(shard_gate=lambda uid: open_["x"])
    ctx = Context(signer=Signer(b"k" * 32))
    assert c._fenced_pool("u", ctx) is None  # open: the agent's pool (none without an agent)
    open_["x"] = False
    with pytest.raises(ShardFenceClosed):
        c._fenced_pool("u", ctx)


def test_drain_waits_for_running_handlers_and_starts_no_new_ones() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        release = asyncio.Event()

        async def handler(key: str) -> None:
            log.append(f"start {key}")
            await release.wait()
            log.append(f"end {key}")

        s: PollScheduler[str] = PollScheduler(handler)
        runner = asyncio.create_task(s.run())
        s.schedule("a")
        await asyncio.sleep(0.01)
        drained = asyncio.create_task(s.drain())
        s.schedule("b")
        await asyncio.sleep(0.01)
        assert not drained.done()
        release.set()
        await drained
        runner.cancel()
        return log

    assert asyncio.run(scenario()) == ["start a", "end a"]
