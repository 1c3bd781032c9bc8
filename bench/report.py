"""Turn a results dict into the markdown table, the target check and the PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .contenders import CEILING, NAIVE, OPERATOR

COLORS = {OPERATOR: "tab:blue", NAIVE: "tab:red", CEILING: "tab:gray"}

TARGETS = (
    ("throughput vs naive kopf", ">= 5x"),
    ("throughput vs ceiling", ">= 50%"),
    ("apply→create p99 at 50 tasks/s", "<= 0.5 s"),
    ("object writes per task lifecycle", "<= 3"),
    ("object writes/s while tasks run unchanged", "0"),
    ("RSS with 10,000 in-flight tasks", "<= 300 MB"),
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


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and whether it is met (None: not measured)."""
    out: list[dict[str, Any]] = []
    burst = results.get("burst", {})
    largest = burst[max(burst, key=int)] if burst else {}
    ours = largest.get(OPERATOR, {}).get("tasks_per_second")
    vs_naive = _ratio(ours, largest.get(NAIVE, {}).get("tasks_per_second"))
    vs_ceiling = _ratio(ours, largest.get(CEILING, {}).get("tasks_per_second"))
    steady = results.get("steady", {}).get(OPERATOR, {})
    p99 = steady.get("apply_to_create", {}).get("p99")
    writes = steady.get("writes", {}).get("object_writes_per_task")
    idle = results.get("idle", {}).get(OPERATOR, {})
    idle_writes = idle.get("object_writes_per_second")
    scale = results.get("scale", {}).get(OPERATOR, {})
    rss = scale.get("rss_mb")
    where = ""
    if scale and scale.get("tasks") != 10000 and scale.get("projected_rss_mb_10000") is not None:
        rss = scale["projected_rss_mb_10000"]
        where = f" (projected from {scale.get('tasks')} tasks at {scale.get('kb_per_task')} KB/task: an upper bound)"
    values = (
        (vs_naive, f"{vs_naive:.2f}x" if vs_naive else None, vs_naive is not None and vs_naive >= 5),
        (vs_ceiling, f"{vs_ceiling:.0%}" if vs_ceiling else None, vs_ceiling is not None and vs_ceiling >= 0.5),
        (p99, f"{p99:.3f} s" if p99 is not None else None, p99 is not None and p99 <= 0.5),
        (writes, _fmt(writes), writes is not None and writes <= 3),
        (idle_writes, _fmt(idle_writes, 3), idle_writes is not None and idle_writes == 0),
        (rss, f"{rss} MB{where}" if rss is not None else None, rss is not None and rss <= 300),
    )
    for (name, goal), (raw, shown, met) in zip(TARGETS, values):
        out.append({"target": name, "goal": goal, "value": shown, "met": None if raw is None else bool(met)})
    return out


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
                  "| object writes/task | Event writes/task | CPU ms/task | API server CPU ms/task |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c, r in steady.items():
            if "error" in r:
                lines.append(f"| {c} | failed: {_cell(r['error'])} |  |  |  |  |  |  |  |  |  |")
                continue
            a, v = r["apply_to_create"], r["terminal_to_visible"]
            lines.append(f"| {c} | {r['achieved_rate']} | {_fmt(a['p50'], 3)} | {_fmt(a['p99'], 3)} | "
                         f"{_fmt(v['p50'], 3)} | {_fmt(v['p99'], 3)} | {r['writes']['object_writes_per_task']} | "
                         f"{r['writes']['event_writes_per_task']} | {_fmt(r.get('cpu_ms_per_task'), 1)} | "
                         f"{_fmt(r.get('apiserver_cpu_ms_per_task'), 1)} |")
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
