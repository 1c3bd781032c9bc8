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
