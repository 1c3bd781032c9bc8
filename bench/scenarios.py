"""The scenarios: burst, steady, idle API cost and scale, each run once per contender.

Every scenario gets a fresh namespace per contender, so one contender's leftovers never
reach another; the contender watches only that namespace.  Each function returns plain
data (JSON-ready) for ``report``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import contenders
from .agents import INSTANT_TYPE, LATENCY_TYPE, read_call_log
from .harness import (BoxCpuSampler, ContenderProcess, Counts, cpu_seconds, label, parse_runtime, parse_writes,
                      rss_bytes, runtime_per_task, scrape_runtime, scrape_writes, settled_writes, wait_quiet,
                      write_delta)
from .kube import ApiError, Kube, tasks_path
from .loadgen import Observer, create_all, create_at_rate, create_namespace, task_manifest

#: every write the harness itself makes to AgentTasks: the load generator's creates
LOADGEN_KEY = ("POST", "agenttasks", "")


@dataclass
class Ctx:
    """What every scenario needs."""

    kube: Kube
    kubeconfig: Path
    workdir: Path
    concurrency: int
    operator_args: list[str] = field(default_factory=list)
    log: Callable[[str], None] = print
    apiserver_pid: int | None = None
    profile: tuple[str, ...] = ()
    run_id: str = field(default_factory=lambda: f"{int(time.time()) % 100000:05d}")
    #: leave each run's namespace and objects in place (default: removed once the run is measured)
    keep_namespaces: bool = False

    def namespace(self, base: str) -> str:
        """A namespace name unique to this run (runs may share one long-lived cluster)."""
        return f"{base}-{self.run_id}"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def writes_table(delta: Counts, tasks: int, loadgen_creates: int) -> dict[str, Any]:
    """Writes by the contender (the load generator's creates removed), total and per task."""
    own = dict(delta)
    own[LOADGEN_KEY] = own.get(LOADGEN_KEY, 0.0) - loadgen_creates
    by = {label(k): v for k, v in sorted(own.items()) if v > 0 and k[1] in ("agenttasks", "events")}
    objects = sum(v for k, v in own.items() if k[1] == "agenttasks" and v > 0)
    events = sum(v for k, v in own.items() if k[1] == "events" and v > 0)
    other = sum(v for k, v in own.items() if k[1] not in ("agenttasks", "events") and v > 0)
    per = (lambda v: round(v / tasks, 3)) if tasks else (lambda v: 0.0)
    return {
        "by_verb_resource": by,
        "per_task_by_verb_resource": {k: per(v) for k, v in by.items()},
        "object_writes_per_task": per(objects),
        "event_writes_per_task": per(events),
        "other_writes": other,  # controller-manager, leases: background noise of the control plane
    }


async def remove_namespace(ctx: Ctx, namespace: str, timeout: float = 300.0) -> None:
    """Delete a measured run's namespace and wait until it is gone.

    The next run must pay neither for this run's objects nor for their deletion: the API
    server's heap, and with it the work of its garbage collector, grows with every object
    kept. The same operator steady run cost the API server 21.6-22.8 ms of CPU per task with
    ~8,000 objects left by earlier runs and 17.5-19.2 ms on a fresh one (p99 0.24-0.29 s vs
    0.11-0.14 s), and in a full ``make bench`` the later scenarios and contenders inherited up
    to 20,000 tasks and their Events.  The contender is stopped: its finalizers are removed
    here, then the namespace controller deletes the rest.
    """
    if ctx.keep_namespaces:
        return
    listing = await ctx.kube.list(namespace)
    held = [o["metadata"]["name"] for o in listing.get("items", []) if o["metadata"].get("finalizers")]
    slots = asyncio.Semaphore(32)

    async def release(name: str) -> None:
        async with slots:
            try:
                await ctx.kube.merge_patch(tasks_path(namespace, name), {"metadata": {"finalizers": None}})
            except ApiError as e:
                if e.status != 404:
                    raise

    await asyncio.gather(*(release(name) for name in held))
    await ctx.kube.request("DELETE", f"/api/v1/namespaces/{namespace}")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            await ctx.kube.request("GET", f"/api/v1/namespaces/{namespace}")
        except ApiError as e:
            if e.status == 404:
                return
            raise
        await asyncio.sleep(1.0)
    ctx.log(f"  namespace {namespace} still there {timeout:.0f} s after its deletion; going on")


async def _start(ctx: Ctx, contender: str, namespace: str, tag: str) -> ContenderProcess:
    proc = contenders.process(contender, ctx.kubeconfig, namespace, ctx.concurrency, ctx.workdir, tag,
                              ctx.operator_args, profile=contender in ctx.profile)
    proc.call_log.unlink(missing_ok=True)
    return proc.start()


async def _probe(ctx: Ctx, proc: ContenderProcess, namespace: str, observer: Observer) -> float:
    """Create one instant task and wait until the contender finished it: proves it is serving."""
    t0 = time.time()
    await create_all(ctx.kube, namespace, [task_manifest("probe", INSTANT_TYPE)], 1)
    if not await observer.wait_for(["probe"], "ended", 120, proc.check_alive):
        raise RuntimeError(f"{proc.name}: probe task not finished in 120 s; see {proc.output_log}")
    return time.time() - t0


# ---------------------------------------------------------------------------------- burst
async def burst(ctx: Ctx, contender: str, n: int, round_: int = 0) -> dict[str, Any]:
    """``n`` instant tasks exist before the contender starts; time until all are Succeeded.

    Throughput is ``n`` over the time from the contender's first agent ``create`` to the
    last terminal status seen by the observer, so process start-up and the load
    generator's own speed are not part of it (both are reported separately).
    """
    ns = ctx.namespace(f"burst-{n}-{contender}-r{round_}")
    await create_namespace(ctx.kube, ns)
    before = await scrape_writes(ctx.kube)
    names = [f"t{i:05d}" for i in range(n)]
    t_create = time.time()
    await create_all(ctx.kube, ns, [task_manifest(name, INSTANT_TYPE) for name in names])
    create_seconds = time.time() - t_create
    observer = await Observer(ctx.kube, ns).start()
    api0 = _api_cpu(ctx)
    proc = await _start(ctx, contender, ns, f"burst{n}-r{round_}")
    cpu0 = 0.0
    try:
        done = await observer.wait_for(names, "ended", max(180.0, n * 0.5), proc.check_alive)
        after = await settled_writes(ctx.kube)  # trailing writes (Events) belong to the lifecycle
        cpu = cpu_seconds(proc.pid) - cpu0
        api_cpu = _api_cpu(ctx) - api0
    finally:
        proc.stop()
        await observer.stop()
        await remove_namespace(ctx, ns)
    calls = read_call_log(proc.call_log)
    first = min(calls.first_create.values(), default=proc.started_at)
    ended = [observer.ended[x] for x in names if x in observer.ended]
    last = max(ended, default=time.time())
    seconds = max(last - first, 1e-6)
    assert proc.sampler is not None
    result: dict[str, Any] = {
        "tasks": n,
        "completed": len(ended),
        "all_completed": done,
        "seconds": round(seconds, 3),
        "tasks_per_second": round(len(ended) / seconds, 2),
        "startup_seconds": round(first - proc.started_at, 3),
        "loadgen_create_seconds": round(create_seconds, 3),
        "peak_rss_mb": round(proc.sampler.peak / 2**20, 1),
        "cpu_seconds": round(cpu, 2),
        "apiserver_cpu_seconds": round(api_cpu, 2) if ctx.apiserver_pid else None,
        "agent_calls": calls.counts,
        "writes": writes_table(write_delta(before, after), n, n),
    }
    ctx.log(f"  burst {n:>6} {contender:<10} {result['tasks_per_second']:>8} tasks/s  "
            f"{result['writes']['object_writes_per_task']} object writes/task  peak RSS {result['peak_rss_mb']} MB")
    return result


# ---------------------------------------------------------------------------------- steady
async def steady(ctx: Ctx, contender: str, rate: float, seconds: float, *, run_seconds: float = 2.0,
                 poll: str = "1s", create_latency: float = 0.05, get_latency: float = 0.02) -> dict[str, Any]:
    """Open-loop load of latency-agent tasks; latency of apply→create and terminal→visible.

    Starts once the machine is quiet (:func:`~bench.harness.wait_quiet`): a latency tail
    measures whatever else is using the cores (``bench.run`` gives each contender a control
    plane of its own when it starts them, for the same reason)."""
    quiet = await wait_quiet()
    ns = ctx.namespace(f"steady-{contender}")
    await create_namespace(ctx.kube, ns)
    observer = await Observer(ctx.kube, ns).start()
    proc = await _start(ctx, contender, ns, "steady")
    try:
        await _probe(ctx, proc, ns, observer)
        n = int(rate * seconds)
        names = [f"s{i:05d}" for i in range(n)]
        bodies = [task_manifest(x, LATENCY_TYPE, poll=poll, run_seconds=run_seconds,
                                create_latency=create_latency, get_latency=get_latency) for x in names]
        metrics = await ctx.kube.text("/metrics")  # one scrape: each costs the API server ~4.5 MB
        before, runtime0 = parse_writes(metrics), parse_runtime(metrics)
        cpu0, api0 = cpu_seconds(proc.pid), _api_cpu(ctx)
        box = BoxCpuSampler()
        loaded = None
        try:
            applied, achieved = await create_at_rate(ctx.kube, ns, bodies, rate)
            loaded = box.mark()  # the summary is of the load; the samples go on until every task ended
            done = await observer.wait_for(names, "ended", 180 + run_seconds * 2, proc.check_alive)
        finally:
            box_cpu = box.stop(end=loaded)
        after, cpu1, api1 = await settled_writes(ctx.kube), cpu_seconds(proc.pid), _api_cpu(ctx)
        runtime1 = await scrape_runtime(ctx.kube)
    finally:
        proc.stop()
        await observer.stop()
        await remove_namespace(ctx, ns)
    calls = read_call_log(proc.call_log)
    to_create = [calls.first_create[x] - applied[x] for x in names if x in calls.first_create and x in applied]
    to_visible = [observer.ended[x] - calls.first_terminal_get[x] for x in names
                  if x in observer.ended and x in calls.first_terminal_get]

    def summary(values: list[float]) -> dict[str, Any]:
        return {"n": len(values), "p50": _r(percentile(values, 0.5)), "p90": _r(percentile(values, 0.9)),
                "p99": _r(percentile(values, 0.99)), "max": _r(max(values, default=None))}

    result: dict[str, Any] = {
        "rate": rate, "seconds": seconds, "tasks": n, "achieved_rate": round(achieved, 2),
        "completed": sum(1 for x in names if x in observer.ended), "all_completed": done,
        "run_seconds": run_seconds, "poll": poll, "create_latency": create_latency, "get_latency": get_latency,
        "cpu_ms_per_task": round(1000 * (cpu1 - cpu0) / max(n, 1), 2),
        "apiserver_cpu_ms_per_task": round(1000 * (api1 - api0) / max(n, 1), 2) if ctx.apiserver_pid else None,
        "apply_to_create": summary(to_create), "terminal_to_visible": summary(to_visible),
        "box_cpu": box_cpu, "box_cpu_samples": box.samples, "quiet_before": quiet,
        "apiserver_runtime": runtime_per_task(runtime0, runtime1, n),
        "apply_to_create_samples": [round(v, 4) for v in to_create],
        "terminal_to_visible_samples": [round(v, 4) for v in to_visible],
        "agent_calls": calls.counts,
        "writes": writes_table(write_delta(before, after), n, n),
    }
    ctx.log(f"  steady {contender:<10} apply→create p50 {result['apply_to_create']['p50']} p99 "
            f"{result['apply_to_create']['p99']}  terminal→visible p50 {result['terminal_to_visible']['p50']} "
            f"p99 {result['terminal_to_visible']['p99']}  {result['writes']['object_writes_per_task']} object writes/task")
    return result


# ---------------------------------------------------------------------------------- realistic
async def realistic(ctx: Ctx, contender: str, n: int, *, run_seconds: float = 60.0, poll: str = "5s",
                    ramp_seconds: float = 60.0) -> dict[str, Any]:
    """Tasks that really run: ``n`` tasks of ``run_seconds`` each, polled every ``poll``, created
    at an even rate over ``ramp_seconds`` (with a 60 s run and a 60 s ramp, about ``n`` are in
    flight at the peak).  API-server CPU and writes over the whole run, per task-hour.
    """
    ns = ctx.namespace(f"real-{n}-{contender}")
    await create_namespace(ctx.kube, ns)
    observer = await Observer(ctx.kube, ns).start()
    proc = await _start(ctx, contender, ns, f"real{n}")
    try:
        await _probe(ctx, proc, ns, observer)
        names = [f"r{i:05d}" for i in range(n)]
        bodies = [task_manifest(x, LATENCY_TYPE, poll=poll, run_seconds=run_seconds,
                                create_latency=0.05, get_latency=0.02) for x in names]
        before, cpu0, api0, t0 = await scrape_writes(ctx.kube), cpu_seconds(proc.pid), _api_cpu(ctx), time.time()
        _, achieved = await create_at_rate(ctx.kube, ns, bodies, n / ramp_seconds)
        done = await observer.wait_for(names, "ended", ramp_seconds + run_seconds * 3 + 300, proc.check_alive)
        after, cpu1, api1, t1 = await settled_writes(ctx.kube), cpu_seconds(proc.pid), _api_cpu(ctx), time.time()
        proc.check_alive()
        assert proc.sampler is not None
        peak_rss = proc.sampler.peak
    finally:
        proc.stop()
        await observer.stop()
        await remove_namespace(ctx, ns)
    calls = read_call_log(proc.call_log)
    task_hours = n * run_seconds / 3600
    writes = writes_table(write_delta(before, after), n, n)
    total_writes = sum(v for k, v in writes["by_verb_resource"].items())
    result: dict[str, Any] = {
        "tasks": n, "run_seconds": run_seconds, "poll": poll, "ramp_seconds": ramp_seconds,
        "achieved_rate": round(achieved, 2), "completed": sum(1 for x in names if x in observer.ended),
        "all_completed": done, "seconds": round(t1 - t0, 1),
        "task_hours": round(task_hours, 3),
        "apiserver_cpu_seconds": round(api1 - api0, 2) if ctx.apiserver_pid else None,
        "apiserver_cpu_seconds_per_task_hour": round((api1 - api0) / task_hours, 3) if ctx.apiserver_pid else None,
        "cpu_seconds": round(cpu1 - cpu0, 2),
        "cpu_seconds_per_task_hour": round((cpu1 - cpu0) / task_hours, 3),
        "writes_per_task_hour": round(total_writes / task_hours, 2),
        "object_writes_per_task": writes["object_writes_per_task"],
        "event_writes_per_task": writes["event_writes_per_task"],
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "agent_calls": calls.counts,
        "writes": writes,
    }
    ctx.log(f"  realistic {n:>5} {contender:<10} API-server CPU {result['apiserver_cpu_seconds_per_task_hour']} "
            f"s/task-hour  {result['writes_per_task_hour']} writes/task-hour  CPU {result['cpu_seconds_per_task_hour']} "
            f"s/task-hour  peak RSS {result['peak_rss_mb']} MB")
    return result


# ---------------------------------------------------------------------------------- idle / scale
async def in_flight(ctx: Ctx, contender: str, n: int, poll: str, window: float, *,
                    restart: bool = False, tag: str = "idle") -> dict[str, Any]:
    """``n`` long-running tasks that never change: writes/s, agent gets/s, RSS, CPU share.

    With ``restart`` the contender is then stopped (SIGTERM) and started again, and the
    time until every task was polled again by the new process is measured.
    """
    ns = ctx.namespace(f"{tag}-{n}-{contender}")
    await create_namespace(ctx.kube, ns)
    # the API server's share is this scenario's figure: start from a quiet one (the scenario
    # before may leave it busy for a while: a make bench run once measured 0.22 of a core
    # for an operator whose own requests were none)
    quiet = await _quiet_apiserver(ctx)
    observer = await Observer(ctx.kube, ns).start()
    proc = await _start(ctx, contender, ns, f"{tag}{n}")
    result: dict[str, Any] = {"tasks": n, "poll": poll, "window_seconds": window,
                              "apiserver_cpu_share_before": quiet}
    try:
        await _probe(ctx, proc, ns, observer)
        await asyncio.sleep(1.0)
        rss_before = rss_bytes(proc.pid)
        names = [f"i{i:05d}" for i in range(n)]
        t0 = time.time()
        await create_all(ctx.kube, ns, [task_manifest(x, LATENCY_TYPE, poll=poll, run_seconds=10**7,
                                                      create_latency=0.0, get_latency=0.0) for x in names])
        started = await observer.wait_for(names, "started", max(300.0, n * 0.1), proc.check_alive)
        result["all_started"] = started
        result["seconds_to_start_all"] = round(max(observer.started.get(x, time.time()) for x in names) - t0, 2)
        await asyncio.sleep(3.0)  # let the first writes after create settle
        before, cpu0, w0 = await scrape_writes(ctx.kube), cpu_seconds(proc.pid), time.time()
        api0 = _api_cpu(ctx)
        await asyncio.sleep(window)
        after, cpu1, w1 = await scrape_writes(ctx.kube), cpu_seconds(proc.pid), time.time()
        api1 = _api_cpu(ctx)
        proc.check_alive()
        assert proc.sampler is not None
        elapsed = w1 - w0
        delta = write_delta(before, after)
        gets = sum(1 for ts in read_call_log(proc.call_log, since=w0).gets_by_task.values() for t in ts if t <= w1)
        result.update({
            "rss_mb": round(proc.sampler.last / 2**20, 1),
            "rss_mb_before_tasks": round(rss_before / 2**20, 1),
            "kb_per_task": round((proc.sampler.last - rss_before) / 1024 / n, 1),
            "projected_rss_mb_10000": round((rss_before + (proc.sampler.last - rss_before) * 10000 / n) / 2**20, 1),
            "peak_rss_mb": round(proc.sampler.peak / 2**20, 1),
            "cpu_share": round((cpu1 - cpu0) / elapsed, 4),
            "apiserver_cpu_share": round((api1 - api0) / elapsed, 4) if ctx.apiserver_pid else None,
            "agent_gets_per_second": round(gets / elapsed, 2),
            "object_writes_per_second": round(sum(v for k, v in delta.items() if k[1] == "agenttasks") / elapsed, 3),
            "event_writes_per_second": round(sum(v for k, v in delta.items() if k[1] == "events") / elapsed, 3),
            "writes_by_verb_resource": {label(k): v for k, v in sorted(delta.items())},
        })
        if restart:
            result["restart"] = await _restart(ctx, proc, names, poll)
    finally:
        proc.stop()
        await observer.stop()
        await remove_namespace(ctx, ns)
    ctx.log(f"  {tag} {n:>6} {contender:<10} {result.get('object_writes_per_second')} object writes/s  "
            f"{result.get('event_writes_per_second')} event writes/s  RSS {result.get('rss_mb')} MB  "
            f"CPU {result.get('cpu_share')}")
    return result


async def _restart(ctx: Ctx, proc: ContenderProcess, names: list[str], poll: str) -> dict[str, Any]:
    """SIGTERM + start again; seconds until every task had a ``get`` from the new process."""
    proc.stop()
    t_restart = time.time()
    proc.start()
    wanted = set(names)
    deadline = t_restart + 600
    resumed_all: float | None = None
    first_get: float | None = None
    while time.time() < deadline:
        proc.check_alive()
        gets = read_call_log(proc.call_log, since=t_restart).gets_by_task
        if gets and first_get is None:
            first_get = min(min(v) for v in gets.values()) - t_restart
        if wanted.issubset(gets.keys()):
            resumed_all = max(min(gets[x]) for x in wanted) - t_restart
            break
        await asyncio.sleep(1.0)
    return {"seconds_to_first_poll": _r(first_get), "seconds_to_resume_all": _r(resumed_all),
            "rss_mb_after": round(rss_bytes(proc.pid) / 2**20, 1)}


async def _quiet_apiserver(ctx: Ctx, *, below: float = 0.06, sample: float = 2.0,
                           limit: float = 90.0) -> float | None:
    """Wait until the API server uses less than ``below`` of a core over ``sample`` seconds
    (at most ``limit`` seconds); its last share (None when it is not ours to see)."""
    if not ctx.apiserver_pid:
        return None
    deadline = time.time() + limit
    while True:
        cpu0, t0 = _api_cpu(ctx), time.time()
        await asyncio.sleep(sample)
        share = (_api_cpu(ctx) - cpu0) / (time.time() - t0)
        if share < below or time.time() >= deadline:
            if share >= below:
                ctx.log(f"  the API server stayed busy ({share:.2f} of a core) for {limit:.0f} s; measuring anyway")
            return round(share, 4)


def _api_cpu(ctx: Ctx) -> float:
    """CPU seconds of the API server so far (0 when it is not ours to see)."""
    return cpu_seconds(ctx.apiserver_pid) if ctx.apiserver_pid else 0.0


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
