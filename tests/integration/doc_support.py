"""Run the shell blocks of a docs/ page as written (the page's every command is run by a test)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bash_blocks(page: Path) -> list[str]:
    """The ```bash blocks of a Markdown page, in order."""
    return re.findall(r"^```bash\n(.*?)^```$", page.read_text(), re.M | re.S)


def replace_line(block: str, prefix: str, line: str) -> str:
    """``block`` with its one line starting with ``prefix`` replaced (a test's own value for a
    variable the page sets, e.g. ``REGISTRY=``); fails when the page no longer has that line."""
    lines = block.splitlines()
    hits = [i for i, text in enumerate(lines) if text.startswith(prefix)]
    assert len(hits) == 1, f"expected one line starting with {prefix!r} in:\n{block}"
    lines[hits[0]] = line
    return "\n".join(lines) + "\n"


def run_block(block: str, cwd: Path, env: Mapping[str, str] | None = None,
              path_dirs: tuple[Path, ...] = (), timeout: float = 900) -> str:
    """Run ``block`` with ``bash -euo pipefail`` in ``cwd``; returns stdout, fails with stderr."""
    # a user types the block in a fresh shell: no make of ours around it (under `make test` a
    # nested make would print "make[1]: Entering directory" before the block's own output)
    environ = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    environ.update(env or {})
    environ["PATH"] = os.pathsep.join([*(str(p) for p in path_dirs), environ["PATH"]])
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"block failed ({proc.returncode}):\n{block}\n--- stderr ---\n{proc.stderr[-4000:]}"
    return proc.stdout
