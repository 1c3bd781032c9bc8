"""Two real connector plugins from the registry, unchanged, through ``run-local --flytekit on``:
``flytekitplugins-openai`` (task type ``openai-batch``) and ``flytekitplugins-awssagemaker``
(``sagemaker-endpoint``), each against a loopback fake of its service.

Tasks are serialized by the real ``pyflyte serialize`` and turned into manifests by
``agent-operator render``, as a user does.  Covered: a Secret file ending in a newline
(flytekit strips it), outputs with null members kept, an outage of the service in the
middle of the task (transient, then Succeeded), and Ctrl-C cancelling the external job.
"""

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_services import (  # noqa: E402
    OPENAI_KEY,
    VENV_BIN,
    FakeOpenAI,
    FakeSageMaker,
    LoopbackService,
    openai_env,
    render,
    sagemaker_env,
    serialize_plugin_tasks,
    wait_for,
)


@pytest.fixture(scope="module")
def task_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return serialize_plugin_tasks(tmp_path_factory.mktemp("pyflyte"))


class RunLocal:
    """``agent-operator run-local`` in a child process, its output in a file."""

    def __init__(self, manifest: dict[str, Any], work: Path, env: dict[str, str], *extra: str) -> None:
        path = work / f"{manifest['metadata']['name']}.json"
        path.write_text(json.dumps(manifest))
        self.log = work / "run-local.log"
        self.report = work / "report.json"
        argv = [str(VENV_BIN / "agent-operator"), "run-local", str(path), "--flytekit", "on",
                "--default-poll-interval", "1s", "-o", "json", *extra]
        with open(self.log, "wb") as log, open(self.report, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=log, env={**os.environ, **env})

    def output(self) -> str:
        return self.log.read_text()

    def wait(self) -> tuple[int, dict[str, Any]]:
        rc = self.proc.wait(timeout=120)
        text = self.report.read_text()
        assert text, f"run-local printed no report (exit {rc}):\n{self.output()}"
        return rc, json.loads(text)


@pytest.fixture
def openai_svc() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY) as svc:
        yield svc


@pytest.fixture
def sagemaker_svc() -> Iterator[FakeSageMaker]:
    with FakeSageMaker() as svc:
        yield svc


def _openai_run(task_specs: dict[str, Path], svc: FakeOpenAI, tmp_path: Path) -> RunLocal:
    secrets = tmp_path / "secrets" / "openai"
    secrets.mkdir(parents=True)
    (secrets / "FLYTE_OPENAI_API_KEY").write_text(OPENAI_KEY + "\n")  # as `echo KEY > file` writes it
    manifest = render(task_specs["openai-batch"], "batch", {"input_file_id": "file-in-1"},
                      secretRefs=[{"name": "openai"}])
    return RunLocal(manifest, tmp_path, openai_env(svc), "--secret-dir", str(tmp_path / "secrets"))


def _sagemaker_run(task_specs: dict[str, Path], svc: FakeSageMaker, tmp_path: Path) -> RunLocal:
    manifest = render(task_specs["sagemaker-endpoint"], "endpoint",
                      {"endpoint_name": "ep-1", "endpoint_config_name": "cfg-1"})
    return RunLocal(manifest, tmp_path, sagemaker_env(svc))


def _through_an_outage(run: RunLocal, svc: LoopbackService, status_call: str) -> None:
    """Let the job start, take the service away until a poll failed, bring it back, finish the job."""
    wait_for("the external job is created", lambda: svc.jobs)
    wait_for("a status poll reached the service", lambda: svc.calls(status_call))
    svc.stop()
    wait_for("run-local reports the outage as transient", lambda: "transient error" in run.output())
    svc.start()
    svc.finish()


def test_openai_batch_plugin_survives_an_outage_and_keeps_null_outputs(
    task_specs: dict[str, Path], openai_svc: FakeOpenAI, tmp_path: Path,
) -> None:
    run = _openai_run(task_specs, openai_svc, tmp_path)
    _through_an_outage(run, openai_svc, "/v1/batches/batch_1")
    rc, report = run.wait()
    status = report["batch"]
    assert rc == 0 and status["phase"] == "Succeeded", run.output()
    result = status["outputs"]["result"]
    assert result["id"] == "batch_1" and result["output_file_id"] == "file-out-1"
    assert "error_file_id" in result and result["error_file_id"] is None  # the plugin's own null, kept
    assert result["errors"] is None
    # the key was sent without the Secret file's newline (the fake answers 401 otherwise)
    assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in openai_svc.requests)
    assert OPENAI_KEY not in run.output() + json.dumps(report)


def test_sagemaker_endpoint_plugin_survives_an_outage(
    task_specs: dict[str, Path], sagemaker_svc: FakeSageMaker, tmp_path: Path,
) -> None:
    run = _sagemaker_run(task_specs, sagemaker_svc, tmp_path)
    _through_an_outage(run, sagemaker_svc, "DescribeEndpoint")
    rc, report = run.wait()
    status = report["endpoint"]
    assert rc == 0 and status["phase"] == "Succeeded", run.output()
    assert status["outputs"] == {"result": {"EndpointArn": FakeSageMaker.arn("ep-1")}}
    assert sagemaker_svc.job().created == {"EndpointName": "ep-1", "EndpointConfigName": "cfg-1"}


@pytest.mark.parametrize("plugin", ["openai-batch", "sagemaker-endpoint"])
def test_ctrl_c_cancels_the_plugins_external_job(
    plugin: str, task_specs: dict[str, Path], openai_svc: FakeOpenAI, sagemaker_svc: FakeSageMaker, tmp_path: Path,
) -> None:
    svc: LoopbackService
    if plugin == "openai-batch":
        svc, run, cancel = openai_svc, _openai_run(task_specs, openai_svc, tmp_path), "/cancel"
    else:
        svc, run, cancel = sagemaker_svc, _sagemaker_run(task_specs, sagemaker_svc, tmp_path), "DeleteEndpoint"
    wait_for("the external job is created", lambda: svc.jobs)
    wait_for("run-local reports Running", lambda: "Running" in run.output())
    run.proc.send_signal(signal.SIGINT)
    rc, _ = run.wait()
    assert rc == 130, run.output()
    assert len(svc.calls(cancel)) == 1 and svc.job().cancelled
