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
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agent_operator.ha import metrics
from agent_operator.ha.leader import ACQUIRE_JITTER, LeaseConflict, Timing
from agent_operator.ha.membership import TABLE_LABEL, Member, ShardStore, encode_owners
from agent_operator.ha.ring import assign, selector, slot_of

log = logging.getLogger("agent_operator.shards")

OWNERS_ANNOTATION = "flyteagents.dev/shard-owners"
EPOCH_ANNOTATION = "flyteagents.dev/shard-epoch"
EXIT_CODE = 1


class RingMismatch(RuntimeError):
    """The ring's table has a different slot count than this replica was started with."""


# ---------------------------------------------------------------------- the plan (pure)
@dataclass(frozen=True)
class Plan:
    """What one replica writes to the owner table in one round."""

    table: tuple[str, ...]
    claims: frozenset[int] = frozenset()
    releases: frozenset[int] = frozenset()
    confirms: frozenset[int] = frozenset()

    @property
    def changed(self) -> bool:
        """Whether the table must be written."""
        return bool(self.claims or self.releases or self.confirms)


def plan(table: tuple[str, ...], me: str, live: set[str], alive: Callable[[str], bool],
         driving: frozenset[int]) -> Plan:
    """Release what the ring gives to others, claim what it gives us once free or dead-owned,
    and confirm owned slots this replica does not drive yet (after a lapse or a restart)."""
    desired = assign(live | {me}, len(table))
    new = list(table)
    claims, releases, confirms = set(), set(), set()
    for slot, owner in enumerate(table):
        if owner == me:
            if desired[slot] != me:
                new[slot] = ""
                releases.add(slot)
            elif slot not in driving:
                confirms.add(slot)
        elif desired[slot] == me and (not owner or not alive(owner)):
            new[slot] = me
            claims.add(slot)
    return Plan(tuple(new), frozenset(claims), frozenset(releases), frozenset(confirms))


def owned(table: tuple[str, ...], me: str) -> frozenset[int]:
    """The slots ``table`` gives to ``me``."""
    return frozenset(s for s, owner in enumerate(table) if owner == me)


# ---------------------------------------------------------------------- the table
def _owners(lease: dict[str, Any], slots: int, name: str) -> tuple[str, ...]:
    raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(OWNERS_ANNOTATION, "")
    try:
        owners = json.loads(raw) if raw else [""] * slots
    except ValueError:
        raise RingMismatch(f"Lease {name}: annotation {OWNERS_ANNOTATION} is not JSON: {raw[:80]!r}") from None
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise RingMismatch(f"Lease {name}: annotation {OWNERS_ANNOTATION} is not a list of member names")
    if len(owners) != slots:
        raise RingMismatch(f"Lease {name}: the ring has {len(owners)} slots, this replica was started "
                           f"with {slots}; use the same --shard-slots on every replica")
    return tuple(owners)


class OwnerTable:
    """Reads and conditionally writes the ring's owner table."""

    def __init__(self, store: ShardStore, ring: str, slots: int) -> None:
        self.store, self.ring, self.slots = store, ring, slots
        self._lease: dict[str, Any] | None = None

    async def read(self) -> tuple[str, ...]:
        """The current table (created empty when missing)."""
        lease = await self.store.get(self.ring)
        if lease is None:
            try:
                lease = await self.store.create({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.ring, "labels": {TABLE_LABEL: self.ring},
                                 "annotations": {OWNERS_ANNOTATION: encode_owners(("",) * self.slots),
                                                 EPOCH_ANNOTATION: "0"}},
                    "spec": {},
                })
            except LeaseConflict:
                lease = await self.store.get(self.ring)
                if lease is None:
                    raise
        self._lease = lease
        return _owners(lease, self.slots, self.ring)

    async def write(self, owners: tuple[str, ...]) -> bool:
        """Replace the table read last; False when someone else wrote it first."""
        assert self._lease is not None, "read() first"
        meta = dict(self._lease.get("metadata") or {})
        annotations = dict(meta.get("annotations") or {})
        epoch = int(annotations.get(EPOCH_ANNOTATION) or 0) + 1
        annotations.update({OWNERS_ANNOTATION: encode_owners(owners), EPOCH_ANNOTATION: str(epoch)})
        try:
            self._lease = await self.store.replace(dict(self._lease, metadata=dict(meta, annotations=annotations)))
        except LeaseConflict:
            self._lease = None
            return False
        return True


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
        """Whether this run watches ``uid`` (the client-side filter, same hash as the server)."""
        return slot_of(uid, self.slots) in self.covered

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
                try:
                    await asyncio.wait_for(self.shutdown.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.leave()
            watchdog.done.set()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self.member.leave()

    async def round(self) -> None:
        """One read → observe → plan → (drain) → write → (re)start cycle."""
        if self.running is not None and self.running.task.done():
            self.running = None
            self.install_signals()
            log.info("the controller stopped by itself (signal): leaving the ring")
            self.shutdown.set()
            return
        table = await self.table.read()  # before observing members: see the module docstring
        live = await self.member.observe()
        metrics.MEMBERS.set(len(live))
        if not self.fence_ok():
            await self.stop_work()  # lapsed: drive nothing until a fresh write confirms our slots
            return
        lapses = self.lapses
        p = plan(table, self.member.name, live, self.member.alive, self.driving)
        if p.releases & self.driving:
            self.driving -= p.releases  # the fence closes first; then in-flight calls drain
            await self.stop_work()
        if p.changed:
            if not self.fence_ok() or not await self.table.write(p.table):
                return
            if self.lapses != lapses or not self.fence_ok():
                return  # sent before a lapse: others may have claimed since; re-read first
            for kind, slots in (("claim", p.claims), ("release", p.releases), ("confirm", p.confirms)):
                if slots:
                    metrics.HANDOVERS.labels(kind).inc(len(slots))
                    log.info("shard %s: %s slots %s", self.member.name, kind, sorted(slots))
            table = p.table
        self.driving = owned(table, self.member.name)
        metrics.SLOTS_DRIVEN.set(len(self.driving))
        if self.running is None or self.running.view.covered != self.driving:
            await self.stop_work()
            if self.driving:
                await self.start_work()

    async def start_work(self) -> None:
        """Run the controller over the driven slots (server-side selector, client-side filter)."""
        view = ShardView(self.table.slots, self.driving, self._fenced)
        try:
            server_side = await self.member.store.shard_echoed(view.selector)
        except Exception as exc:  # noqa: BLE001 - the client-side filter keeps it correct
            log.warning("could not probe the shard selector: %s", exc)
            server_side = False
        if server_side != self._server_side:
            if server_side:
                log.info("the API server filters by shard (ShardedListAndWatch): watching %s", view.selector)
            else:
                log.warning("the API server did not echo the shard selector (feature gate "
                            "ShardedListAndWatch off or unsupported): filtering AgentTasks client-side")
            self._server_side = server_side
        metrics.SERVER_SIDE.set(1 if server_side else 0)
        stop = asyncio.Event()
        self.running = _Running(view, stop, asyncio.create_task(self.work(view, stop)), self.member.clock())

    async def stop_work(self) -> None:
        """Stop the controller and wait until its in-flight calls drained."""
        running = self.running
        if running is None:
            return
        running.stop.set()
        try:
            await running.task
        except asyncio.CancelledError:
            if not running.task.cancelled():
                raise
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
        await self.stop_work()
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
                      slots: int, timing: Timing = Timing(), hard_exit: bool = True) -> None:
    """Be one member of ``ring`` until SIGTERM/SIGINT (or cancellation), then leave it."""
    member = Member(store, ring, name, identity, timing)
    sharder = Sharder(member, OwnerTable(store, ring, slots), work, hard_exit=hard_exit)
    await sharder.run()
