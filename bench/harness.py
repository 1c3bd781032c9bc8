"""The measuring instruments: API server write counters, process RSS/CPU, contender processes.

Writes are read from the API server's own ``/metrics`` (``apiserver_request_total``, by
verb, resource and subresource), never from the contenders' claims.  Memory and CPU come
from ``/proc`` of the contender's process.  Each contender is a separate OS process started
with ``PR_SET_PDEATHSIG`` (via the control plane's ``processes.spawn``), so an interrupted
benchmark leaves nothing running.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from agent_operator.testing import processes
from agent_operator.testing.controlplane import ControlPlane

from .kube import Kube

ROOT = Path(__file__).resolve().parent.parent
GENERATED_CRD = ROOT / "crds" / "agenttasks.flyteagents.dev.yaml"
FALLBACK_CRD = Path(__file__).resolve().parent / "crd_min.yaml"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_TICK = os.sysconf("SC_CLK_TCK")

#: (verb, resource, subresource) -> request count
Counts = dict[tuple[str, str, str], float]


def install_crd(cp: ControlPlane) -> str:
    """Apply the AgentTask CRD (the generated one if present) and wait until it is served."""
    path = GENERATED_CRD if GENERATED_CRD.exists() else FALLBACK_CRD
    kubectl = [str(cp.assets.kubectl), "--kubeconfig", str(cp.kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", str(path)], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/agenttasks.flyteagents.dev"], check=True, capture_output=True)
    return str(path.relative_to(ROOT))


async def scrape_writes(kube: Kube) -> Counts:
    """Current ``apiserver_request_total`` of write verbs, summed over codes and scopes."""
    return parse_writes(await kube.text("/metrics"))


def parse_writes(text: str) -> Counts:
    """The write counters of :func:`scrape_writes` in a ``/metrics`` text."""
    counts: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_part, _, value = line.rpartition("} ")
        labels = dict(_LABEL.findall(labels_part))
        verb = labels.get("verb", "")
        if verb in WRITE_VERBS:
            counts[(verb, labels.get("resource", ""), labels.get("subresource", ""))] += float(value)
    return dict(counts)


#: the API server's Go runtime counters a steady run reports (runtime/metrics, as client_golang
#: exports them): its garbage collector runs in cycles whose frequency follows what each request
#: allocates, and during a cycle it marks on every core it finds idle - on a machine the
#: contender shares with the control plane, the contender's cores too
RUNTIME_COUNTERS = {
    "gc_cycles": "go_gc_cycles_total_gc_cycles_total",
    "alloc_bytes": "go_gc_heap_allocs_bytes_total",
    "gc_cpu_seconds": "go_cpu_classes_gc_total_cpu_seconds_total",
    "gc_idle_mark_cpu_seconds": "go_cpu_classes_gc_mark_idle_cpu_seconds_total",
    # a gauge, not a counter: the heap the last collection left alive (what the next one marks)
    "heap_live_bytes": "go_gc_heap_live_bytes",
}


def parse_runtime(text: str) -> dict[str, float]:
    """The :data:`RUNTIME_COUNTERS` in a ``/metrics`` text (missing ones left out)."""
    wanted = {metric: key for key, metric in RUNTIME_COUNTERS.items()}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


async def scrape_runtime(kube: Kube) -> dict[str, float]:
    """The API server's Go runtime counters now (:func:`parse_runtime`)."""
    return parse_runtime(await kube.text("/metrics"))


def runtime_per_task(before: Mapping[str, float], after: Mapping[str, float], tasks: int) -> dict[str, float | None]:
    """GC cycles between two :func:`scrape_runtime` readings, and per task: KB the API server
    allocated, ms of CPU its garbage collector used (and of that, marking on idle cores); the
    live heap (MB) at each reading."""
    def delta(key: str) -> float | None:
        return after[key] - before[key] if key in after and key in before else None

    def per_task(key: str, scale: float) -> float | None:
        d = delta(key)
        return round(d * scale / max(tasks, 1), 2) if d is not None else None

    def mb(reading: Mapping[str, float]) -> float | None:
        return round(reading["heap_live_bytes"] / 2**20, 1) if "heap_live_bytes" in reading else None

    return {"gc_cycles": delta("gc_cycles"), "alloc_kb_per_task": per_task("alloc_bytes", 1 / 1024),
            "gc_cpu_ms_per_task": per_task("gc_cpu_seconds", 1000),
            "gc_idle_mark_cpu_ms_per_task": per_task("gc_idle_mark_cpu_seconds", 1000),
            "heap_live_mb_before": mb(before), "heap_live_mb_after": mb(after)}


#: resources whose writes belong to a contender's task lifecycles
LIFECYCLE_RESOURCES = frozenset({"agenttasks", "events"})


async def settled_writes(kube: Kube, *, quiet: float = 2.0, timeout: float = 60.0) -> Counts:
    """The write counters once the contender's trailing writes stopped: AgentTask and Event
    writes unchanged over ``quiet`` seconds (at most ``timeout`` s of waiting).

    A contender may post Events after its tasks' status (the operator holds them back while
    it has a backlog, client-go queues them), and those writes and the API server's CPU for
    them belong to the run being measured, not to the next one."""
    def lifecycle(counts: Counts) -> Counts:
        return {k: v for k, v in counts.items() if k[1] in LIFECYCLE_RESOURCES}

    deadline = time.monotonic() + timeout
    await asyncio.sleep(quiet)
    counts = await scrape_writes(kube)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        newer = await scrape_writes(kube)
        if lifecycle(newer) == lifecycle(counts):
            return newer
        counts = newer
    return counts


def write_delta(before: Counts, after: Counts) -> Counts:
    """Requests made between two scrapes (non-zero entries only)."""
    out = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in set(before) | set(after)}
    return {key: value for key, value in out.items() if value > 0}


def label(key: tuple[str, str, str]) -> str:
    """``PATCH agenttasks/status`` style name of a counter key."""
    verb, resource, sub = key
    return f"{verb} {resource}/{sub}" if sub else f"{verb} {resource}"


# ---------------------------------------------------------------------------------- /proc
def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used by ``pid`` so far (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds on a thread; keeps peak and last."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            if value:
                self.last = value
                self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling (keeps the figures)."""
        self._stop.set()
        self._thread.join()


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from the first line of ``/proc/stat``."""
    return parse_cpu_line(Path("/proc/stat").read_text().split("\n", 1)[0])


def parse_cpu_line(line: str) -> tuple[int, int]:
    """(busy, total) of a ``/proc/stat`` ``cpu`` line; idle and iowait are not busy."""
    values = [int(x) for x in line.split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def busy_cores(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float:
    """How many of ``cpus`` cores were busy between two :func:`cpu_times` readings."""
    total = after[1] - before[1]
    return cpus * (after[0] - before[0]) / total if total > 0 else 0.0


class BoxCpuSampler:
    """Busy cores of the whole machine (every process: API server, etcd, contender, load
    generator) every ``interval`` seconds on a thread, so a report can tell a contender's
    latency from a machine that ran out of cores."""

    def __init__(self, interval: float = 0.5, cpus: int | None = None) -> None:
        self.interval = interval
        self.cpus = cpus or os.cpu_count() or 1
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = cpu_times()
        while not self._stop.wait(self.interval):
            now = cpu_times()
            self.samples.append(round(busy_cores(last, now, self.cpus), 2))
            last = now

    def mark(self) -> int:
        """How many samples there are so far: :meth:`stop` can summarise up to here."""
        return len(self.samples)

    def stop(self, end: int | None = None) -> dict[str, float | int | None]:
        """Stop sampling; mean busy cores and the share of samples with >= 95% of them busy,
        over the samples up to ``end`` (a :meth:`mark` reading; all by default).  The samples
        stay in :attr:`samples`."""
        self._stop.set()
        self._thread.join()
        return summarize_box_cpu(self.samples[:end], self.cpus)


def summarize_box_cpu(samples: list[float], cpus: int) -> dict[str, float | int | None]:
    """``cpus``, ``mean_cores`` and ``saturated_share`` (samples at >= 95% of ``cpus``)."""
    if not samples:
        return {"cpus": cpus, "mean_cores": None, "saturated_share": None}
    saturated = sum(1 for x in samples if x >= 0.95 * cpus)
    return {"cpus": cpus, "mean_cores": round(sum(samples) / len(samples), 2),
            "saturated_share": round(saturated / len(samples), 3)}


async def wait_quiet(*, busy_below: float = 0.3, window: float = 5.0, timeout: float = 60.0,
                     cpus: int | None = None) -> dict[str, float]:
    """Wait until the whole machine was nearly idle (fewer than ``busy_below`` cores busy)
    for ``window`` seconds in a row, or ``timeout`` passed: what a scenario before left
    behind (the API server deleting a namespace of 10,000 tasks and their Events, etcd
    compacting) is then not part of the next contender's latency. Seconds waited and the
    busy cores of the last window."""
    cpus = cpus or os.cpu_count() or 1
    t0 = time.monotonic()
    while True:
        before = cpu_times()
        await asyncio.sleep(window)
        busy = busy_cores(before, cpu_times(), cpus)
        waited = time.monotonic() - t0
        if busy < busy_below or waited >= timeout:
            return {"seconds": round(waited, 1), "busy_cores": round(busy, 2)}


# ---------------------------------------------------------------------------------- contenders
@dataclass
class ContenderProcess:
    """One running contender: its process, call log and output log."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    sampler: RssSampler | None = field(default=None, repr=False)
    profile: bool = False
    profiler: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def call_log(self) -> Path:
        """The agents' call log of this contender (shared across its restarts)."""
        return self.workdir / f"{self.name}.calls.tsv"

    @property
    def output_log(self) -> Path:
        """stdout+stderr of the process."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """PID of the running process."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "ContenderProcess":
        """Spawn the process and start sampling its RSS."""
        env = {**os.environ, **self.env, "BENCH_AGENT_LOG": str(self.call_log),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
        self.proc = processes.spawn(self.argv, self.output_log, env=env, cwd=ROOT)
        self.started_at = time.time()
        self.sampler = RssSampler(self.proc.pid)
        if self.profile:
            self._start_profiler()
        return self

    @property
    def profile_path(self) -> Path:
        """Collapsed stacks (flamegraph input) written by py-spy when profiling."""
        return self.workdir / f"{self.name}.{self.restarts}.pyspy.txt"

    def _start_profiler(self) -> None:
        """Attach py-spy (sampling, non-blocking) to the process; it writes when the process exits."""
        pyspy = Path(sys.executable).parent / "py-spy"
        argv = [str(pyspy), "record", "--pid", str(self.pid), "--rate", "100", "--nonblocking", "--gil",
                "--format", "raw", "--output", str(self.profile_path)]
        self.profiler = processes.spawn(argv, self.workdir / f"{self.name}.pyspy.log")

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the tail of its log when the process died."""
        if not self.alive():
            raise RuntimeError(f"contender {self.name} exited:\n{processes.tail(self.output_log)}")

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 15 s) and stop sampling."""
        processes.stop(self.proc, timeout=15.0)
        if self.sampler:
            self.sampler.stop()
        if self.profiler is not None:
            try:
                self.profiler.wait(timeout=30)  # py-spy writes its output once the target exits
            except subprocess.TimeoutExpired:
                processes.stop(self.profiler, sig=2)
            self.profiler = None

    def restart(self) -> None:
        """Stop and start again with the same arguments (same call log)."""
        self.stop()
        self.restarts += 1
        self.start()


def python() -> str:
    """The interpreter running the benchmark (the project venv's)."""
    return sys.executable
