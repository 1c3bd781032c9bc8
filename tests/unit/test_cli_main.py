"""The command line as users meet it: --version, help texts, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from admission_cases import manifest
from agent_operator import __version__
from agent_operator.cli.main import build_parser, main, plain_text

ROOT = Path(__file__).resolve().parents[2]
SPHINX = re.compile(r"``|:(mod|class|func|meth|attr|data|exc|obj|ref):`")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent_operator.cli.main", *argv],
                          capture_output=True, text=True, timeout=120)


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"agent-operator {__version__}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help_text(command: str) -> None:
    missing = [a.option_strings or [a.dest] for a in _commands()[command]._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing, f"agent-operator {command}: options without help: {missing}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_output_has_no_sphinx_markup(command: str) -> None:
    text = _commands()[command].format_help()
    found = [text[max(0, m.start() - 30):m.end() + 30] for m in SPHINX.finditer(text)]
    assert not found, f"agent-operator {command} --help shows reStructuredText: {found}"


def test_top_level_help_has_no_sphinx_markup_and_lists_every_command() -> None:
    text = build_parser().format_help()
    assert not SPHINX.search(text)
    for command in _commands():
        assert command in text


def test_plain_text_turns_roles_and_literals_into_backticks() -> None:
    assert plain_text("as ``run`` does (:mod:`agent_operator.cli.x`, :class:`~a.B`)") == (
        "as `run` does (`agent_operator.cli.x`, `a.B`)")


def test_run_with_a_missing_kubeconfig_prints_one_line_and_exits_2() -> None:
    done = _cli("run", "--kubeconfig", "/nonexistent", "--health-port", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["agent-operator run: --kubeconfig /nonexistent: No such file or directory"]


def test_run_with_a_kubeconfig_that_cannot_be_used_prints_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                                      "users": [], "current-context": "gone"}))
    done = _cli("run", "--kubeconfig", str(config), "--health-port", "0", "--no-entry-points", "--flytekit", "off")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("agent-operator run:")]
    assert len(errors) == 1 and "cannot load Kubernetes credentials" in errors[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(manifest("good", spec={"taskTemplate": {"type": "webhook", "custom": {
        "url": "http://127.0.0.1:9/", "method": "GET"}}, "inputs": None})))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(manifest("bad", spec={"maxAttempts": 0})))
    kubeconfig = tmp_path / "kubeconfig"  # loads (nothing listens on port 9: the agents fail first)
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return {"good": str(good), "bad": str(bad), "missing": str(tmp_path / "missing.yaml"), "kubeconfig": str(kubeconfig),
            "pb": str(ROOT / "tests" / "fixtures" / "flytekit" / "file_sensor.taskspec.pb")}


@pytest.mark.parametrize(("argv", "code"), [
    (["validate", "--no-agents", "{good}"], 0),
    (["validate", "--no-agents", "{bad}"], 1),
    (["validate", "--no-agents", "{missing}"], 2),
    (["validate", "--no-such-flag", "{good}"], 2),
    (["render", "{pb}", "--input", "path=/x"], 0),
    (["render", "{good}"], 1),
    (["render", "{missing}"], 2),
    (["render", "{pb}", "--no-such-flag"], 2),
    (["run-local", "--no-entry-points", "--flytekit", "off", "{bad}"], 1),
    (["run-local", "--no-entry-points", "--flytekit", "off", "{missing}"], 2),
    (["run-local", "--no-such-flag", "{good}"], 2),
    # an agent flag naming an agent that cannot be loaded is a usage error in every command
    (["run-local", "--agent", "no_such_module_xyz:Agent", "{good}"], 2),
    (["agents", "--agent", "no_such_module_xyz:Agent"], 2),
    (["serve", "--agent", "no_such_module_xyz:Agent", "--address", "127.0.0.1:0"], 2),
    (["run", "--kubeconfig", "{kubeconfig}", "--agent", "no_such_module_xyz:Agent"], 2),
    ([], 2),
])
def test_exit_codes_are_the_same_across_commands(files: dict[str, str], argv: list[str], code: int) -> None:
    done = _cli(*[a.format(**files) for a in argv])
    assert done.returncode == code, (argv, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr


def test_validate_json_report_names_refused_files(files: dict[str, str], tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("a: 1\na: 2\n")
    done = _cli("validate", "--no-agents", "-o", "json", files["good"], str(dup))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["valid"] is False and "duplicate key 'a'" in report["refused"][0]
