"""Turn a results dict into the markdown table, the target check and the PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .contenders import CEILING, FLOOR, NAIVE, OPERATOR

COLORS = {OPERATOR: "tab:blue", NAIVE: "tab:red", CEILING: "tab:gray", FLOOR: "tab:green"}

#: issue 16's targets, each a ratio or a count within one run
TARGETS = (
    ("steady CPU per task vs ceiling", "<= 1.5x"),
    ("burst throughput vs ceiling (largest burst)", ">= 0.9x"),
    ("burst throughput vs naive kopf (largest burst)", ">= 1x"),
    ("steady apply→create p99", "<= 0.25 s"),
    ("steady apply→create p99 vs naive kopf", "<= 1x"),
    ("Event writes per healthy task", "<= 1"),
    ("object writes per task lifecycle", "<= 3"),
    ("object writes/s while tasks run unchanged", "0"),
    ("RSS with 10,000 in-flight tasks", "<= 300 MB"),
    ("idle API-server CPU, naive kopf / operator", ">= 20x"),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str) -> str:
    """One line of an error, safe inside a markdown table cell."""
    return text.splitlines()[0][:160].replace("|", "/") if text else ""


def _largest_burst(results: dict[str, Any]) -> dict[str, Any]:
    """The rows of the largest burst size in ``results`` (per contender)."""
    burst = results.get("burst", {})
    return burst[max(burst, key=int)] if burst else {}


def _check(value: float | None, ok: bool, shown: str) -> tuple[float | None, str | None, bool]:
    return value, (shown if value is not None else None), value is not None and ok


#: the API server's own idle load moves by about this much (share of a core) between two
#: quiet windows; a contender adding less than this is counted as adding this much
API_BACKGROUND_NOISE = 0.01


def idle_api_ratio(idle: dict[str, Any]) -> tuple[float | None, str]:
    """naive kopf's API-server CPU over the operator's while tasks run unchanged.

    Each run records the API server's share in a quiet window just before the contender
    starts (``apiserver_cpu_share_before``); what a contender *adds* is its window's share
    minus that.  The operator adds nothing measurable (its share equals the API server's
    background), so the ratio is taken against :data:`API_BACKGROUND_NOISE` at least: a lower
    bound.  Results without the quiet window (before 2026-11-30) compare the raw shares.
    """
    naive, ours = idle.get(NAIVE, {}), idle.get(OPERATOR, {})
    n_share, o_share = naive.get("apiserver_cpu_share"), ours.get("apiserver_cpu_share")
    if n_share is None or o_share is None:
        return None, ""
    if naive.get("apiserver_cpu_share_before") is None or ours.get("apiserver_cpu_share_before") is None:
        raw = _ratio(n_share, o_share)
        return raw, f"{raw or 0:.1f}x"
    n_added = n_share - naive["apiserver_cpu_share_before"]
    o_added = o_share - ours["apiserver_cpu_share_before"]
    ratio = n_added / max(o_added, API_BACKGROUND_NOISE)
    bound = ">= " if o_added < API_BACKGROUND_NOISE else ""
    return ratio, (f"{bound}{ratio:.1f}x (added to the API server's own load: naive kopf {n_added:.3f}, "
                   f"operator {o_added:.3f} of a core)")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and whether it is met (None: not measured)."""
    out: list[dict[str, Any]] = []
    largest = _largest_burst(results)
    ours = largest.get(OPERATOR, {}).get("tasks_per_second")
    vs_naive = _ratio(ours, largest.get(NAIVE, {}).get("tasks_per_second"))
    vs_ceiling = _ratio(ours, largest.get(CEILING, {}).get("tasks_per_second"))
    steady = results.get("steady", {})
    mine = steady.get(OPERATOR, {})
    cpu_vs_ceiling = _ratio(mine.get("cpu_ms_per_task"), steady.get(CEILING, {}).get("cpu_ms_per_task"))
    p99 = mine.get("apply_to_create", {}).get("p99")
    p99_vs_naive = _ratio(p99, steady.get(NAIVE, {}).get("apply_to_create", {}).get("p99"))
    writes = mine.get("writes", {}).get("object_writes_per_task")
    events = mine.get("writes", {}).get("event_writes_per_task")
    idle = results.get("idle", {})
    idle_writes = idle.get(OPERATOR, {}).get("object_writes_per_second")
    idle_api, idle_shown = idle_api_ratio(idle)
    scale = results.get("scale", {}).get(OPERATOR, {})
    rss = scale.get("rss_mb")
    where = ""
    if scale and scale.get("tasks") != 10000 and scale.get("projected_rss_mb_10000") is not None:
        rss = scale["projected_rss_mb_10000"]
        where = f" (projected from {scale.get('tasks')} tasks at {scale.get('kb_per_task')} KB/task: an upper bound)"
    restarted = (scale.get("restart") or {}).get("rss_mb_after") if scale.get("tasks") == 10000 else None
    if rss is not None and restarted is not None:
        # the target holds for the operator's whole life: a restart over the same tasks too
        where = f"; {restarted} MB after a restart"
        shown_rss, rss = f"{rss} MB", max(rss, restarted)
    else:
        shown_rss = f"{rss} MB"
    values = (
        _check(cpu_vs_ceiling, cpu_vs_ceiling is not None and cpu_vs_ceiling <= 1.5, f"{cpu_vs_ceiling or 0:.2f}x"),
        _check(vs_ceiling, vs_ceiling is not None and vs_ceiling >= 0.9, f"{vs_ceiling or 0:.2f}x"),
        _check(vs_naive, vs_naive is not None and vs_naive >= 1.0, f"{vs_naive or 0:.2f}x"),
        _check(p99, p99 is not None and p99 <= 0.25, f"{p99 or 0:.3f} s"),
        _check(p99_vs_naive, p99_vs_naive is not None and p99_vs_naive <= 1.0, f"{p99_vs_naive or 0:.2f}x"),
        _check(events, events is not None and events <= 1, _fmt(events)),
        _check(writes, writes is not None and writes <= 3, _fmt(writes)),
        _check(idle_writes, idle_writes == 0, _fmt(idle_writes, 3)),
        _check(rss, rss is not None and rss <= 300, f"{shown_rss}{where}"),
        _check(idle_api, idle_api is not None and idle_api >= 20, idle_shown),
    )
    for (name, goal), (raw, shown, met) in zip(TARGETS, values):
        out.append({"target": name, "goal": goal, "value": shown, "met": None if raw is None else bool(met)})
    return out


def floor(results: dict[str, Any]) -> dict[str, float | None]:
    """The kopf floor against the ceiling: the least a kopf-based contender reaches here."""
    largest = _largest_burst(results)
    steady = results.get("steady", {})
    cpu = steady.get(FLOOR, {}).get("cpu_ms_per_task")
    return {
        "steady_cpu_ms_per_task": cpu,
        "steady_cpu_vs_ceiling": _ratio(cpu, steady.get(CEILING, {}).get("cpu_ms_per_task")),
        "operator_cpu_vs_floor": _ratio(steady.get(OPERATOR, {}).get("cpu_ms_per_task"), cpu),
        "burst_vs_ceiling": _ratio(largest.get(FLOOR, {}).get("tasks_per_second"),
                                   largest.get(CEILING, {}).get("tasks_per_second")),
        "operator_burst_vs_floor": _ratio(largest.get(OPERATOR, {}).get("tasks_per_second"),
                                          largest.get(FLOOR, {}).get("tasks_per_second")),
    }


def floor_lines(results: dict[str, Any]) -> list[str]:
    """What kopf alone costs, under the targets (empty when the floor did not run)."""
    f = floor(results)
    if f["steady_cpu_vs_ceiling"] is None and f["burst_vs_ceiling"] is None:
        return []
    return ["", f"**kopf floor** (the ceiling's work with its watch fed through the operator's kopf registry and "
            f"settings): steady CPU {_fmt(f['steady_cpu_ms_per_task'], 1)} ms/task = "
            f"{_fmt(f['steady_cpu_vs_ceiling'])}x the ceiling's (operator: {_fmt(f['operator_cpu_vs_floor'])}x the "
            f"floor's); largest burst {_fmt(f['burst_vs_ceiling'])}x the ceiling's throughput (operator: "
            f"{_fmt(f['operator_burst_vs_floor'])}x the floor's). A kopf-based contender starts from these."]


def markdown(results: dict[str, Any]) -> str:
    """The human-readable report (also pasted into the README)."""
    meta = results.get("meta", {})
    lines = [f"### Benchmark {meta.get('date', '')} ({meta.get('mode', '')})", "",
             f"`{meta.get('command', '')}` at `{meta.get('revision', '')}`, {meta.get('cpus')} CPUs "
             f"(1-minute load average {_fmt(meta.get('loadavg_start', [None])[0])} at start, "
             f"{_fmt((meta.get('loadavg_end') or [None])[0])} at end; the machine is shared), agent concurrency "
             f"{meta.get('concurrency')}, CRD `{meta.get('crd', '')}`.", ""]
    for note in meta.get("scaled_down", []):
        lines.append(f"- **scaled down:** {note}")
    if meta.get("scaled_down"):
        lines.append("")
    lines += ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in targets(results):
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['goal']} | {t['value'] or '–'} | {met} |")
    lines += floor_lines(results)
    burst = results.get("burst", {})
    if burst:
        lines += ["", "**Burst** (instant agent, N tasks exist before the contender starts; tasks/s from its "
                  "first create to the last terminal status; best of the runs shown)", "",
                  "| N | contender | tasks/s | vs naive | vs ceiling | object writes/task | Event writes/task "
                  "| peak RSS MB | CPU s | API server CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for n in sorted(burst, key=int):
            row = burst[n]
            naive = row.get(NAIVE, {}).get("tasks_per_second")
            ceiling = row.get(CEILING, {}).get("tasks_per_second")
            for c, r in row.items():
                if "error" in r:
                    lines.append(f"| {n} | {c} | failed: {_cell(r['error'])} |  |  |  |  |  |  |  |")
                    continue
                tps = r["tasks_per_second"]
                incomplete = "" if r.get("all_completed") else f" ({r['completed']}/{r['tasks']} done)"
                if len(r.get("runs_tasks_per_second", [])) > 1:
                    incomplete += " (runs: " + ", ".join(str(x) for x in r["runs_tasks_per_second"]) + ")"
                lines.append(f"| {n} | {c} | {tps}{incomplete} | {_fmt(_ratio(tps, naive))} | "
                             f"{_fmt(_ratio(tps, ceiling))} | {r['writes']['object_writes_per_task']} | "
                             f"{r['writes']['event_writes_per_task']} | {r['peak_rss_mb']} | {r['cpu_seconds']} | "
                             f"{_fmt(r.get('apiserver_cpu_seconds'))} |")
    steady = results.get("steady", {})
    any_row = next((r for r in steady.values() if "error" not in r), None)
    if any_row is not None:
        lines += ["", f"**Steady** ({any_row['rate']:.0f} tasks/s for {any_row['seconds']:.0f} s, latency agent: "
                  f"create {any_row['create_latency']} s, get {any_row['get_latency']} s, run "
                  f"{any_row['run_seconds']} s, poll {any_row['poll']}; seconds)", "",
                  "| contender | achieved rate | apply→create p50 | p99 | terminal→visible p50 | p99 "
                  "| object writes/task | Event writes/task | CPU ms/task | API server CPU ms/task "
                  "| machine busy, cores (share of time all busy) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c, r in steady.items():
            if "error" in r:
                lines.append(f"| {c} | failed: {_cell(r['error'])} |  |  |  |  |  |  |  |  |  |  |")
                continue
            a, v = r["apply_to_create"], r["terminal_to_visible"]
            box = r.get("box_cpu") or {}
            busy = (f"{_fmt(box.get('mean_cores'), 2)} of {box['cpus']} ({_fmt(box.get('saturated_share'), 2)})"
                    if box.get("mean_cores") is not None else "–")
            lines.append(f"| {c} | {r['achieved_rate']} | {_fmt(a['p50'], 3)} | {_fmt(a['p99'], 3)} | "
                         f"{_fmt(v['p50'], 3)} | {_fmt(v['p99'], 3)} | {r['writes']['object_writes_per_task']} | "
                         f"{r['writes']['event_writes_per_task']} | {_fmt(r.get('cpu_ms_per_task'), 1)} | "
                         f"{_fmt(r.get('apiserver_cpu_ms_per_task'), 1)} | {busy} |")
        waits = [f"{c} {r['quiet_before']['seconds']} s"
                 + (f" (still {r['quiet_before']['busy_cores']} cores busy)" if r["quiet_before"]["busy_cores"] >= 0.3
                    else "")
                 for c, r in steady.items() if r.get("quiet_before")]
        if waits:
            lines += ["", "Each contender's load started once the machine had been quiet (under 0.3 cores busy "
                      "for 5 s, or for at most 60 s); waited: " + ", ".join(waits) + "."]
        planes = {r.get("control_plane") for r in steady.values()}
        if planes == {"fresh"}:
            lines += ["", "Each contender ran on a control plane of its own, started for its load (etcd empty but "
                      "for the CRD): a latency tail measures the control plane's state as much as the contender."]
        elif "shared" in planes:
            lines += ["", "The contenders ran one after another on the control plane of the other scenarios, in "
                      "this order: " + ", ".join(steady) + " (a latency tail depends on what ran before it)."]
        runtime = {c: r["apiserver_runtime"] for c, r in steady.items() if r.get("apiserver_runtime")}
        if runtime:
            lines += ["", "**The API server's Go runtime during the steady load** (its `/metrics`; a garbage "
                      "collection cycle marks on every idle core, the contender's too)", "",
                      "| contender | GC cycles | allocated KB/task | GC CPU ms/task | of which on idle cores "
                      "| live heap MB, before → after |",
                      "|---|---|---|---|---|---|"]
            for c, g in runtime.items():
                heap = (f"{_fmt(g.get('heap_live_mb_before'), 0)} → {_fmt(g.get('heap_live_mb_after'), 0)}"
                        if g.get("heap_live_mb_before") is not None else "–")
                lines.append(f"| {c} | {_fmt(g.get('gc_cycles'), 0)} | {_fmt(g.get('alloc_kb_per_task'), 0)} | "
                             f"{_fmt(g.get('gc_cpu_ms_per_task'), 1)} | "
                             f"{_fmt(g.get('gc_idle_mark_cpu_ms_per_task'), 1)} | {heap} |")
        lines += ["", "**API writes per task lifecycle** (steady scenario, API server `apiserver_request_total`, "
                  "load generator's creates removed)", "", "| contender | writes per task by verb and resource |",
                  "|---|---|"]
        for c, r in steady.items():
            if "error" in r:
                continue
            per = r["writes"]["per_task_by_verb_resource"]
            lines.append(f"| {c} | " + ", ".join(f"{k}: {v}" for k, v in per.items()) + " |")
    for key, title in (("idle", "In flight, unchanged"), ("scale", "Scale")):
        section = results.get(key, {})
        if not section:
            continue
        lines += ["", f"**{title}** (long-running tasks; figures over a quiet window)", "",
                  "| contender | tasks | poll | object writes/s | Event writes/s | agent gets/s | RSS MB | KB/task "
                  "| CPU share | API server CPU share | resume after restart s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c, r in section.items():
            if "error" in r:
                lines.append(f"| {c} | failed: {_cell(r['error'])} |  |  |  |  |  |  |  |  |  |")
                continue
            restart = r.get("restart", {})
            lines.append(f"| {c} | {r['tasks']} | {r['poll']} | {r.get('object_writes_per_second')} | "
                         f"{r.get('event_writes_per_second')} | {r.get('agent_gets_per_second')} | {r.get('rss_mb')} | "
                         f"{r.get('kb_per_task')} | "
                         f"{r.get('cpu_share')} | {_fmt(r.get('apiserver_cpu_share'), 4)} | "
                         f"{_fmt(restart.get('seconds_to_resume_all'), 1)} |")
    realistic = results.get("realistic", {})
    if realistic:
        lines += ["", "**Realistic** (tasks that run: latency agent, each task runs `run_seconds` and is polled "
                  "every `poll`, created at an even rate over the ramp; whole run, per task-hour of agent work)", "",
                  "| N | contender | run s / poll / ramp s | API server CPU s/task-hour | writes/task-hour "
                  "| object writes/task | Event writes/task | CPU s/task-hour | peak RSS MB | completed |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n in sorted(realistic, key=int):
            for c, r in realistic[n].items():
                if "error" in r:
                    lines.append(f"| {n} | {c} | failed: {_cell(r['error'])} |  |  |  |  |  |  |  |")
                    continue
                lines.append(f"| {n} | {c} | {r['run_seconds']:.0f} / {r['poll']} / {r['ramp_seconds']:.0f} | "
                             f"{_fmt(r.get('apiserver_cpu_seconds_per_task_hour'))} | {r['writes_per_task_hour']} | "
                             f"{r['object_writes_per_task']} | {r['event_writes_per_task']} | "
                             f"{r['cpu_seconds_per_task_hour']} | {r['peak_rss_mb']} | {r['completed']}/{r['tasks']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Latency CDFs and the scaling curve as one PNG (None when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot written")
        return None
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    steady = results.get("steady", {})
    for ax, key, title in ((axes[0][0], "apply_to_create_samples", "apply → agent.create"),
                           (axes[0][1], "terminal_to_visible_samples", "agent terminal → status visible")):
        for c, r in steady.items():
            values = sorted(r.get(key, []))
            if values:
                ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=c, color=COLORS.get(c))
        ax.set_title(f"{title} (steady load)")
        ax.set_xlabel("seconds")
        ax.set_ylabel("fraction of tasks")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    burst = results.get("burst", {})
    sizes = sorted(burst, key=int)
    names = sorted({c for n in sizes for c in burst[n]})
    for ax, key, title in ((axes[1][0], "tasks_per_second", "burst throughput (tasks/s)"),
                           (axes[1][1], "peak_rss_mb", "peak RSS during burst (MB)")):
        for c in names:
            ok = [n for n in sizes if c in burst[n] and "error" not in burst[n][c]]
            xs = [int(n) for n in ok]
            ys = [burst[n][c][key] for n in ok]
            ax.plot(xs, ys, marker="o", label=c, color=COLORS.get(c))
        ax.set_xscale("log")
        ax.set_xlabel("tasks")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    meta = results.get("meta", {})
    fig.suptitle(f"flyte-agent-operator benchmark {meta.get('date', '')} ({meta.get('mode', '')})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
