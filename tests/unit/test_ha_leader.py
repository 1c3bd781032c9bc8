"""Leader election semantics against an in-memory Lease (the real API server: tests/integration)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from agent_operator.ha.leader import (
    LeaderElector,
    LeadershipLost,
    Timing,
    micro_time,
    run_with_leader_election,
)

from lease_memory import MemoryLease

FAST = Timing(lease_seconds=1.0, renew_seconds=0.7, retry_seconds=0.15)
KW: dict[str, Any] = dict(client=None, namespace="ns", name="lease",
                          lease_seconds=FAST.lease_seconds, renew_seconds=FAST.renew_seconds,
                          retry_seconds=FAST.retry_seconds, hard_exit=False)


def test_timing_rejects_renew_deadline_not_below_lease_duration() -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        Timing(lease_seconds=10, renew_seconds=10, retry_seconds=2)
    with pytest.raises(ValueError, match="renew_seconds"):
        Timing(lease_seconds=10, renew_seconds=2, retry_seconds=2)


def test_micro_time_always_has_six_fractional_digits() -> None:
    from datetime import datetime, timezone

    assert micro_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2026-01-02T03:04:05.000000Z"


def test_first_candidate_creates_lease_then_second_is_refused() -> None:
    async def scenario() -> None:
        lease = MemoryLease()
        a, b = LeaderElector(lease.view(), "a", FAST), LeaderElector(lease.view(), "b", FAST)
        assert await a.try_acquire_or_renew(1)
        assert not await b.try_acquire_or_renew(1)
        assert a.is_leader and not b.is_leader and b.holder == "a"
        spec = lease.obj["spec"]  # type: ignore[index]
        assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
        assert spec["leaseDurationSeconds"] == 1

    asyncio.run(scenario())


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    async def scenario() -> None:
        lease = MemoryLease()
        a = LeaderElector(lease.view(), "a", FAST)
        assert await a.try_acquire_or_renew(1)
        first = dict(lease.obj["spec"])  # type: ignore[index]
        await asyncio.sleep(0.01)
        assert await a.try_acquire_or_renew(1)
        spec = lease.obj["spec"]  # type: ignore[index]
        assert spec["acquireTime"] == first["acquireTime"] and spec["renewTime"] != first["renewTime"]
        assert spec["leaseTransitions"] == 0

    asyncio.run(scenario())


def test_standby_takes_over_only_after_a_full_lease_duration_without_renewal() -> None:
    async def scenario() -> float:
        lease = MemoryLease()
        a, b = LeaderElector(lease.view(), "a", FAST), LeaderElector(lease.view(), "b", FAST)
        assert await a.try_acquire_or_renew(1)
        assert not await b.try_acquire_or_renew(1)  # b observes a's record now
        observed = time.monotonic()
        while not await b.try_acquire_or_renew(1):  # a is "dead": it never renews again
            await asyncio.sleep(0.05)
        assert lease.obj["spec"]["leaseTransitions"] == 1  # type: ignore[index]
        return time.monotonic() - observed

    waited = asyncio.run(scenario())
    assert waited >= FAST.lease_seconds  # the safety property, not a performance bound


def test_released_lease_is_taken_at_the_next_poll() -> None:
    async def scenario() -> None:
        lease = MemoryLease()
        a, b = LeaderElector(lease.view(), "a", FAST), LeaderElector(lease.view(), "b", FAST)
        assert await a.try_acquire_or_renew(1)
        assert not await b.try_acquire_or_renew(1)
        assert await a.release()
        assert not lease.obj["spec"].get("holderIdentity")  # type: ignore[index]
        assert await b.try_acquire_or_renew(1)

    asyncio.run(scenario())


def test_partitioned_leader_stops_work_before_standby_takes_over() -> None:
    """Never two leaders: A is cut off from the API; B becomes leader only after A stopped."""
    events: dict[str, float] = {}

    async def scenario() -> None:
        lease = MemoryLease()
        view_a = lease.view()

        async def work_a() -> None:
            events["a_started"] = time.monotonic()
            try:
                await asyncio.sleep(3600)
            finally:
                events["a_stopped"] = time.monotonic()

        async def work_b() -> None:
            events["b_started"] = time.monotonic()

        run_a = asyncio.ensure_future(run_with_leader_election(work_a, store=view_a, identity="a", **KW))
        while "a_started" not in events:
            await asyncio.sleep(0.01)
        view_b = lease.view()
        b_asked = asyncio.Event()
        read = view_b.get

        async def get_b(timeout: float) -> Any:
            b_asked.set()
            return await read(timeout)

        view_b.get = get_b  # type: ignore[method-assign]
        run_b = asyncio.ensure_future(run_with_leader_election(work_b, store=view_b, identity="b", **KW))
        await asyncio.wait_for(b_asked.wait(), 10)  # B is a standby looking at the Lease
        view_a.partitioned = True
        with pytest.raises(LeadershipLost):
            await run_a
        await asyncio.wait_for(run_b, 10)

    asyncio.run(scenario())
    assert events["a_stopped"] < events["b_started"]


def test_leader_that_sees_another_holder_steps_down_at_once() -> None:
    async def scenario() -> None:
        lease = MemoryLease()

        async def work() -> None:
            await asyncio.sleep(3600)

        run = asyncio.ensure_future(run_with_leader_election(work, store=lease.view(), identity="a", **KW))
        while lease.obj is None:
            await asyncio.sleep(0.01)
        # an operator with a misconfigured lease duration grabs it
        obj = lease.obj
        obj["spec"] = dict(obj["spec"], holderIdentity="intruder")
        await lease.view().replace(obj, 1)
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(run, 5)

    asyncio.run(scenario())


def test_main_error_releases_lease_and_propagates() -> None:
    async def scenario() -> MemoryLease:
        lease = MemoryLease()

        async def work() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            await run_with_leader_election(work, store=lease.view(), identity="a", **KW)
        return lease

    lease = asyncio.run(scenario())
    assert lease.writes[-1] == ("replace", None)  # released


def test_cancelled_election_stops_main_before_releasing() -> None:
    order: list[str] = []

    async def scenario() -> MemoryLease:
        lease = MemoryLease()

        started = asyncio.Event()

        async def work() -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            finally:
                order.append(f"main stopped, holder={lease.obj['spec'].get('holderIdentity')}")  # type: ignore[index]

        run = asyncio.ensure_future(run_with_leader_election(work, store=lease.view(), identity="a", **KW))
        await asyncio.wait_for(started.wait(), 10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return lease

    lease = asyncio.run(scenario())
    assert order == ["main stopped, holder=a"]
    assert lease.writes[-1] == ("replace", None)


def test_blocked_leader_process_exits_before_its_lease_can_expire(tmp_path: Path) -> None:
    """The watchdog thread ends a leader whose event loop is stuck past the renew deadline."""
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from lease_memory import MemoryLease
        from agent_operator.ha.leader import run_with_leader_election

        lease = MemoryLease()

        async def work():
            print("leading", time.monotonic(), flush=True)
            time.sleep(60)  # a blocking call holds the event loop: no renewals happen

        asyncio.run(run_with_leader_election(work, client=None, namespace="ns", name="lease",
            identity="a", store=lease.view(), lease_seconds=1.0, renew_seconds=0.7, retry_seconds=0.15))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    ended = time.monotonic()
    assert proc.returncode == 1, proc.stderr
    assert "exiting" in proc.stderr
    started = float(proc.stdout.split()[1])
    assert ended - started < 30  # exited on its own, long before the 60 s block ended


def test_standby_waiting_for_the_lease_reports_ready() -> None:
    """A rolling update (maxUnavailable 0) needs the new standby pod to become ready."""
    import urllib.request

    from agent_operator.ha import leader
    from agent_operator.observability import health

    srv = health.start_http_server(0, lambda: False, standby=leader.standby_ready, host="127.0.0.1")

    def readyz() -> int:
        try:
            with urllib.request.urlopen(srv.url + "/readyz", timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    async def scenario() -> list[int]:
        lease = MemoryLease()
        holder = LeaderElector(lease.view(), "other", FAST)
        assert await holder.try_acquire_or_renew(1)
        codes = [await asyncio.to_thread(readyz)]
        view = lease.view()

        async def work() -> None:
            pass

        async def until(predicate: Any) -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        run = asyncio.ensure_future(run_with_leader_election(work, store=view, identity="b", **KW))
        await asyncio.wait_for(until(lambda: leader.STATE.role == "standby" and leader.STATE.api_reachable), 10)
        codes.append(await asyncio.to_thread(readyz))  # standby, API reachable
        view.partitioned = True
        await asyncio.wait_for(until(lambda: not leader.STATE.api_reachable), 10)
        codes.append(await asyncio.to_thread(readyz))  # standby cut off from the API
        run.cancel()
        return codes

    import urllib.error

    try:
        assert asyncio.run(scenario()) == [503, 200, 503]
        assert leader.STATE.role == "disabled"
    finally:
        srv.stop()
