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


def _cli(tmp_path: Path, manifest: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(manifest))
    env = {**os.environ, LEDGER_ENV: str(tmp_path / "ledger.sqlite")}
    argv = [sys.executable, "-m", "agent_operator.cli.main", "run-local", str(path), "--no-entry-points",
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


def test_run_local_rejects_invalid_spec_naming_the_field(tmp_path: Path) -> None:
    proc = _cli(tmp_path, agent_task_manifest("t", task_template("test-sync"), pollInterval="1ms"), "-o", "json")
    out, _ = proc.communicate(timeout=60)
    status = json.loads(out)["t"]
    assert status["reason"] == "InvalidSpec" and "pollInterval" in status["message"]


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
    assert proc.returncode == 1 and "not an AgentTask" in err
