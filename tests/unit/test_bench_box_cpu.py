"""The benchmark's machine-wide CPU figure: how busy the whole box was during the steady load,
so a report can tell a contender's latency from a machine that ran out of cores."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import harness, report  # noqa: E402
from tests.unit.test_bench_report import results  # noqa: E402


def test_idle_and_iowait_are_not_busy() -> None:
    #        user nice system idle iowait irq softirq steal
    line = "cpu  100  0    50     800  50     0   0       0"
    assert harness.parse_cpu_line(line) == (150, 1000)


def test_busy_cores_scale_the_busy_share_to_the_cores() -> None:
    assert harness.busy_cores((150, 1000), (250, 1200), cpus=2) == 1.0
    assert harness.busy_cores((150, 1000), (350, 1200), cpus=2) == 2.0
    assert harness.busy_cores((150, 1000), (150, 1000), cpus=2) == 0.0  # no time passed


def test_saturated_share_counts_samples_with_nearly_every_core_busy() -> None:
    summary = harness.summarize_box_cpu([2.0, 1.9, 1.8, 0.5], cpus=2)
    assert summary == {"cpus": 2, "mean_cores": 1.55, "saturated_share": 0.5}
    assert harness.summarize_box_cpu([], cpus=2)["mean_cores"] is None


def test_the_sampler_reads_this_machine() -> None:
    sampler = harness.BoxCpuSampler(interval=0.05)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # keep one core busy
        pass
    summary = sampler.stop()
    assert sampler.samples and all(0.0 <= x <= sampler.cpus for x in sampler.samples)
    assert summary["mean_cores"] is not None and summary["mean_cores"] > 0.5


def test_the_steady_table_shows_how_busy_the_machine_was() -> None:
    r = results()
    r["steady"]["operator"]["box_cpu"] = {"cpus": 2, "mean_cores": 1.97, "saturated_share": 0.9}
    r["steady"]["operator"]["quiet_before"] = {"seconds": 12.5, "busy_cores": 0.1}
    text = report.markdown(r)
    assert "waited: operator 12.5 s." in text
    r["steady"]["operator"]["quiet_before"] = {"seconds": 60.0, "busy_cores": 0.8}
    assert "waited: operator 60.0 s (still 0.8 cores busy)." in report.markdown(r)
    assert "| 1.97 of 2 (0.90) |" in text
    assert "machine busy, cores" in text


def test_the_summary_can_cover_a_window_of_the_samples() -> None:
    sampler = harness.BoxCpuSampler(interval=0.02)
    time.sleep(0.1)
    first = sampler.mark()
    time.sleep(0.1)
    summary = sampler.stop(end=first)
    assert 0 < first < len(sampler.samples)
    assert summary["mean_cores"] == harness.summarize_box_cpu(sampler.samples[:first], sampler.cpus)["mean_cores"]


def test_wait_quiet_returns_once_the_machine_is_idle_or_the_timeout_passed() -> None:
    quiet = asyncio.run(harness.wait_quiet(busy_below=3.0, window=0.05, cpus=2))  # always "quiet"
    assert quiet["seconds"] < 1.0 and 0.0 <= quiet["busy_cores"] <= 2.0
    busy = asyncio.run(harness.wait_quiet(busy_below=-1.0, window=0.05, timeout=0.12, cpus=2))  # never
    assert busy["seconds"] >= 0.12


METRICS = """# HELP go_gc_cycles_total_gc_cycles_total Count of all completed GC cycles.
# TYPE go_gc_cycles_total_gc_cycles_total counter
go_gc_cycles_total_gc_cycles_total {cycles}
go_gc_heap_allocs_bytes_total {alloc}
go_cpu_classes_gc_total_cpu_seconds_total {gc}
go_cpu_classes_gc_mark_idle_cpu_seconds_total {idle}
go_gc_heap_live_bytes {live}
go_cpu_classes_gc_mark_idle_cpu_seconds_total_other 99
apiserver_request_total{{verb="PATCH"}} 3
"""


def test_the_api_servers_garbage_collector_per_task_from_two_scrapes() -> None:
    before = harness.parse_runtime(METRICS.format(cycles=10, alloc=1e9, gc=5.0, idle=2.0, live=150 * 2**20))
    assert before == {"gc_cycles": 10.0, "alloc_bytes": 1e9, "gc_cpu_seconds": 5.0, "gc_idle_mark_cpu_seconds": 2.0,
                      "heap_live_bytes": 150 * 2**20}
    after = harness.parse_runtime(METRICS.format(cycles=16, alloc=1e9 + 1000 * 2048 * 1024, gc=9.0, idle=4.5,
                                                 live=201.26 * 2**20))
    per = harness.runtime_per_task(before, after, tasks=1000)
    assert per == {"gc_cycles": 6.0, "alloc_kb_per_task": 2048.0, "gc_cpu_ms_per_task": 4.0,
                   "gc_idle_mark_cpu_ms_per_task": 2.5, "heap_live_mb_before": 150.0, "heap_live_mb_after": 201.3}
    assert harness.runtime_per_task({}, after, tasks=1000)["gc_cycles"] is None  # an API server without them


def test_the_steady_report_has_the_api_servers_garbage_collector() -> None:
    r = results()
    r["steady"]["operator"]["apiserver_runtime"] = {"gc_cycles": 21.0, "alloc_kb_per_task": 4100.0,
                                                    "gc_cpu_ms_per_task": 6.25, "gc_idle_mark_cpu_ms_per_task": 3.5}
    assert "| operator | 21 | 4100 | 6.2 | 3.5 | – |" in report.markdown(r)  # a run before the live heap was read
    r["steady"]["operator"]["apiserver_runtime"].update(heap_live_mb_before=150.0, heap_live_mb_after=201.3)
    assert "| operator | 21 | 4100 | 6.2 | 3.5 | 150 → 201 |" in report.markdown(r)


def test_the_steady_report_says_whose_control_plane_each_load_ran_on() -> None:
    r = results()
    for row in r["steady"].values():
        row["control_plane"] = "fresh"
    assert "Each contender ran on a control plane of its own" in report.markdown(r)
    for row in r["steady"].values():
        row["control_plane"] = "shared"  # an external cluster (--kubeconfig): one after another
    text = report.markdown(r)
    assert "Each contender ran on a control plane of its own" not in text
    assert "in this order: " + ", ".join(r["steady"]) + " (" in text
