"""Signing, message hygiene, conditions and the poll scheduler of the reconcile core."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agent_operator.core import conditions
from agent_operator.core.messages import MAX_MESSAGE_BYTES, clean
from agent_operator.core.scheduler import PollScheduler
from agent_operator.core.signing import Signer, TamperedResourceMeta
from agent_operator.crd.phases import ConditionType, Phase


def test_signed_resource_meta_round_trips_and_rejects_edits_and_copies() -> None:
    s = Signer(b"0" * 32)
    signed = s.sign(b'{"job":"a"}', uid="u1", attempt=1)
    assert s.verify(signed, uid="u1", attempt=1) == b'{"job":"a"}'
    with pytest.raises(TamperedResourceMeta):
        s.verify(signed, uid="u2", attempt=1)  # copied from another object
    with pytest.raises(TamperedResourceMeta):
        s.verify(signed, uid="u1", attempt=2)
    with pytest.raises(TamperedResourceMeta):
        s.verify(signed.replace(".v", ".w", 1)[:-2] + "xx", uid="u1", attempt=1)
    with pytest.raises(TamperedResourceMeta):
        Signer(b"1" * 32).verify(signed, uid="u1", attempt=1)


def test_a_remembered_verification_never_lets_an_edit_or_copy_through() -> None:
    s = Signer(b"0" * 32)
    signed = s.sign(b'{"job":"a"}', uid="u1", attempt=1)
    for _ in range(2):  # the second round is answered from what the signer remembers
        assert s.verify(signed, uid="u1", attempt=1) == b'{"job":"a"}'
        with pytest.raises(TamperedResourceMeta):
            s.verify(signed[:-2] + "xx", uid="u1", attempt=1)
        with pytest.raises(TamperedResourceMeta):
            s.verify(signed, uid="u1", attempt=2)
        with pytest.raises(TamperedResourceMeta):
            s.verify(signed, uid="u2", attempt=1)
    other = s.sign(b'{"job":"b"}', uid="u1", attempt=2)  # a new attempt replaces what is remembered
    assert s.verify(other, uid="u1", attempt=2) == b'{"job":"b"}'
    with pytest.raises(TamperedResourceMeta):
        s.verify(signed, uid="u1", attempt=2)
    s.forget("u1")
    assert s.verify(other, uid="u1", attempt=2) == b'{"job":"b"}'


def test_messages_are_scrubbed_before_they_are_bounded() -> None:
    secret = "s3cr3t-token-value"
    text = "x" * (MAX_MESSAGE_BYTES - 5) + secret
    out = clean(text, [secret])
    assert secret[:5] not in out[-200:] and len(out.encode()) <= MAX_MESSAGE_BYTES
    assert clean(f"token={secret}", [secret]) == "token=***"


def test_failed_phase_is_stalled_and_running_is_reconciling() -> None:
    failed = conditions.desired(Phase.FAILED, "AgentError", "boom")
    assert failed[ConditionType.STALLED][0] == "True" and failed[ConditionType.SUCCEEDED][0] == "False"
    running = conditions.desired(Phase.RUNNING, "Running", "")
    assert running[ConditionType.RECONCILING][0] == "True" and running[ConditionType.SUCCEEDED][0] == "Unknown"


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for ``predicate`` (checked every few ms); fail after ``timeout`` seconds."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


def idle(sched: PollScheduler[str]) -> bool:
    """Nothing scheduled and nothing running: no handler can run again unless scheduled."""
    return sched.depth == 0 and sched.busy == 0


def test_scheduler_runs_due_keys_once_each_with_bounded_concurrency() -> None:
    seen: list[str] = []
    active = 0
    peak = 0

    async def main() -> None:
        async def handler(key: str) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            seen.append(key)
            active -= 1

        sched: PollScheduler[str] = PollScheduler(handler, max_concurrency=2, per_group=2)
        runner = asyncio.create_task(sched.run())
        for i in range(6):
            sched.schedule(f"k{i}", 0.01 * (6 - i), group="a")
        sched.schedule("k0", 0.0, earliest=True)
        sched.cancel("k5")
        await until(lambda: len(seen) == 5 and idle(sched))
        runner.cancel()

    asyncio.run(main())
    assert sorted(seen) == ["k0", "k1", "k2", "k3", "k4"] and peak <= 2
    assert seen[0] == "k0"


def test_scheduler_dispatches_keys_due_close_together_in_one_wake_up() -> None:
    rounds = 0
    seen: list[str] = []

    class Counting(PollScheduler[str]):
        def _dispatch_due(self) -> None:
            nonlocal rounds
            before = self.busy
            super()._dispatch_due()
            rounds += self.busy > before

    async def main() -> None:
        async def handler(key: str) -> None:
            seen.append(key)

        sched = Counting(handler, resolution=0.05)
        runner = asyncio.create_task(sched.run())
        for i in range(5):
            sched.schedule(f"k{i}", 0.002 * (i + 1))  # five timers 2 ms apart
        await until(lambda: len(seen) == 5 and idle(sched))
        sched.schedule("now", 0.0)  # no delay: not held for the resolution
        await until(lambda: len(seen) == 6)
        runner.cancel()

    asyncio.run(main())
    assert rounds == 2 and seen[-1] == "now"


def test_a_key_due_now_is_not_held_behind_an_entry_waiting_for_the_timer_resolution() -> None:
    seen: list[str] = []

    async def main() -> None:
        async def handler(key: str) -> None:
            seen.append(key)

        sched: PollScheduler[str] = PollScheduler(handler, resolution=60.0)
        runner = asyncio.create_task(sched.run())
        sched.schedule("poll", 0.001)  # the scheduler now waits for the resolution (60 s)
        await asyncio.sleep(0.05)      # "poll" is overdue and heads the heap
        sched.schedule("new", 0.0)     # e.g. a new object: must run now, not in a minute
        await until(lambda: "new" in seen, timeout=10.0)
        runner.cancel()

    asyncio.run(main())
    assert sorted(seen) == ["new", "poll"]


def test_scheduler_reruns_a_key_scheduled_while_running() -> None:
    runs = 0

    async def main() -> None:
        sched: PollScheduler[str]

        async def handler(key: str) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                sched.schedule(key, 0.0)

        sched = PollScheduler(handler)
        runner = asyncio.create_task(sched.run())
        sched.schedule("a")
        await until(lambda: runs == 2 and idle(sched))
        runner.cancel()

    asyncio.run(main())
    assert runs == 2


def test_backoff_grows_exponentially_and_bounds_agent_hints() -> None:
    from agent_operator.core.transitions import MAX_RETRY_AFTER, Settings, backoff

    s = Settings(backoff_base=1.0, backoff_max=60.0)
    assert [backoff(n, s) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(10_000, s) == 60.0
    assert backoff(1, s, retry_after=30.0) == 30.0
    assert backoff(1, s, retry_after=float("inf")) == 1.0
    assert backoff(1, s, retry_after=10**9) == MAX_RETRY_AFTER


def test_plain_agent_methods_run_on_the_given_pool_and_async_ones_on_the_loop() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from agent_operator.sdk.invoke import invoke as _invoke

    def plain() -> str:
        return threading.current_thread().name

    async def coroutine() -> str:
        return threading.current_thread().name

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-x")
    try:
        assert asyncio.run(_invoke(plain, pool)).startswith("agent-x")
        assert asyncio.run(_invoke(coroutine, pool)) == threading.current_thread().name
    finally:
        pool.shutdown()
