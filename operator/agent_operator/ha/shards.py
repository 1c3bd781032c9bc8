"""Active-active replicas sharing AgentTasks by uid hash, with fenced handover.

Objects (all ``coordination.k8s.io/v1`` Leases in the operator's namespace):

* one **member Lease** per replica (:mod:`agent_operator.ha.membership`), renewed every
  ``retry_seconds``; liveness is judged by each observer on its own clock;
* one **owner table**: the Lease named after the ring, whose annotation
  ``flyteagents.dev/shard-owners`` lists the member owning each hash slot ("" = free).
  It is only ever written with optimistic concurrency (``resourceVersion``) and every write
  bumps ``flyteagents.dev/shard-epoch``, so two writers based on the same read cannot both
  win.

The fence: a replica *drives* a slot (watches its tasks and calls their agents) only while

1. its own member Lease is fresh (renewed less than ``renew_seconds`` ago), and
2. its last successful table write — made while fresh — names it as the slot's owner.

A slot changes owner only by a table write, and a replica claims a slot only when the
table says it is free (its owner released it after draining) or its owner is dead (member
Lease unchanged for a lease duration as observed by the claimer, which reads the table
*before* listing members so that an owner's renew-then-confirm write races it on the
table's resourceVersion).  After a lapse (renew deadline missed, e.g. a paused process) a
replica drives nothing until a new table write confirms its slots.  See docs/scaling.md
for the state diagram.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agent_operator.ha import metrics
from agent_operator.ha.leader import ACQUIRE_JITTER, LeaseConflict, Timing
from agent_operator.ha.membership import Member, ShardStore
from agent_operator.ha.ring import selector, slot_of
from agent_operator.ha.table import OWNERS_ANNOTATION, OwnerTable, Plan, RingMismatch, owned, plan

__all__ = ["OWNERS_ANNOTATION", "OwnerTable", "Plan", "RingMismatch", "ShardView", "Sharder", "owned", "plan",
           "run_sharded"]

log = logging.getLogger("agent_operator.shards")

EXIT_CODE = 1
#: client-go's leader-election timing (15 s lease, 10 s renew deadline, 2 s retry): a sharded
#: replica renews while it drives a burst on a busy API server; the 10 s lease of
#: ``--leader-elect`` missed its 7 s deadline in the 1,000-task bench on 2 shared cores
SHARD_TIMING = Timing(15.0, 10.0, 2.0)


# ---------------------------------------------------------------------- what the work sees
@dataclass
class ShardView:
    """The slots one run of the work covers, and the live fence."""

    slots: int
    covered: frozenset[int]
    #: the slots that may be driven right now (empty after a lapse)
    driving: Callable[[], frozenset[int]]

    @property
    def selector(self) -> str:
        """The ``shardSelector`` for this run's list and watch."""
        return selector(self.covered, self.slots)

    def covers(self, uid: str) -> bool:
        """Whether this run watches ``uid`` (the client-side filter, same hash as the server);
        every watch event asked about is counted, and those outside the slots as filtered."""
        kept = slot_of(uid, self.slots) in self.covered
        metrics.record_event(kept)
        return kept

    def may_drive(self, uid: str) -> bool:
        """The fence, checked before every agent call: fresh member Lease and an owned slot."""
        return slot_of(uid, self.slots) in self.driving()


#: runs the controller over ``view`` until ``stop`` is set, draining in-flight calls before it returns
Work = Callable[[ShardView, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class _Running:
    view: ShardView
    stop: asyncio.Event
    task: asyncio.Task[None]
    started: float = field(default=0.0)


class Sharder:
    """One replica of the ring: heartbeat, rounds of plan/write, and (re)starting the work."""

    def __init__(self, member: Member, table: OwnerTable, work: Work, *, hard_exit: bool = True) -> None:
        self.member, self.table, self.work = member, table, work
        self.timing: Timing = member.timing
        self.hard_exit = hard_exit
        self.driving: frozenset[int] = frozenset()
        self.running: _Running | None = None
        self.shutdown = asyncio.Event()
        #: times the member Lease lapsed (renew deadline missed); a table write sent before
        #: a lapse must not restore ``driving`` after it
        self.lapses = 0
        self._server_side: bool | None = None
        #: what ended the controller when it stopped by itself with an error (re-raised after leaving)
        self.failure: BaseException | None = None
        #: the converger: the one task that stops and starts the work, so that a round never
        #: waits for a drain (it goes on claiming while the controller drains)
        self._want = asyncio.Event()
        self._idle = asyncio.Event()
        self._converger: asyncio.Task[None] | None = None
        #: set when a controller finished draining: the next round (started at once) writes
        #: the slots it held back free
        self._drained = asyncio.Event()

    def fence_ok(self) -> bool:
        """True while the member Lease is fresh; on a lapse, drop every driven slot at once."""
        if self.member.fresh():
            return True
        self.lapses += 1
        if self.driving:
            log.error("member lease %s not renewed within %.1fs: stopped driving slots %s",
                      self.member.name, self.timing.renew_seconds, sorted(self.driving))
            self.driving = frozenset()
            metrics.SLOTS_DRIVEN.set(0)
        return False

    def install_signals(self) -> None:
        """SIGTERM/SIGINT start a graceful leave (kopf replaces these while it runs and stops
        itself on them instead; its stop is then taken for the same request)."""
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.shutdown.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
                pass

    def _fenced(self) -> frozenset[int]:
        return self.driving if self.fence_ok() else frozenset()

    # ------------------------------------------------------------------ loops
    async def heartbeat(self) -> None:
        """Renew the member Lease every ``retry_seconds``."""
        while True:
            await self.beat()
            await asyncio.sleep(self.timing.retry_seconds)

    async def beat(self) -> bool:
        """One renewal; a lapse is noticed (fence closed) before a renewal can make the Lease fresh again."""
        self.fence_ok()
        return await self.member.renew()

    async def run(self) -> None:
        """Join, drive the slots the ring gives this replica, and leave on shutdown."""
        while not await self.member.renew():
            await asyncio.sleep(self.timing.retry_seconds)
        log.info("joined shard ring %s as %s", self.member.ring, self.member.name)
        self.install_signals()
        beat = asyncio.create_task(self.heartbeat())
        watchdog = _Watchdog(self)
        watchdog.start()
        try:
            while not self.shutdown.is_set():
                try:
                    await self.round()
                except LeaseConflict:
                    pass
                except RingMismatch:
                    raise
                except Exception as exc:  # noqa: BLE001 - API trouble: the fence keeps us safe, retry
                    log.warning("shard round failed: %s: %s", type(exc).__name__, exc)
                delay = self.timing.retry_seconds * (1 + random.uniform(0, ACQUIRE_JITTER))
                waits = [asyncio.ensure_future(e.wait()) for e in (self.shutdown, self._drained)]
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self._drained.clear()
        finally:
            await self.leave()
            watchdog.done.set()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self.member.leave()
        if self.failure is not None:
            raise self.failure

    async def round(self) -> None:
        """One read → observe → plan → write cycle; the converger drains and restarts the
        controller meanwhile, and slots it still drains are written free by a later round."""
        # kopf installs its own SIGTERM/SIGINT handlers when it starts: take them back, so a
        # signal starts our drain-and-release instead of a stop we would take for a ring change
        self.install_signals()
        if self.shutdown.is_set():
            return
        table = await self.table.read()  # before observing members: see the module docstring
        live = await self.member.observe()
        metrics.MEMBERS.set(len(live))
        if not self.fence_ok():
            self.converge()  # lapsed: drive nothing until a fresh write confirms our slots
            return
        lapses = self.lapses
        me = self.member.name
        p = plan(table, me, live, self.member.alive, self.driving, self.member.settled)
        if p.releases & self.driving:
            self.driving -= p.releases  # the fence closes first; then in-flight calls drain
            self.converge()
        # a released slot is written free only once no controller of ours watches it any more
        held = p.releases & self.covering()
        released = p.releases - held
        if p.claims or p.confirms or p.reaps or released:
            write = tuple(me if slot in held else owner for slot, owner in enumerate(p.table))
            if not self.fence_ok() or not await self.table.write(write):
                return
            if self.lapses != lapses or not self.fence_ok():
                return  # sent before a lapse: others may have claimed since; re-read first
            for kind, slots in (("claim", p.claims), ("release", released), ("confirm", p.confirms),
                                ("reap", p.reaps)):
                if slots:
                    metrics.HANDOVERS.labels(kind).inc(len(slots))
                    log.info("shard %s: %s slots %s", me, kind, sorted(slots))
            table = write
        self.driving = owned(table, me) - p.releases
        metrics.SLOTS_DRIVEN.set(len(self.driving))
        if self.running is None or self.running.view.covered != self.driving:
            self.converge()

    def covering(self) -> frozenset[int]:
        """The slots a controller of ours still watches (running, or draining until it stopped)."""
        return self.running.view.covered if self.running is not None else frozenset()

    def converge(self) -> None:
        """Ask the converger to bring the running controller to ``driving`` (never waits)."""
        self._want.set()
        self._idle.clear()
        if self._converger is None or self._converger.done():
            self._converger = asyncio.create_task(self._converge(), name="agent-operator-shard-converger")

    async def converged(self) -> None:
        """Wait until the running controller covers ``driving`` (or nothing runs on shutdown)."""
        if self._converger is not None and not self._converger.done():
            await self._idle.wait()

    async def _converge(self) -> None:
        """Stop (drain) and restart the controller until it covers exactly ``driving``; the
        only place that does, so one process never runs two controllers over one slot."""
        while True:
            if not self._want.is_set():
                self._idle.set()
                await self._want.wait()
            self._want.clear()
            running = self.running
            if running is not None and running.view.covered == self.driving and not running.task.done():
                continue
            if running is not None:
                await self.stop_work()
                self._drained.set()
            if self.driving and not self.shutdown.is_set():
                await self.start_work()

    async def start_work(self) -> None:
        """Run the controller over the driven slots (server-side selector, client-side filter)."""
        try:
            server_side = await self.member.store.server_filters(selector(self.driving, self.table.slots))
        except Exception as exc:  # noqa: BLE001 - the client-side filter keeps it correct
            log.warning("could not probe the shard selector: %s", exc)
            server_side = False
        if server_side != self._server_side:
            if server_side:
                log.info("the API server filters by shard (ShardedListAndWatch): watching %s",
                         selector(self.driving, self.table.slots))
            else:
                log.warning("the API server does not apply the shard selector (feature gate "
                            "ShardedListAndWatch off or unsupported): filtering AgentTasks client-side")
            self._server_side = server_side
        metrics.SERVER_SIDE.set(1 if server_side else 0)
        if not self.driving or self.shutdown.is_set():
            return  # changed while probing: the converger goes round again
        view = ShardView(self.table.slots, self.driving, self._fenced)
        stop = asyncio.Event()
        self.running = _Running(view, stop, asyncio.create_task(self._guarded(view, stop)), self.member.clock())

    async def _guarded(self, view: ShardView, stop: asyncio.Event) -> None:
        """The work; when it ends without being asked to (kopf stopped on SIGTERM/SIGINT, or
        failed), the replica leaves the ring."""
        try:
            await self.work(view, stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = exc
            log.error("the controller failed: %s: %s; leaving the ring", type(exc).__name__, exc)
            self.shutdown.set()
            return
        if not stop.is_set():
            log.info("the controller stopped by itself (signal): leaving the ring")
            self.shutdown.set()

    async def stop_work(self) -> None:
        """Stop the controller and wait until its in-flight calls drained."""
        running = self.running
        if running is None:
            return
        if running.task.done() and not running.stop.is_set():
            self.shutdown.set()  # it had ended by itself (a signal reached kopf first)
        running.stop.set()
        try:
            await running.task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not running.task.cancelled() or (me is not None and me.cancelling()):
                raise  # we are cancelled ourselves, not only the work
        except Exception as exc:  # noqa: BLE001 - the work's failure is logged; the ring goes on
            log.warning("controller ended with %s: %s", type(exc).__name__, exc)
        finally:
            # cleared only now: the watchdog must see work that is still draining
            if self.running is running:
                self.running = None
            self.install_signals()

    async def leave(self) -> None:
        """Graceful leave: stop (drain), release every owned slot, then the member Lease goes."""
        self.driving = frozenset()
        self.shutdown.set()
        self.converge()
        await self.converged()
        if self._converger is not None:  # it stopped the work; idle now, waiting for nothing
            self._converger.cancel()
            await asyncio.gather(self._converger, return_exceptions=True)
        for _ in range(5):
            try:
                table = await self.table.read()
                mine = owned(table, self.member.name)
                if not mine or await self.table.write(tuple("" if o == self.member.name else o for o in table)):
                    if mine:
                        metrics.HANDOVERS.labels("release").inc(len(mine))
                        log.info("shard %s: released slots %s on leave", self.member.name, sorted(mine))
                    return
            except Exception as exc:  # noqa: BLE001 - they expire with the member Lease otherwise
                log.warning("could not release slots on leave: %s", exc)
            await asyncio.sleep(self.timing.retry_seconds / 2)


class _Watchdog(threading.Thread):
    """Ends a replica whose work still runs shortly before its member Lease could expire.

    The fence already refuses agent calls once the renew deadline passed; this covers a
    call already inside a thread and a process that was paused (SIGSTOP, a VM freeze) and
    wakes up after others may have taken over: a dead replica is safe, a stale one is not.
    """

    def __init__(self, sharder: Sharder) -> None:
        super().__init__(name="agent-operator-shard-watchdog", daemon=True)
        self.sharder = sharder
        self.done = threading.Event()

    def run(self) -> None:
        t = self.sharder.timing
        member = self.sharder.member
        while not self.done.wait(min(0.25, t.retry_seconds / 4)):
            age = member.clock() - member.last_renew
            running = self.sharder.running
            if running is not None and age > t.lease_seconds - t.exit_margin and self.sharder.hard_exit:
                log.critical("member lease %s not renewed for %.1fs with work running: exiting", member.name, age)
                os._exit(EXIT_CODE)


async def run_sharded(work: Work, store: ShardStore, *, ring: str, name: str, identity: str,
                      slots: int, timing: Timing = SHARD_TIMING, hard_exit: bool = True) -> None:
    """Be one member of ``ring`` until SIGTERM/SIGINT (or cancellation), then leave it."""
    member = Member(store, ring, name, identity, timing)
    sharder = Sharder(member, OwnerTable(store, ring, slots), work, hard_exit=hard_exit)
    await sharder.run()
