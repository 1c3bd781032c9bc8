"""Run ``agent-operator`` under tracemalloc; SIGUSR1 writes the top allocation sites.

    python -m bench.memprofile OUT.txt run --namespace NS --agent bench.agents:LatencyAgent ...

Used to find what the operator's memory per in-flight task is made of (the scale scenario's
RSS target).  Tracing costs CPU and some memory itself: use it for the breakdown, never
for the benchmark's RSS figures.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def _dump(out: Path) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")))
    lines = []
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines.append(f"traced total: {total / 2**20:.1f} MiB")
    for key in ("filename", "lineno"):
        lines.append(f"\ntop by {key}:")
        for stat in snapshot.statistics(key)[:40]:
            frame = stat.traceback[0]
            lines.append(f"  {stat.size / 2**20:8.2f} MiB {stat.count:>9} blocks  {frame.filename}:{frame.lineno}")
    if tracemalloc.get_traceback_limit() > 1:
        lines.append("\ntop by traceback:")
        for stat in snapshot.statistics("traceback")[:15]:
            lines.append(f"  {stat.size / 2**20:8.2f} MiB {stat.count:>9} blocks")
            lines.extend(f"      {text}" for text in stat.traceback.format()[-10:])
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    """Start tracing, install the SIGUSR1 dump, run the operator CLI with the remaining argv."""
    out = Path(sys.argv[1])
    tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _dump(out)

    signal.signal(signal.SIGUSR1, on_signal)
    from agent_operator.cli.main import main as operator_main

    sys.argv = ["agent-operator", *sys.argv[2:]]
    operator_main()


if __name__ == "__main__":
    main()
