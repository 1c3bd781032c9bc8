"""The benchmark report: issue 16's targets and the kopf floor's two distances, from a
results dict shaped as ``bench.run`` writes it (pure logic; the runs themselves are by hand)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import contenders, report  # noqa: E402


def _burst(tps: float) -> dict[str, Any]:
    return {"tasks_per_second": tps, "all_completed": True, "completed": 10, "tasks": 10,
            "writes": {"object_writes_per_task": 2.0, "event_writes_per_task": 0.0},
            "peak_rss_mb": 100.0, "cpu_seconds": 1.0}


def _steady(cpu_ms: float) -> dict[str, Any]:
    return {"cpu_ms_per_task": cpu_ms, "rate": 50.0, "seconds": 60.0, "achieved_rate": 50.0,
            "create_latency": 0.05, "get_latency": 0.02, "run_seconds": 2.0, "poll": "1s",
            "apply_to_create": {"p50": 0.01, "p99": 0.2}, "terminal_to_visible": {"p50": 0.01, "p99": 0.2},
            "writes": {"object_writes_per_task": 3.0, "event_writes_per_task": 1.0,
                       "per_task_by_verb_resource": {"PATCH agenttasks/status": 2.0}}}


def results(with_floor: bool = True) -> dict[str, Any]:
    burst = {contenders.OPERATOR: _burst(90.0), contenders.NAIVE: _burst(100.0), contenders.CEILING: _burst(120.0)}
    steady = {contenders.OPERATOR: _steady(9.0), contenders.NAIVE: _steady(11.0), contenders.CEILING: _steady(4.0)}
    if with_floor:
        burst[contenders.FLOOR] = _burst(100.0)
        steady[contenders.FLOOR] = _steady(6.0)
    return {"meta": {}, "burst": {"1000": burst}, "steady": steady}


def test_the_floor_splits_the_distance_to_the_ceiling_into_kopf_and_ours() -> None:
    f = report.floor(results())
    assert f["steady_cpu_vs_ceiling"] == 1.5 and f["operator_cpu_vs_floor"] == 1.5
    assert f["burst_vs_ceiling"] == 100.0 / 120.0 and f["operator_burst_vs_floor"] == 0.9
    text = "\n".join(report.floor_lines(results()))
    assert "6.0 ms/task = 1.50x the ceiling's (operator: 1.50x the floor's)" in text
    assert "largest burst 0.83x the ceiling's throughput (operator: 0.90x the floor's)" in text


def test_without_the_floor_the_report_says_nothing_about_it() -> None:
    assert report.floor_lines(results(with_floor=False)) == []
    assert "kopf floor" not in report.markdown(results(with_floor=False))


def test_targets_are_ratios_within_the_run() -> None:
    by_name = {t["target"]: t for t in report.targets(results())}
    cpu = by_name["steady CPU per task vs ceiling"]
    assert cpu["value"] == "2.25x" and cpu["met"] is False
    assert by_name["burst throughput vs naive kopf (largest burst)"]["met"] is False
    assert by_name["RSS with 10,000 in-flight tasks"]["met"] is None  # not measured in this run


def test_the_readme_table_is_the_one_its_results_files_make() -> None:
    from bench import readme

    text = readme.README.read_text()
    files = readme.named_files(text)
    assert files and all(f.is_file() for f in files), f"README's benchmark table names missing files: {files}"
    shown = readme.BLOCK.search(text)
    assert shown is not None
    assert shown.group(0) == readme.block(files), "README's table differs: run python -m bench.readme " + " ".join(
        str(f.relative_to(readme.ROOT)) for f in files)


def test_idle_api_ratio_counts_what_each_contender_adds_to_the_api_servers_own_load() -> None:
    idle = {contenders.NAIVE: {"apiserver_cpu_share": 0.42, "apiserver_cpu_share_before": 0.02},
            contenders.OPERATOR: {"apiserver_cpu_share": 0.025, "apiserver_cpu_share_before": 0.025}}
    ratio, shown = report.idle_api_ratio(idle)
    assert ratio is not None and abs(ratio - 0.4 / report.API_BACKGROUND_NOISE) < 1e-9
    assert shown.startswith(">= 40.0x")
    idle[contenders.OPERATOR] = {"apiserver_cpu_share": 0.045, "apiserver_cpu_share_before": 0.025}
    ratio, shown = report.idle_api_ratio(idle)
    assert ratio is not None and abs(ratio - 20.0) < 1e-9 and shown.startswith("20.0x")
    # results from before the quiet window was recorded: the raw shares
    assert report.idle_api_ratio({contenders.NAIVE: {"apiserver_cpu_share": 0.4},
                                  contenders.OPERATOR: {"apiserver_cpu_share": 0.02}})[0] == 0.4 / 0.02


def test_the_rss_target_holds_after_a_restart_too() -> None:
    def rss_target(after: float) -> dict[str, Any]:
        r = results()
        r["scale"] = {contenders.OPERATOR: {"tasks": 10000, "rss_mb": 294.0, "restart": {"rss_mb_after": after}}}
        return {t["target"]: t for t in report.targets(r)}["RSS with 10,000 in-flight tasks"]

    assert rss_target(238.2) == {"target": "RSS with 10,000 in-flight tasks", "goal": "<= 300 MB",
                                 "value": "294.0 MB; 238.2 MB after a restart", "met": True}
    missed = rss_target(365.8)
    assert missed["met"] is False and missed["value"] == "294.0 MB; 365.8 MB after a restart"
