"""The remote bridge driving a real Flyte 2 connector server (``c0`` from the Flyte 2 SDK,
running a connector written with ``flyte.connectors``) over flyteidl2, through
``run-local`` and ``agents``: discovery by ListConnectors, the Flyte 2 task's template and
inputs, the task's Secrets as the request's Connection, outputs back, Ctrl-C deleting the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.bridges.remote.flyte2 import connection
from agent_operator.serialization import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flyte2_support import VENV_BIN, C0Server, write_task_spec  # noqa: E402
from plugin_services import wait_for  # noqa: E402

TOKEN = "tok-flyte2-abcdef"


@pytest.fixture(scope="module")
def c0() -> Iterator[C0Server]:
    with C0Server() as server:
        yield server


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
    secrets = tmp_path / "secrets" / "vault"
    secrets.mkdir(parents=True)
    (secrets / "api_key").write_text(TOKEN + "\n")
    return path, jobs


def _run_local(path: Path, c0: C0Server, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "agent-operator"), "run-local", str(path), "--flytekit", "off", "--no-entry-points",
         "--remote-endpoint", c0.endpoint, "--remote-insecure", "--remote-protocol", "flyte2",
         "--secret-dir", str(tmp_path / "secrets"), "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_local_drives_a_flyte2_connector_with_its_secrets_as_connection(c0: C0Server, tmp_path: Path) -> None:
    path, jobs = _manifest(tmp_path)
    proc = _run_local(path, c0, tmp_path)
    record = wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")))
    job = json.loads(record[0].read_text())
    assert job["inputs"] == {"x": 21}
    assert job["secrets"] == ["api_key"] and job["api_key"] == TOKEN  # the Secret file's newline stripped
    (jobs / "job-1.done").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = json.loads(out)["double"]
    assert status["phase"] == "Succeeded" and status["outputs"] == {"y": 42}
    assert status["agent"]["name"] == "Loopback Job Connector @ default"
    assert TOKEN not in out + err


def test_ctrl_c_deletes_the_flyte2_connectors_job(c0: C0Server, tmp_path: Path) -> None:
    path, jobs = _manifest(tmp_path)
    proc = _run_local(path, c0, tmp_path)
    wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (jobs / "job-1.cancelled").exists()


def test_agents_lists_the_connectors_a_flyte2_service_reports(c0: C0Server) -> None:
    listed = subprocess.run(
        [str(VENV_BIN / "agent-operator"), "agents", "--flytekit", "off", "--no-entry-points",
         "--remote-endpoint", c0.endpoint, "--remote-insecure", "--remote-protocol", "flyte2", "-o", "json"],
        check=True, capture_output=True, text=True, env={**os.environ})
    rows = json.loads(listed.stdout)
    assert [(r["taskType"], r["kind"], r["name"]) for r in rows] == [
        ("loopback_job", "async", "Loopback Job Connector @ default")]


def test_two_secrets_with_one_key_and_different_values_are_an_error() -> None:
    assert dict(connection("t", {"a": {"k": "1"}, "b": {"k": "1", "j": "2"}}).secrets) == {"k": "1", "j": "2"}
    with pytest.raises(SpecError, match="Secrets 'a' and 'b' both set key 'k'"):
        connection("t", {"a": {"k": "1"}, "b": {"k": "2"}})


def test_a_flyte2_service_outage_mid_run_is_transient(tmp_path: Path) -> None:
    path, jobs = _manifest(tmp_path)
    with C0Server() as server:
        proc = _run_local(path, server, tmp_path)
        wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")))
        wait_for("a status poll reached the connector",
                 lambda: json.loads((jobs / "job-1.json").read_text()).get("polls", 0) >= 1)
        server.stop()  # UNAVAILABLE from now on
        assert proc.stderr is not None
        seen: list[str] = []
        wait_for("run-local reports the outage as transient",
                 lambda: seen.append(proc.stderr.readline()) or "transient error" in seen[-1])
        server.start()
        (jobs / "job-1.done").write_text("")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(seen) + err
    assert json.loads(out)["double"]["outputs"] == {"y": 42}
