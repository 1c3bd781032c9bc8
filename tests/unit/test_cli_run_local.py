"""`agent-operator run-local` runs AgentTask manifests through the same core, without a cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent_operator.testing.agents import LEDGER_ENV, Ledger, agent_task_manifest, task_template


def _cli(tmp_path: Path, manifest: dict[str, Any], *extra: str, more: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(manifest))
    env = {**os.environ, LEDGER_ENV: str(tmp_path / "ledger.sqlite")}
    argv = [sys.executable, "-m", "agent_operator.cli.main", "run-local", str(path), *more, "--no-entry-points",
            "--agent", "agent_operator.testing.agents:TestAsyncAgent",
            "--agent", "agent_operator.testing.agents:TestSyncAgent", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_local_prints_changes_and_outputs(tmp_path: Path) -> None:
    steps = ["QUEUED", {"phase": "RUNNING", "logLinks": [{"name": "dash", "uri": "http://dash/1"}]}, "SUCCEEDED"]
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-async", phases=steps,
                                                                   outputValues={"word": "ok"}), pollInterval="1s"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Running" in out and "http://dash/1" in out and "word: ok" in out


def test_run_local_json_report_and_failure_exit_code(tmp_path: Path) -> None:
    tmpl = task_template("test-async")
    tmpl["type"] = "missing"
    proc = _cli(tmp_path, agent_task_manifest("t", tmpl), "-o", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert json.loads(out)["t"]["reason"] == "AgentNotFound"


def test_run_local_refuses_invalid_manifests_listing_every_problem(tmp_path: Path) -> None:
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-sync"), pollInterval="1ms", maxAttempts=0))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert "task.json:1: spec.pollInterval: spec.pollInterval must be at least 1s" in err
    assert "task.json:1: spec.maxAttempts: must be >= 1" in err


def test_run_local_runs_several_files_and_directories_together(tmp_path: Path) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.json").write_text(json.dumps(agent_task_manifest(name, task_template("test-sync"))))
    proc = _cli(tmp_path, agent_task_manifest("c", task_template("test-sync")), "-o", "json", more=(str(folder),))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert {name: s["phase"] for name, s in json.loads(out).items()} == {"a": "Succeeded", "b": "Succeeded",
                                                                           "c": "Succeeded"}


def test_run_local_exit_codes_for_usage_errors(tmp_path: Path) -> None:
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-sync")), more=(str(tmp_path / "missing.yaml"),))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "missing.yaml: no such file or directory" in err
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-sync")), "--agent", "no_such_module:Agent")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no_such_module" in err


def test_ctrl_c_deletes_the_job_once(tmp_path: Path) -> None:
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-async", phases=["RUNNING"]), pollInterval="1s"))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    deadline = time.monotonic() + 30
    while ledger.count("get") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert ledger.count("delete") == 1 and ledger.count("create") == 1
    assert "AgentDeleted" in out


def test_bad_manifest_is_reported(tmp_path: Path) -> None:
    proc = _cli(tmp_path, {"kind": "Pod", "metadata": {"name": "x"}})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "task.json:1: not an AgentTask (Pod)" in err
