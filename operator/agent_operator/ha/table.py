"""The shard ring's owner table (one Lease, CAS-written) and the per-round plan (pure).

See :mod:`agent_operator.ha.shards` for the protocol these serve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_operator.ha.leader import LeaseConflict
from agent_operator.ha.membership import TABLE_LABEL, ShardStore, encode_owners
from agent_operator.ha.ring import assign

OWNERS_ANNOTATION = "flyteagents.dev/shard-owners"
EPOCH_ANNOTATION = "flyteagents.dev/shard-epoch"


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
    #: dead members' slots written free for a ring owner too new to judge them dead
    reaps: frozenset[int] = frozenset()

    @property
    def changed(self) -> bool:
        """Whether the table must be written."""
        return bool(self.claims or self.releases or self.confirms or self.reaps)


def plan(table: tuple[str, ...], me: str, live: set[str], alive: Callable[[str], bool],
         driving: frozenset[int], settled: Callable[[str], bool] = lambda _: True) -> Plan:
    """Release what the ring gives to others, claim what it gives us once free or dead-owned,
    and confirm owned slots this replica does not drive yet (after a lapse or a restart).

    A dead member's slot that the ring gives to a member too new to judge it dead
    (``settled`` false: it joined after the dead one's last renewal, and would wait a lease
    duration of its own) is *reaped*: written free by whoever judges the owner dead first,
    so its ring owner claims it at its next round if its own view of the ring agrees."""
    desired = assign(live | {me}, len(table))
    new = list(table)
    claims, releases, confirms, reaps = set(), set(), set(), set()
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
        elif owner and not alive(owner) and not settled(desired[slot]):
            new[slot] = ""
            reaps.add(slot)
    return Plan(tuple(new), frozenset(claims), frozenset(releases), frozenset(confirms), frozenset(reaps))


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
