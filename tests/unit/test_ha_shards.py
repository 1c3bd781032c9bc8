"""The fenced handover, round by round, with a manual clock and an in-memory Lease store that
has the API server's optimistic concurrency (the integration test runs the same protocol
against the real API server; this one pins the edge cases deterministically)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from agent_operator.ha.leader import LeaseConflict, Timing
from agent_operator.ha.membership import RING_LABEL, Member
from agent_operator.ha.ring import slot_of
from agent_operator.ha.shards import OwnerTable, ShardView, Sharder, owned, plan

SLOTS = 8
TIMING = Timing(10.0, 7.0, 1.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """Every Lease of one namespace, with resourceVersion preconditions (the 'API server')."""

    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}
        self.rv = 0

    def store(self, echo: bool = True) -> "Store":
        return Store(self, echo)


class Store:
    def __init__(self, leases: Leases, echo: bool) -> None:
        self.leases, self.echo, self.partitioned = leases, echo, False

    def _check(self) -> None:
        if self.partitioned:
            raise ConnectionError("partitioned")

    def _put(self, lease: dict[str, Any]) -> dict[str, Any]:
        self.leases.rv += 1
        obj = copy.deepcopy(lease)
        obj["metadata"]["resourceVersion"] = str(self.leases.rv)
        self.leases.objs[obj["metadata"]["name"]] = obj
        return copy.deepcopy(obj)

    async def list_members(self) -> list[dict[str, Any]]:
        self._check()
        return [copy.deepcopy(o) for o in self.leases.objs.values() if RING_LABEL in o["metadata"].get("labels", {})]

    async def get(self, name: str) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.leases.objs.get(name))

    async def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if lease["metadata"]["name"] in self.leases.objs:
            raise LeaseConflict("exists")
        return self._put(lease)

    async def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        self._check()
        current = self.leases.objs.get(lease["metadata"]["name"])
        if current is None or current["metadata"]["resourceVersion"] != lease["metadata"].get("resourceVersion"):
            raise LeaseConflict("resourceVersion")
        return self._put(lease)

    async def delete(self, name: str) -> None:
        self._check()
        self.leases.objs.pop(name, None)

    async def server_filters(self, selector: str) -> bool:
        return self.echo


class Replica:
    """One sharder whose 'work' only records the views it was started with."""

    def __init__(self, leases: Leases, name: str, clock: Clock) -> None:
        self.store = leases.store()
        self.views: list[ShardView] = []
        member = Member(self.store, "ring", name, f"id-{name}", TIMING, clock)
        self.sharder = Sharder(member, OwnerTable(self.store, "ring", SLOTS), self.work, hard_exit=False)

    async def work(self, view: ShardView, stop: asyncio.Event) -> None:
        self.views.append(view)
        await stop.wait()

    async def beat(self) -> None:
        await self.sharder.beat()

    async def round(self) -> None:
        await self.sharder.round()
        await self.sharder.converged()

    @property
    def driving(self) -> frozenset[int]:
        view = self.views[-1] if self.views and self.sharder.running else None
        return frozenset(s for s in range(SLOTS) if view is not None and s in view.driving())


def table(leases: Leases) -> list[str]:
    import json

    return list(json.loads(leases.objs["ring"]["metadata"]["annotations"]["flyteagents.dev/shard-owners"]))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle(replicas: list[Replica], clock: Clock, rounds: int = 6) -> None:
    for _ in range(rounds):
        for r in replicas:
            await r.beat()
            await r.round()
        clock.now += 1.0


def no_slot_driven_twice(replicas: list[Replica]) -> bool:
    seen: set[int] = set()
    for r in replicas:
        if r.driving & seen:
            return False
        seen |= r.driving
    return True


def test_a_join_moves_half_the_slots_only_after_the_owner_released_them() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a = Replica(leases, "a", clock)
        await settle([a], clock, 2)
        assert a.driving == frozenset(range(SLOTS))
        b = Replica(leases, "b", clock)
        await b.beat()
        await b.round()  # b sees a alive owning everything: claims nothing yet
        assert b.driving == frozenset() and table(leases) == ["a"] * SLOTS
        await a.beat()
        await a.round()  # a stops driving b's half at once, but holds it in the table while it drains
        assert table(leases) == ["a"] * SLOTS and a.driving == frozenset(range(4))
        await b.round()
        assert b.driving == frozenset() and table(leases) == ["a"] * SLOTS
        await a.round()  # drained: now it is written free
        assert table(leases) == ["a"] * 4 + [""] * 4 and a.driving == frozenset(range(4))
        await b.round()
        assert table(leases) == ["a"] * 4 + ["b"] * 4 and b.driving == frozenset(range(4, 8))
        assert a.views[-1].selector.count("shardRange") == 1
    run(scenario())


def test_two_joins_at_once_never_drive_one_slot_twice() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a = Replica(leases, "a", clock)
        await settle([a], clock, 2)
        b, c = Replica(leases, "b", clock), Replica(leases, "c", clock)
        replicas = [a, b, c]
        for _ in range(8):
            for r in (c, b, a):
                await r.beat()
                await r.round()
                assert no_slot_driven_twice(replicas)
            clock.now += 1.0
        assert sorted(len(r.driving) for r in replicas) == [2, 3, 3]
        assert set(table(leases)) == {"a", "b", "c"}
    run(scenario())


def test_a_paused_owner_that_wakes_up_drives_nothing_until_it_confirms_and_loses_to_the_claimer() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
        await settle([a, b], clock)
        mine = a.driving
        assert mine and no_slot_driven_twice([a, b])
        # a is paused: no renewals. Past its renew deadline its fence is closed...
        for _ in range(8):
            clock.now += 1.0
            await b.beat()
            await b.round()
        assert not a.sharder.member.fresh()
        assert not any(v.may_drive(uid) for v in a.views for uid in ("x", "y", "z"))
        # ...and once b has seen a's Lease unchanged for a lease duration, b claims a's slots
        for _ in range(4):
            clock.now += 1.0
            await b.beat()
            await b.round()
        assert set(table(leases)) == {"b"}
        # a wakes up: its heartbeat notices the lapse before renewing, so nothing is driven
        await a.beat()
        assert a.sharder.member.fresh() and a.driving == frozenset()
        await a.round()
        assert no_slot_driven_twice([a, b])
        await settle([a, b], clock)
        assert no_slot_driven_twice([a, b]) and a.driving and b.driving
    run(scenario())


def test_a_stale_confirm_loses_the_race_on_the_resource_version() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
        await settle([a, b], clock)
        a_slots = owned(tuple(table(leases)), "a")
        # a is paused; b keeps observing a's Lease unchanged for longer than a lease duration
        for _ in range(12):
            clock.now += 1.0
            await b.beat()
            await b.sharder.member.observe()
        # b reads the table and judges a dead...
        tb = await b.sharder.table.read()
        pb = plan(tb, "b", await b.sharder.member.observe(), b.sharder.member.alive, b.sharder.driving)
        assert pb.claims == a_slots
        # ...a wakes, renews, reads the same table version and wants to confirm its slots...
        await a.beat()
        ta = await a.sharder.table.read()
        pa = plan(ta, "a", await a.sharder.member.observe(), a.sharder.member.alive, a.sharder.driving)
        assert pa.confirms == a_slots
        # ...both writes carry that resourceVersion: the first lands, the second is refused
        assert await b.sharder.table.write(pb.table)
        assert not await a.sharder.table.write(pa.table)
        await a.round()
        assert a.driving.isdisjoint(a_slots) and no_slot_driven_twice([a, b])
    run(scenario())


def test_a_graceful_leave_releases_everything_and_deletes_the_member_lease() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
        await settle([a, b], clock)
        await a.sharder.leave()
        await a.sharder.member.leave()
        assert "a" not in table(leases) and "a" not in leases.objs
        await settle([b], clock, 2)
        assert b.driving == frozenset(range(SLOTS))
    run(scenario())


def test_a_replica_cut_off_from_the_api_closes_its_fence_at_the_renew_deadline() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a = Replica(leases, "a", clock)
        await settle([a], clock, 2)
        assert a.views[-1].may_drive("any-uid")
        a.store.partitioned = True
        clock.now += TIMING.renew_seconds - 1.1  # settle() left the clock 1 s after the last renewal
        assert a.views[-1].may_drive("any-uid")
        clock.now += 0.2
        await a.beat()
        assert not a.views[-1].may_drive("any-uid") and a.sharder.driving == frozenset()
    run(scenario())


class SlowDrain(Replica):
    """A replica whose controller takes until ``drained`` is set to stop (in-flight calls)."""

    def __init__(self, leases: Leases, name: str, clock: Clock) -> None:
        super().__init__(leases, name, clock)
        self.drained = asyncio.Event()
        self.drained.set()

    async def work(self, view: ShardView, stop: asyncio.Event) -> None:
        self.views.append(view)
        await stop.wait()
        await self.drained.wait()

    async def round(self) -> None:
        await self.sharder.round()
        for _ in range(5):
            await asyncio.sleep(0)


def test_a_round_claims_a_dead_members_slots_while_its_own_controller_still_drains() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        # named so that the ring moves slots both ways: a gives some to c and gains some of b's
        a, b = SlowDrain(leases, "b", clock), Replica(leases, "a", clock)
        await settle([a, b], clock)
        c = Replica(leases, "c", clock)
        await settle([c], clock, 1)  # c joins: a must hand some of its slots to c...
        a.drained.clear()  # ...and its controller takes long to drain them
        await a.beat()
        await a.round()
        given_to_c = owned(tuple(table(leases)), "b") - a.sharder.driving
        assert given_to_c and a.sharder.running is not None  # still draining, slots held
        b_slots = owned(tuple(table(leases)), "a")
        draining = a.sharder.running
        # b dies (no more renewals); a keeps doing rounds while its controller drains
        for _ in range(14):
            clock.now += 1.0
            await a.beat()
            await c.beat()
            await a.round()
            await c.round()
        # a claimed its share of b's slots while the same controller was still draining...
        owners = table(leases)
        assert "a" not in owners, owners
        assert a.sharder.running is draining and any(owners[s] == "b" for s in b_slots), owners
        # ...and a slot it gives away stays held in the table until then, driven by nobody
        held = owned(tuple(owners), "b") - a.sharder.driving
        assert held and held.isdisjoint(c.sharder.driving)
        assert no_slot_driven_twice([a, c])
        a.drained.set()
        for _ in range(3):
            clock.now += 1.0
            for r in (a, c):
                await r.beat()
                await r.round()
        await a.sharder.converged()
        await settle([a, c], clock, 2)
        assert set(table(leases)) == {"b", "c"} and no_slot_driven_twice([a, c])
        assert a.driving | c.driving == frozenset(range(SLOTS))
    run(scenario())


def test_a_dead_members_slots_reach_a_member_that_joined_after_it_died_within_one_lease() -> None:
    async def scenario() -> None:
        clock, leases = Clock(), Leases()
        a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
        await settle([a, b], clock)
        b_slots = owned(tuple(table(leases)), "b")
        died = clock.now  # b stops renewing
        c = Replica(leases, "c", clock)
        while "b" in table(leases) or not any(table(leases)[s] == "c" for s in b_slots):
            clock.now += 1.0
            await a.beat()
            await a.round()
            if clock.now - died >= 5:  # c joins 5 s after b's last renewal
                await c.beat()
                await c.round()
            # on its own, c could judge b dead only a lease duration after it joined
            assert clock.now - died <= TIMING.lease_seconds + 2 * TIMING.retry_seconds, table(leases)
        assert not c.sharder.member.settled("b")  # so a reaped the slots the ring gives c...
        assert any(table(leases)[s] == "c" for s in b_slots)  # ...and c claimed those its view agrees on
        assert no_slot_driven_twice([a, c])
        await settle([a, c], clock, 12)  # c's own view drops b too
        assert set(table(leases)) == {"a", "c"} and a.driving | c.driving == frozenset(range(SLOTS))
    run(scenario())
