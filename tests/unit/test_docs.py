"""Every command the README and the docs show is run by a test; the docs site builds.

A fenced ``bash``/``sh``/``shell``/``console`` block must be preceded by a marker line that
says who runs it:

* ``<!-- doc-test: run -->`` - this test runs the block as written (bash, ``set -euo
  pipefail``, the venv's ``bin`` first on PATH) in a scratch directory that shows the
  repository's files; a ``prints`` line and a ``text`` block after it show (the end of)
  what it prints, and are compared;
* ``<!-- doc-test: tests/x/test_y.py::test_z ... -->`` - the named tests run these commands
  (each must exist);
* ``ci`` among those names - ``.ci/run`` runs it (``make test``);
* ``<!-- doc-test: not run: REASON -->`` - for what no machine here can do (Docker, a node
  that runs pods); the reason is printed in the page source and listed by
  :func:`test_commands_not_run_are_few_and_say_why`.

A block without a marker fails this test, naming file and line: write the marker when
adding a command to the docs.  A page whose commands a test of its own runs is listed in
:data:`WHOLE_PAGE` instead.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "CHANGELOG.md",
                *(ROOT / "docs").rglob("*.md"), *(ROOT / "bench").glob("*.md")])
SHELLS = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<what>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    """A fenced shell block of a page and the marker above it ('' when there is none).

    ``expected`` is the ``text`` block that follows it after a line ``prints``: what the
    block's commands print, checked when the block is run.
    """

    page: Path
    line: int
    text: str
    marker: str
    expected: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def shell_blocks(page: Path) -> list[Block]:
    """The page's fenced shell blocks, in order."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        close = re.compile(rf"^\s*{re.escape(m.group('fence'))}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        if m.group("info") in SHELLS:
            before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            blocks.append(Block(page, i + 1, "\n".join(lines[i + 1:end]) + "\n", marker.group("what") if marker else "",
                                _printed(lines, end + 1)))
        i = end + 1
    return blocks


#: pages whose every shell block a test of their own runs as written (block markers optional)
WHOLE_PAGE = {
    "docs/plugins.md": "tests/unit/test_docs_interop.py",
    "docs/flyte2.md": "tests/unit/test_docs_interop.py",
    "docs/image.md": "tests/integration/test_image_docs.py",
    "docs/helm.md": "tests/integration/test_helm_docs.py",
}


def _with_page_runner(block: Block) -> Block:
    runner = WHOLE_PAGE.get(block.page.relative_to(ROOT).as_posix())
    if block.marker or runner is None:
        return block
    return Block(block.page, block.line, block.text, runner, block.expected)


def _printed(lines: list[str], start: int) -> str | None:
    """The ``text`` block after a ``prints`` line that follows a shell block, if there is one."""
    rest = [(k, line.strip()) for k, line in enumerate(lines[start:], start) if line.strip()][:2]
    if len(rest) == 2 and rest[0][1] == "prints" and rest[1][1] == "```text":
        first = rest[1][0] + 1
        end = next(k for k in range(first, len(lines)) if lines[k].strip() == "```")
        return "\n".join(lines[first:end])
    return None


BLOCKS = [_with_page_runner(b) for page in PAGES for b in shell_blocks(page)]
RUN = [b for b in BLOCKS if b.marker == "run"]


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    file = ROOT / path
    if not file.is_file() or not path.startswith("tests/"):
        return False
    if not name:
        return True
    tree = ast.parse(file.read_text())
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name.split("[")[0]
               for n in ast.walk(tree))


def test_the_pages_have_shell_blocks_to_check() -> None:
    assert len(BLOCKS) >= 10 and len(RUN) >= 3, [b.where for b in BLOCKS]


def test_every_shell_block_says_which_test_runs_it() -> None:
    problems: list[str] = []
    for b in BLOCKS:
        what = b.marker
        if not what:
            problems.append(f"{b.where}: no <!-- doc-test: ... --> marker above this block")
        elif what == "run" or what.startswith("not run:"):
            continue
        else:
            refs = what.split()
            if "ci" in refs and ("make test" not in (ROOT / ".ci" / "run").read_text() or "make test" not in b.text):
                problems.append(f"{b.where}: 'ci' is for `make test`, which .ci/run runs")
            missing = [ref for ref in refs if ref != "ci" and not _test_exists(ref)]
            if missing:
                problems.append(f"{b.where}: no such test: {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_commands_not_run_are_few_and_say_why() -> None:
    skipped = [b for b in BLOCKS if b.marker.startswith("not run:")]
    for b in skipped:
        assert len(b.marker.removeprefix("not run:").strip()) >= 20, f"{b.where}: say why it is not run"
    print("\n".join(f"{b.where}: {b.marker}" for b in skipped))
    assert len(skipped) <= len(BLOCKS) // 4, "most documented commands must be run by a test"


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_documented_commands_run_as_written(block: Block, tmp_path: Path) -> None:
    # a scratch directory that shows the repository's files: what the commands write stays there
    for entry in ROOT.iterdir():
        if not entry.name.startswith("."):
            (tmp_path / entry.name).symlink_to(entry)
    # a fresh shell, as a reader has: no make of ours around it (nested makes print their directory)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{block.where}:\n{block.text}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    if block.expected is not None:
        assert done.stdout.rstrip().endswith(block.expected.rstrip()), (block.where, done.stdout)


def test_printed_output_shown_in_the_docs_is_checked() -> None:
    assert any(b.expected for b in RUN), "docs/cli.md shows what validate prints"


def test_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    first_screen = "\n".join(readme.splitlines()[:80])
    for must in ("make demo", "make test", "kubectl apply --server-side -k", "kubectl wait --for=condition=Succeeded"):
        assert must in readme, must
    assert "make demo" in first_screen and "make test" in first_screen
    assert "| N | contender |" not in readme, "dated benchmark tables live in bench/RESULTS.md"


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_mkdocs_nav_lists_every_page() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for v in node.values() for p in pages(v)]
        if isinstance(node, list):
            return [p for v in node for p in pages(v)]
        return []

    listed = set(pages(config["nav"]))
    present = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert present == listed, (present - listed, listed - present)


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    """`make docs` runs this build in `make test` too; a copy with a broken link fails it."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs (the dev extra) is needed: make install"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    # the same site with one broken link does not build
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    for name in ("mkdocs.yml", "CHANGELOG.md", "SECURITY.md"):
        shutil.copy(ROOT / name, copy / name)
    with (copy / "docs" / "index.md").open("a") as f:
        f.write("\nSee [the missing page](no-such-page.md).\n")
    broken = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "broken")], cwd=copy,
                            env=env, capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr


def test_the_operations_flag_table_states_the_parsers_defaults_of_choice_flags() -> None:
    """docs/operations.md's `run` flag table: a flag with fixed choices shows the default
    ``agent-operator run`` really has (it once said ``--events all`` after the default moved)."""
    from agent_operator.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    run = sub.choices["run"]  # type: ignore[index]
    by_flag = {opt: a for a in run._actions for opt in a.option_strings}
    # cells split on unescaped pipes only (`--events warnings\|all` is one cell)
    rows = [re.split(r"(?<!\\)\|", line) for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
            if line.startswith("| `--")]
    checked = 0
    for cells in rows:
        flag = re.match(r"\s*`(--[a-z-]+)", cells[1])
        action = by_flag.get(flag.group(1)) if flag else None
        if action is None or not action.choices:
            continue
        documented = cells[2].strip().split()[0]
        assert documented == str(action.default), f"docs/operations.md: {flag.group(1)} default {documented!r}, " \
                                                  f"the parser's {action.default!r}"
        checked += 1
    assert checked >= 2  # --log-format, --events
