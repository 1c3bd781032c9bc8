"""Summarise py-spy collapsed stacks: where a contender spends its CPU.

    python -m bench.run --contenders operator --scenarios burst --burst 1000 --profile operator
    python -m bench.profile /tmp/agent-operator-bench-*/operator-burst1000.0.pyspy.txt

Prints the functions with the most samples on top of the stack (self) and anywhere in the
stack (inclusive), and the same by module file, so a fix can be aimed at the biggest cost.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")
IDLE = ("select (selectors.py", "_run_once (asyncio/base_events.py", "wait (threading.py",
        "_worker (concurrent/futures/thread.py")


def _short(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "operator/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})", path


def summarise(path: Path, top: int = 25) -> str:
    """The report text for one collapsed-stacks file."""
    self_count: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")[1:]]  # first frame: the thread
        if not frames:
            continue
        total += count
        leaf, leaf_file = frames[-1]
        if any(leaf.startswith(i.split(" (")[0]) and i.split(" (")[1] in leaf for i in IDLE):
            idle += count
            continue
        self_count[leaf] += count
        by_file[leaf_file] += count
        for name in {name for name, _ in frames}:
            incl[name] += count
    busy = max(total - idle, 1)
    out = [f"{path.name}: {total} samples, {idle} idle (waiting), {busy} busy", "", "self (busy %):"]
    out += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in self_count.most_common(top)]
    out += ["", "inclusive (busy %):"]
    out += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in incl.most_common(top)]
    out += ["", "self by file (busy %):"]
    out += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in by_file.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    for f in args.files:
        print(summarise(f, args.top))
        print()


if __name__ == "__main__":
    main()
