"""The shard ring: live members → slots → uid-hash ranges, and uid → owner. Pure, no I/O.

The hash is the API server's (KEP-5866, ``k8s.io/apimachinery/pkg/sharding.HashField`` at
v0.37.2): 64-bit FNV-1a over the bytes of the field's Go string — for
``object.metadata.uid`` the UTF-8 bytes of the uid.  A selector names half-open ranges
``[start, end)`` as 0x-prefixed, lower-case, 16-digit hex, the end of the space being the
17-digit ``0x10000000000000000``; ranges of one selector are joined with ``||``.

The hash space is cut into ``slots`` equal slots (a power of two, so a slot is the top bits
of the hash).  Ownership and handover work per slot (:mod:`agent_operator.ha.shards`); the
ring only says who *should* own each slot: the sorted live members split the slots into
contiguous, equal-as-possible runs, so each member's selector is a single ``shardRange``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HASH_BITS = 64
HASH_SPACE = 1 << HASH_BITS
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
#: the field the operator shards by (the other one the API server supports is the namespace)
UID_FIELD = "object.metadata.uid"
DEFAULT_SLOTS = 32


def fnv1a_64(data: bytes) -> int:
    """64-bit FNV-1a of ``data`` (Go's ``hash/fnv.New64a``)."""
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & (HASH_SPACE - 1)
    return h


def uid_hash(uid: str) -> int:
    """The API server's shard hash of a uid."""
    return fnv1a_64(uid.encode("utf-8"))


def hex_bound(value: int) -> str:
    """A selector bound: ``0x`` + 16 lower-case hex digits, or ``0x10000000000000000`` (2^64)."""
    if not 0 <= value <= HASH_SPACE:
        raise ValueError(f"hash bound {value:#x} is outside [0, 2^64]")
    return "0x10000000000000000" if value == HASH_SPACE else f"0x{value:016x}"


def check_slots(slots: int) -> int:
    """``slots`` if it is a power of two in [1, 1024]; a clear error otherwise."""
    if slots < 1 or slots > 1024 or slots & (slots - 1):
        raise ValueError(f"shard slots: {slots} is not a power of two between 1 and 1024")
    return slots


@dataclass(frozen=True, order=True)
class HashRange:
    """A half-open range ``[start, end)`` of the 64-bit hash space."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= HASH_SPACE:
            raise ValueError(f"hash range [{self.start:#x}, {self.end:#x}) is empty or outside [0, 2^64)")

    def contains(self, h: int) -> bool:
        """True when hash ``h`` falls in the range."""
        return self.start <= h < self.end

    def expression(self, field: str = UID_FIELD) -> str:
        """This range as one ``shardRange(...)`` term of a selector."""
        return f"shardRange({field}, '{hex_bound(self.start)}', '{hex_bound(self.end)}')"


def slot_of(uid: str, slots: int) -> int:
    """The slot a uid hashes into (the top ``log2(slots)`` bits of its hash)."""
    return uid_hash(uid) * slots >> HASH_BITS


def slot_range(slot: int, slots: int) -> HashRange:
    """The hash range of one slot."""
    width = HASH_SPACE // slots
    return HashRange(slot * width, (slot + 1) * width)


def assign(members: Iterable[str], slots: int) -> tuple[str, ...]:
    """The desired owner of every slot: sorted members take contiguous, equal-as-possible runs.

    Every member computes the same table from the same member set; no members → no owners
    (empty strings).
    """
    ordered = sorted(set(members))
    if not ordered:
        return ("",) * slots
    return tuple(ordered[s * len(ordered) // slots] for s in range(slots))


def ranges(owned: Iterable[int], slots: int) -> list[HashRange]:
    """The owned slots as merged hash ranges (adjacent slots become one range)."""
    out: list[HashRange] = []
    for slot in sorted(set(owned)):
        r = slot_range(slot, slots)
        if out and out[-1].end == r.start:
            out[-1] = HashRange(out[-1].start, r.end)
        else:
            out.append(r)
    return out


def selector(owned: Iterable[int], slots: int, field: str = UID_FIELD) -> str:
    """The ``shardSelector`` query value for the owned slots ("" when none are owned)."""
    return " || ".join(r.expression(field) for r in ranges(owned, slots))


def owner_of(uid: str, table: Sequence[str]) -> str:
    """Who owns ``uid`` in an owner-per-slot table ("" when its slot is free)."""
    return table[slot_of(uid, len(table))]
