"""A Flyte 2 task (written and serialized with the Flyte 2 SDK, rendered in flyteidl2's JSON
form) as an AgentTask on the real API server, run by the operator through a Flyte 2
connector: a real ``c0`` server over flyteidl2 (remote bridge, ``--remote-protocol flyte2``)
or the same connector class in the operator process (``--flyte2-module``).  The Secret is made
by ``kubectl create secret --from-file`` from a newline-terminated file; deleting a running
task deletes the connector's job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.crd.names import CRD_NAME
from agent_operator.testing.operator_proc import OperatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from flyte2_support import FIXTURES, VENV_BIN, C0Server, write_task_spec  # noqa: E402
from plugin_services import wait_for  # noqa: E402

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., Any]
TOKEN = "tok-flyte2-operator-42"
TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")


@pytest.fixture(scope="module")
def crd(control_plane: Any) -> str:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@pytest.fixture(scope="module")
def c0() -> Iterator[C0Server]:
    with C0Server() as server:
        yield server


@pytest.fixture(params=["remote-c0", "in-process"])
def how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _operator(kubeconfig: str, ns: str, how: str, c0: C0Server) -> OperatorProcess:
    env = {"PYTHONPATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if how == "remote-c0":
        args = ["--flytekit", "off", "--remote-endpoint", c0.endpoint, "--remote-insecure",
                "--remote-protocol", "flyte2"]
    else:
        args = ["--flytekit", "off", "--flyte2-module", "loopback_connector"]
    return OperatorProcess(kubeconfig, namespaces=[ns], env=env, extra_args=args)


def _manifest(tmp_path: Path, kubectl: Kubectl, ns: str, name: str) -> tuple[dict[str, Any], Path]:
    jobs = tmp_path / name
    jobs.mkdir()
    spec = write_task_spec(jobs, tmp_path / f"{name}.pb")
    out = subprocess.run([str(VENV_BIN / "agent-operator"), "render", str(spec), "--name", name, "--input", "x=21",
                          "-o", "json"], check=True, capture_output=True, text=True).stdout
    manifest: dict[str, Any] = json.loads(out)
    manifest["spec"].update(secretRefs=[{"name": "vault"}], pollInterval="1s")
    return manifest, jobs


def _status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("-n", ns, "get", "agenttask", name, "-o", "json").stdout).get("status") or {})


def _secret(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    key = tmp_path / "api_key"
    key.write_text(TOKEN + "\n")
    kubectl("-n", ns, "create", "secret", "generic", "vault", f"--from-file={key}")


def test_flyte2_task_runs_on_the_cluster_through_a_flyte2_connector(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, c0: C0Server, how: str, tmp_path: Path,
) -> None:
    _secret(kubectl, namespace, tmp_path)
    manifest, jobs = _manifest(tmp_path, kubectl, namespace, "double")
    with _operator(kubeconfig, namespace, how, c0) as op:
        op.wait_ready()
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
        stored = json.loads(kubectl("-n", namespace, "get", "agenttask", "double", "-o", "json").stdout)
        # the API server keeps the Flyte 2 form as written
        assert stored["spec"]["taskTemplate"]["interface"] == manifest["spec"]["taskTemplate"]["interface"]
        record = wait_for("the connector created the job", lambda: list(jobs.glob("job-*.json")), timeout=120)
        job = json.loads(record[0].read_text())
        assert job["inputs"] == {"x": 21} and job["api_key"] == TOKEN
        (jobs / "job-1.done").write_text("")
        done = wait_for("a terminal phase", lambda: (s := _status(kubectl, namespace, "double")).get("phase")
                        in TERMINAL and s, timeout=120)
    assert done["phase"] == "Succeeded", f"{done}\n{op.logs()[-3000:]}"
    assert done["outputs"] == {"y": 42}
    assert TOKEN not in json.dumps(done)


def test_deleting_a_flyte2_task_deletes_the_connectors_job(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, c0: C0Server, how: str, tmp_path: Path,
) -> None:
    _secret(kubectl, namespace, tmp_path)
    manifest, jobs = _manifest(tmp_path, kubectl, namespace, "cancel-me")
    with _operator(kubeconfig, namespace, how, c0) as op:
        op.wait_ready()
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
        wait_for("Running", lambda: _status(kubectl, namespace, "cancel-me").get("phase") == "Running", timeout=120)
        kubectl("-n", namespace, "delete", "agenttask", "cancel-me", "--timeout=90s")
    assert (jobs / "job-1.cancelled").exists()
