"""How ``bench.run`` schedules repeated bursts (pure logic; the runs themselves are by hand)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import contenders  # noqa: E402
from bench.run import MODES, burst_rounds, round_order  # noqa: E402


def test_every_contender_leads_one_round_and_each_round_runs_all_once() -> None:
    who = list(contenders.ALL)
    rounds = [round_order(who, r) for r in range(len(who))]
    assert [r[0] for r in rounds] == who
    assert all(sorted(r) == sorted(who) for r in rounds)
    assert round_order(who, len(who)) == who
    assert round_order([], 3) == []


def test_the_burst_sizes_the_targets_name_are_repeated_in_both_modes() -> None:
    for mode in MODES.values():
        sizes, repeats = mode["burst"], mode["burst_repeats"]
        assert repeats > 1
        assert {n: burst_rounds(n, sizes, repeats) for n in sizes if n >= 1000} == \
            {n: repeats for n in sizes if n >= 1000}
        assert burst_rounds(100, sizes, repeats) == 1
    assert burst_rounds(300, [100, 300], 3) == 3  # a custom run's largest size is repeated too
