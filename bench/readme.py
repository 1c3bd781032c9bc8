"""README.md's benchmark table, regenerated from the results files of ``bench.run``.

    python -m bench.readme bench/results/A.json [bench/results/B.json ...]

The table sits in README.md between ``<!-- bench-table: FILES -->`` and ``<!-- /bench-table -->``;
FILES (relative to the repository) are the runs it was made from, later files adding burst
sizes and scenarios the earlier ones lack (``make bench`` has no 10,000-task burst; its
separate run adds it).  ``tests/unit/test_bench_report.py`` regenerates it from the files the
marker names and fails when the README says anything else.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from .contenders import CEILING, FLOOR, NAIVE, OPERATOR

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- bench-table: (?P<files>[^>]*?) -->\n.*?<!-- /bench-table -->", re.S)
COLUMNS = ((OPERATOR, "operator"), (NAIVE, "naive kopf"), (FLOOR, "kopf floor"), (CEILING, "ceiling"))


def merged(files: list[Path]) -> dict[str, Any]:
    """One results dict: burst sizes from every file, in-flight memory from the largest
    scale run, other scenarios from the first file that has them."""
    out: dict[str, Any] = {"burst": {}}
    for path in files:
        results = json.loads(path.read_text())
        for size, row in results.get("burst", {}).items():
            out["burst"].setdefault(size, row)
        for key in ("steady", "idle", "realistic"):
            if results.get(key) and key not in out:
                out[key] = results[key]
        scale = results.get("scale") or {}
        if scale:  # the largest number of tasks in flight wins (quick runs scale down to 2,000)
            largest = max(int(r.get("tasks", 0)) for r in scale.values())
            if largest > max((int(r.get("tasks", 0)) for r in out.get("scale", {}).values()), default=0):
                out["scale"] = {c: r for c, r in scale.items() if int(r.get("tasks", 0)) == largest}
    return out


def _cell(value: Any, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def table(results: dict[str, Any]) -> str:
    """The markdown table: one row per figure, one column per contender."""
    rows: list[tuple[str, dict[str, str]]] = []
    for size in sorted(results.get("burst", {}), key=int):
        burst = results["burst"][size]
        rows.append((f"burst of {int(size):,} tasks, tasks/s", {
            c: _cell(burst.get(c, {}).get("tasks_per_second"), "{:.1f}") for c, _ in COLUMNS}))
    steady = results.get("steady", {})
    if steady:
        rows.append(("steady 50 tasks/s: CPU ms per task", {
            c: _cell(steady.get(c, {}).get("cpu_ms_per_task"), "{:.1f}") for c, _ in COLUMNS}))
        rows.append(("steady: apply→create p99, s", {
            c: _cell(steady.get(c, {}).get("apply_to_create", {}).get("p99"), "{:.3f}") for c, _ in COLUMNS}))
        rows.append(("steady: object + Event writes per task", {
            c: (_cell(steady[c]["writes"]["object_writes_per_task"]) + " + "
                + _cell(steady[c]["writes"]["event_writes_per_task"])) if "writes" in steady.get(c, {}) else "–"
            for c, _ in COLUMNS}))
    idle = results.get("idle", {})
    if idle:
        rows.append((f"{max(int(r.get('tasks', 0)) for r in idle.values()):,} tasks in flight, unchanged: "
                     "API-server CPU, share of a core", {
                         c: _cell(idle.get(c, {}).get("apiserver_cpu_share"), "{:.3f}") for c, _ in COLUMNS}))
    realistic = results.get("realistic", {})
    for size in sorted(realistic, key=int):
        rows.append((f"{int(size):,} tasks running 60 s: API-server CPU s per task-hour", {
            c: _cell(realistic[size].get(c, {}).get("apiserver_cpu_seconds_per_task_hour"), "{:.2f}")
            for c, _ in COLUMNS}))
    scale = results.get("scale", {})
    if scale:
        rows.append((f"RSS MB, {max(int(r.get('tasks', 0)) for r in scale.values()):,} tasks in flight", {
            c: _cell(scale.get(c, {}).get("rss_mb"), "{:.1f}") for c, _ in COLUMNS}))
    lines = ["| figure | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(cells[c] for c, _ in COLUMNS) + " |" for name, cells in rows]
    return "\n".join(lines)


def block(files: list[Path]) -> str:
    """The README block (markers included) made from ``files``."""
    names = " ".join(str(p.resolve().relative_to(ROOT)) for p in files)
    return f"<!-- bench-table: {names} -->\n{table(merged(files))}\n<!-- /bench-table -->"


def named_files(readme: str) -> list[Path]:
    """The results files the README's table says it was made from."""
    m = BLOCK.search(readme)
    if m is None:
        raise ValueError("README.md has no <!-- bench-table: FILES --> ... <!-- /bench-table --> block")
    return [ROOT / name for name in m.group("files").split()]


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md's table from the files given."""
    p = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    text = README.read_text()
    if BLOCK.search(text) is None:
        raise SystemExit("README.md has no <!-- bench-table: ... --> block to rewrite")
    new = BLOCK.sub(lambda _: block(args.files), text, count=1)
    README.write_text(new)
    print(f"README.md: benchmark table from {', '.join(str(f) for f in args.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
