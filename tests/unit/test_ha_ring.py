"""The shard ring and the handover plan: pure functions, checked against the API server's Go code."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent_operator.ha import ring
from agent_operator.ha.shards import owned, plan

# printed by Go's hash/fnv.New64a through k8s.io/apimachinery/pkg/sharding.HashField (v0.37.2)
GO_VECTORS = {
    "": "cbf29ce484222325",
    "a": "af63dc4c8601ec8c",
    "abc": "e71fa2190541574b",
    "test": "f9e6e6ef197c2b25",
    "test-uid-12345": "d4c53b72f9287c28",
    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee": "93754b7248a00eb9",
    "6f1c9a4e-3b2d-4c5e-9f80-1a2b3c4d5e6f": "066e0e4c481c60e9",
    "ünïcödé": "4529e64c29e569d2",
}


@pytest.mark.parametrize("value,expected", sorted(GO_VECTORS.items()))
def test_uid_hash_matches_the_api_servers_fnv1a(value: str, expected: str) -> None:
    assert f"{ring.uid_hash(value):016x}" == expected


def test_selector_uses_the_bounds_the_api_server_parser_accepts() -> None:
    assert ring.selector(range(16), 32) == (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')")
    assert ring.selector(range(16, 32), 32) == (
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')")
    assert ring.selector([0, 1, 5], 8) == (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x4000000000000000') || "
        "shardRange(object.metadata.uid, '0xa000000000000000', '0xc000000000000000')")
    assert ring.selector([], 8) == ""


def test_slot_of_is_the_range_that_contains_the_hash() -> None:
    for _ in range(500):
        uid = str(uuid.uuid4())
        slot = ring.slot_of(uid, 32)
        assert ring.slot_range(slot, 32).contains(ring.uid_hash(uid))


def test_assign_splits_slots_evenly_and_identically_for_every_member() -> None:
    table = ring.assign(["c", "a", "b"], 32)
    assert table == ring.assign(["b", "c", "a"], 32)
    counts = {m: table.count(m) for m in "abc"}
    assert sorted(counts.values()) == [10, 11, 11]
    assert len(ring.ranges(owned(table, "b"), 32)) == 1  # contiguous: one shardRange per member
    assert ring.assign([], 4) == ("", "", "", "")


@pytest.mark.parametrize("slots", [0, 3, 2048])
def test_bad_slot_counts_are_refused_with_the_value(slots: int) -> None:
    with pytest.raises(ValueError, match=str(slots)):
        ring.check_slots(slots)


def alive_set(*names: str):  # type: ignore[no-untyped-def]
    return lambda name: name in names


def test_join_claims_only_free_slots_and_waits_for_the_owner_to_release() -> None:
    table = ("a",) * 4
    p = plan(table, "b", {"a", "b"}, alive_set("a", "b"), frozenset())
    assert not p.changed  # a is alive: b must wait for a's release
    p = plan(table, "a", {"a", "b"}, alive_set("a", "b"), frozenset(range(4)))
    assert p.releases == {2, 3} and p.table == ("a", "a", "", "")
    p = plan(p.table, "b", {"a", "b"}, alive_set("a", "b"), frozenset())
    assert p.claims == {2, 3} and p.table == ("a", "a", "b", "b")


def test_dead_owners_slots_are_claimed_and_a_lapsed_owner_must_confirm() -> None:
    table = ("a", "a", "b", "b")
    p = plan(table, "a", {"a"}, alive_set("a"), frozenset({0, 1}))
    assert p.claims == {2, 3} and p.table == ("a",) * 4
    # a lapsed (drives nothing) but the table still names it: confirm by a write first
    p = plan(table, "a", {"a", "b"}, alive_set("a", "b"), frozenset())
    assert p.confirms == {0, 1} and p.changed and p.table == table


def test_two_joins_at_once_never_give_one_slot_to_two_members() -> None:
    table = ("a",) * 8
    live = {"a", "b", "c"}
    pa = plan(table, "a", live, alive_set(*live), frozenset(range(8)))
    # b saw only {a, b}; c saw all three: both claim from the same released table
    pb = plan(pa.table, "b", {"a", "b"}, alive_set("a", "b"), frozenset())
    pc = plan(pa.table, "c", live, alive_set(*live), frozenset())
    assert pb.claims & pc.claims  # different views: both want slot(s) a just released...
    # ...but the table is written with a resourceVersion precondition, so one lands (b's) and
    # c re-plans on the table b wrote: it claims only what is still free
    merged = list(pa.table)
    for s in pb.claims:
        merged[s] = "b"
    after_c = plan(tuple(merged), "c", live, alive_set(*live), frozenset())
    assert all(merged[s] == "" for s in after_c.claims)


def test_scaling_docs_list_every_shard_metric() -> None:
    from agent_operator.ha.metrics import METRICS

    text = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in text, name
