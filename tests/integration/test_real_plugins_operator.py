"""Two real connector plugins from the registry, unchanged, run by the operator (in-process
flytekit bridge) for AgentTasks on the real API server:

* ``flytekitplugins-openai`` (``openai-batch``) with its API key in a Secret made by
  ``kubectl create secret --from-file`` from a file ending in a newline, and a batch result
  whose null members must reach status.outputs;
* ``flytekitplugins-awssagemaker`` (``sagemaker-endpoint``).

Each survives an outage of its (loopback, fake) service in the middle of the task, and
``kubectl delete`` cancels the external job exactly once.  Tasks are serialized by the real
``pyflyte`` and rendered by ``agent-operator render``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.crd.names import CRD_NAME
from agent_operator.testing.operator_proc import OperatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from plugin_services import (  # noqa: E402
    OPENAI_KEY,
    FakeOpenAI,
    FakeSageMaker,
    LoopbackService,
    openai_env,
    render,
    sagemaker_env,
    serialize_plugin_tasks,
    wait_for,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., Any]
TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")


@pytest.fixture(scope="module")
def crd(control_plane: Any) -> str:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@pytest.fixture(scope="module")
def task_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return serialize_plugin_tasks(tmp_path_factory.mktemp("pyflyte"))


class Plugin:
    """One plugin's service, manifest and environment for the operator."""

    def __init__(self, name: str, task_specs: dict[str, Path], kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
        self.name = name
        self.svc: LoopbackService
        if name == "openai-batch":
            self.svc = FakeOpenAI(OPENAI_KEY)
            key_file = tmp_path / "FLYTE_OPENAI_API_KEY"
            key_file.write_text(OPENAI_KEY + "\n")  # as `echo KEY > file` writes it
            kubectl("-n", ns, "create", "secret", "generic", "openai", f"--from-file={key_file}")
            self.manifest = render(task_specs[name], "batch", {"input_file_id": "file-in-1"},
                                   secretRefs=[{"name": "openai"}], pollInterval="1s")
            self.env = openai_env(self.svc)  # type: ignore[arg-type]
            self.status_call, self.cancel_call = "/v1/batches/batch_1", "/cancel"
        else:
            self.svc = FakeSageMaker()
            self.manifest = render(task_specs[name], "endpoint", {"endpoint_name": "ep-1",
                                                                   "endpoint_config_name": "cfg-1"}, pollInterval="1s")
            self.env = sagemaker_env(self.svc)  # type: ignore[arg-type]
            self.status_call, self.cancel_call = "DescribeEndpoint", "DeleteEndpoint"
        self.task = self.manifest["metadata"]["name"]


@pytest.fixture(params=["openai-batch", "sagemaker-endpoint"])
def plugin(request: pytest.FixtureRequest, task_specs: dict[str, Path], kubectl: Kubectl, namespace: str,
           tmp_path: Path) -> Iterator[Plugin]:
    p = Plugin(request.param, task_specs, kubectl, namespace, tmp_path)
    with p.svc:
        yield p


def _status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    obj = json.loads(kubectl("-n", ns, "get", "agenttask", name, "-o", "json").stdout)
    return dict(obj.get("status") or {})


def _until(kubectl: Kubectl, ns: str, name: str, what: str, pred: Callable[[dict[str, Any]], bool],
           op: OperatorProcess) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen.update(status=_status(kubectl, ns, name))
        return pred(seen["status"])

    try:
        wait_for(what, check, timeout=120)
    except AssertionError as e:
        raise AssertionError(f"{e}; status={seen.get('status')}\n{op.logs()[-4000:]}") from None
    return dict(seen["status"])


def _operator(kubeconfig: str, ns: str, plugin: Plugin) -> OperatorProcess:
    return OperatorProcess(kubeconfig, namespaces=[ns], env=plugin.env,
                           extra_args=["--flytekit", "on", "--agent-source", f"{plugin.name}=flytekit"])


def test_real_plugin_runs_through_a_service_outage_to_succeeded(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, plugin: Plugin,
) -> None:
    svc = plugin.svc
    with _operator(kubeconfig, namespace, plugin) as op:
        op.wait_ready()
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(plugin.manifest))
        wait_for("a status poll reached the service", lambda: svc.calls(plugin.status_call))
        svc.stop()  # connection refused from now on
        hit = _until(kubectl, namespace, plugin.task, "a transient failure recorded",
                     lambda s: int(s.get("transientFailures") or 0) > 0, op)
        assert hit["phase"] == "Running" and hit["reason"] == "AgentUnavailable", hit
        svc.start()
        svc.finish()
        done = _until(kubectl, namespace, plugin.task, "a terminal phase", lambda s: s.get("phase") in TERMINAL, op)
        assert done["phase"] == "Succeeded", done
        if plugin.name == "openai-batch":
            _restart_writes_nothing(kubectl, namespace, plugin, op)
    assert "transientFailures" not in done
    if plugin.name == "openai-batch":
        result = done["outputs"]["result"]
        assert result["id"] == "batch_1" and result["output_file_id"] == "file-out-1"
        # the plugin's None members are stored as JSON nulls, not dropped
        assert "error_file_id" in result and result["error_file_id"] is None and result["errors"] is None
        assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in svc.requests)
        assert OPENAI_KEY not in json.dumps(done)
    else:
        assert done["outputs"] == {"result": {"EndpointArn": FakeSageMaker.arn("ep-1")}}


def _restart_writes_nothing(kubectl: Kubectl, ns: str, plugin: Plugin, op: OperatorProcess) -> None:
    """A restarted operator decides again on the Succeeded task: the status it computes, nulls
    included, equals the stored one, so it writes nothing.  A second task taken from apply to
    Succeeded by the restarted operator shows it has been through its cache."""
    before = json.loads(kubectl("-n", ns, "get", "agenttask", plugin.task, "-o", "json").stdout)
    op.stop()
    op.restart()
    second = json.loads(json.dumps(plugin.manifest))
    second["metadata"]["name"] = "batch-2"
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(second))
    wait_for("the second batch is created", lambda: "batch_2" in plugin.svc.jobs)
    plugin.svc.finish("batch_2")
    _until(kubectl, ns, "batch-2", "Succeeded", lambda s: s.get("phase") == "Succeeded", op)
    after = json.loads(kubectl("-n", ns, "get", "agenttask", plugin.task, "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"] == before["status"]


def test_deleting_the_agenttask_cancels_the_plugins_external_job_once(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, plugin: Plugin,
) -> None:
    svc = plugin.svc
    with _operator(kubeconfig, namespace, plugin) as op:
        op.wait_ready()
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(plugin.manifest))
        _until(kubectl, namespace, plugin.task, "Running", lambda s: s.get("phase") == "Running", op)
        kubectl("-n", namespace, "delete", "agenttask", plugin.task, "--timeout=90s")
    assert len(svc.calls(plugin.cancel_call)) == 1
    assert svc.job().cancelled
