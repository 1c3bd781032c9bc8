"""Connectors written with the Flyte 2 SDK run inside the operator process (the optional
``[flyte2]`` bridge), through ``run-local`` and ``agents``: the same connector and task as the
``c0`` tests, loaded with ``--flyte2-module`` the way ``c0 --modules`` loads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_operator.bridges.flyte2sdk import _private

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flyte2_support import FIXTURES, VENV_BIN, write_task_spec  # noqa: E402
from plugin_services import wait_for  # noqa: E402

TOKEN = "tok-in-process-0123"
ENV = {**os.environ, "PYTHONPATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
FLAGS = ["--flytekit", "off", "--no-entry-points", "--flyte2-module", "loopback_connector"]


def _manifest(tmp_path: Path) -> tuple[Path, Path]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    spec = write_task_spec(jobs, tmp_path / "double.pb")
    rendered = subprocess.run([str(VENV_BIN / "agent-operator"), "render", str(spec), "--name", "double",
                               "--input", "x=21", "-o", "json"], check=True, capture_output=True, text=True)
    manifest: dict[str, Any] = json.loads(rendered.stdout)
    manifest["spec"].update(secretRefs=[{"name": "vault"}], pollInterval="1s")
    path = tmp_path / "double.json"
    path.write_text(json.dumps(manifest))
    (tmp_path / "secrets" / "vault").mkdir(parents=True)
    (tmp_path / "secrets" / "vault" / "api_key").write_text(TOKEN + "\n")
    return path, jobs


def _run_local(path: Path, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(VENV_BIN / "agent-operator"), "run-local", str(path), *FLAGS,
                             "--secret-dir", str(tmp_path / "secrets"), "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_a_flyte2_connector_runs_in_process_with_secrets_as_keywords(tmp_path: Path) -> None:
    path, jobs = _manifest(tmp_path)
    proc = _run_local(path, tmp_path)
    record = wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")))
    job = json.loads(record[0].read_text())
    assert job["inputs"] == {"x": 21} and job["secrets"] == ["api_key"] and job["api_key"] == TOKEN
    (jobs / "job-1.done").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = json.loads(out)["double"]
    assert status["phase"] == "Succeeded" and status["outputs"] == {"y": 42}
    assert status["agent"]["name"] == "Loopback Job Connector (flyte2)"


def test_ctrl_c_deletes_the_in_process_flyte2_job(tmp_path: Path) -> None:
    path, jobs = _manifest(tmp_path)
    proc = _run_local(path, tmp_path)
    wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (jobs / "job-1.cancelled").exists()


def test_agents_lists_in_process_flyte2_connectors() -> None:
    listed = subprocess.run([str(VENV_BIN / "agent-operator"), "agents", *FLAGS, "-o", "json"],
                            check=True, capture_output=True, text=True, env=ENV)
    assert [(r["taskType"], r["kind"], r["source"]) for r in json.loads(listed.stdout)] == [
        ("loopback_job", "async", "flyte2")]


def test_an_sdk_outside_the_tested_range_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _private.check_version()  # the installed SDK is in range
    monkeypatch.setattr(_private, "sdk_version", lambda: "2.14.0")
    with pytest.raises(ImportError, match=r"tested with flyte >=2.12,<2.13; flyte 2.14.0 is installed"):
        _private.check_version()
