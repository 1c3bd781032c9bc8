"""AgentTasks on the real control plane run by bridged agents:

(a) the remote bridge to a REAL ``pyflyte serve connector`` (flytekit's SensorEngine and
    WebhookConnector in another process, reached over gRPC), including an outage of that
    service in the middle of a task;
(b) the in-process flytekit bridge (the same flytekit connectors inside the operator).

Templates are the ones flytekit itself serialized (tests/fixtures/flytekit).  Built-in
agents are loaded too (entry points on) and lose the task types to the bridges through
``--agent-source``, which is the configuration an admin would write.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.testing.pyflyte import PyflyteConnector
from agent_operator.crd.names import CRD_NAME
from agent_operator.testing.agents import agent_task_manifest
from agent_operator.testing.operator_proc import OperatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from agent_http_server import Recorded, serve  # noqa: E402

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "flytekit"
Kubectl = Callable[..., Any]


@pytest.fixture(scope="module")
def crd(control_plane: Any) -> str:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@pytest.fixture(scope="module")
def connector() -> Iterator[PyflyteConnector]:
    with PyflyteConnector() as svc:
        yield svc


def _template(name: str, base: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((FIXTURES / f"{name}.template.json").read_text())
    if base is not None:
        raw["custom"]["url"] = raw["custom"]["url"].replace("http://127.0.0.1:8000", base)
    return raw


def _apply(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(manifest))


def _status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    obj = json.loads(kubectl("-n", ns, "get", "agenttask", name, "-o", "json").stdout)
    return dict(obj.get("status") or {})


def _wait(kubectl: Kubectl, ns: str, name: str, pred: Callable[[dict[str, Any]], bool],
          op: OperatorProcess, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(kubectl, ns, name)
        if pred(status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"{ns}/{name}: condition not reached in {timeout}s; status={status}\n{op.logs()[-4000:]}")


def _phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") in phases


def _ok(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"received"


def _run_sensor_and_webhook(kubectl: Kubectl, ns: str, op: OperatorProcess, tmp_path: Path,
                            agent_names: tuple[str, str]) -> None:
    """A FileSensor that waits for a file and a POST webhook, both to Succeeded through ``op``."""
    target = tmp_path / "arrives.txt"
    _apply(kubectl, ns, agent_task_manifest("wait-for-file", _template("file_sensor"), namespace=ns,
                                            inputs={"path": str(target)}, pollInterval="1s"))
    running = _wait(kubectl, ns, "wait-for-file", _phase("Running", "Failed"), op)
    assert running["phase"] == "Running", running
    assert running["agent"]["name"] == agent_names[0]
    target.write_text("ready")
    done = _wait(kubectl, ns, "wait-for-file", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
    assert done["phase"] == "Succeeded", done

    with serve({("POST", "/items/11"): _ok}) as srv:
        _apply(kubectl, ns, agent_task_manifest("notify", _template("webhook_post", srv.base), namespace=ns,
                                                inputs={"s": "batch-7", "item_id": 11}))
        hooked = _wait(kubectl, ns, "notify", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
    assert hooked["phase"] == "Succeeded", hooked
    assert hooked["agent"]["name"] == agent_names[1] and hooked["agent"]["sync"] is True
    assert hooked["outputs"]["info"]["status_code"] == 200
    assert hooked["outputs"]["info"]["response_data"] == "received"
    assert json.loads(srv.requests[0].body)["q"] == "batch-7"


def test_remote_bridge_runs_flytekit_sensor_and_webhook_in_a_pyflyte_connector(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, connector: PyflyteConnector, tmp_path: Path,
) -> None:
    args = ["--flytekit", "off", "--remote-endpoint", connector.endpoint, "--remote-insecure",
            "--agent-source", "sensor=remote", "--agent-source", "webhook=remote"]
    with OperatorProcess(kubeconfig, namespaces=[namespace], entry_points=True, extra_args=args) as op:
        op.wait_ready()
        _run_sensor_and_webhook(kubectl, namespace, op, tmp_path, ("Sensor @ default", "Webhook Connector @ default"))


def test_remote_not_found_fails_the_task_with_the_services_message(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, connector: PyflyteConnector,
) -> None:
    # a static route sends `ghost` to the connector, which has no agent for it: NOT_FOUND
    args = ["--flytekit", "off", "--remote-endpoint", connector.endpoint, "--remote-insecure",
            "--remote-task-type", "ghost"]
    template = {**_template("file_sensor"), "type": "ghost"}
    with OperatorProcess(kubeconfig, namespaces=[namespace], extra_args=args) as op:
        op.wait_ready()
        _apply(kubectl, namespace, agent_task_manifest("ghost", template, namespace=namespace, inputs={"path": "/x"}))
        failed = _wait(kubectl, namespace, "ghost", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
    assert failed["phase"] == "Failed" and failed["reason"] == "AgentError"
    assert "NOT_FOUND" in failed["message"] and "Cannot find connector for task type: ghost" in failed["message"]


def test_agent_service_outage_is_transient_and_the_task_finishes_after_it_returns(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    target = tmp_path / "late.txt"
    with PyflyteConnector() as svc:
        args = ["--flytekit", "off", "--remote-endpoint", svc.endpoint, "--remote-insecure", "--remote-timeout", "3s"]
        with OperatorProcess(kubeconfig, namespaces=[namespace], extra_args=args) as op:
            op.wait_ready()
            _apply(kubectl, namespace, agent_task_manifest("outage", _template("file_sensor"), namespace=namespace,
                                                           inputs={"path": str(target)}, pollInterval="1s"))
            _wait(kubectl, namespace, "outage", _phase("Running"), op)
            svc.stop()  # UNAVAILABLE from now on
            hit = _wait(kubectl, namespace, "outage", lambda s: int(s.get("transientFailures") or 0) > 0, op)
            assert hit["phase"] == "Running", hit
            target.write_text("x")
            svc.start()  # same port
            done = _wait(kubectl, namespace, "outage", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op, timeout=120)
    assert done["phase"] == "Succeeded", done


def test_tasks_wait_while_the_agent_service_cannot_be_discovered_and_run_once_it_answers(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    # operator and agent service start together; the service is late: its task types are
    # unknown, not absent, so the task must wait rather than fail AgentNotFound
    target = tmp_path / "present.txt"
    target.write_text("x")
    svc = PyflyteConnector()
    args = ["--flytekit", "off", "--remote-endpoint", svc.endpoint, "--remote-insecure", "--remote-timeout", "2s",
            "--agent-source", "sensor=remote", "--transient-budget", "2"]
    with OperatorProcess(kubeconfig, namespaces=[namespace], extra_args=args) as op:
        op.wait_ready()
        _apply(kubectl, namespace, agent_task_manifest("early", _template("file_sensor"), namespace=namespace,
                                                       inputs={"path": str(target)}, pollInterval="1s"))
        waiting = _wait(kubectl, namespace, "early", lambda s: int(s.get("transientFailures") or 0) >= 2, op)
        assert waiting["phase"] == "Pending" and waiting["reason"] == "AgentUnavailable", waiting
        assert "discovery failed" in waiting["message"]
        stalled = [c for c in waiting["conditions"] if c["type"] == "Stalled"]
        assert stalled and stalled[0]["status"] == "True"  # visible to GitOps tools while it lasts
        with svc:
            done = _wait(kubectl, namespace, "early", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op,
                         timeout=90)
    assert done["phase"] == "Succeeded", done
    assert done["agent"]["name"] == "Sensor @ default"


def test_in_process_flytekit_bridge_runs_flytekit_sensor_and_webhook(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    args = ["--flytekit", "on", "--agent-source", "sensor=flytekit", "--agent-source", "webhook=flytekit"]
    with OperatorProcess(kubeconfig, namespaces=[namespace], entry_points=True, extra_args=args) as op:
        op.wait_ready()
        _run_sensor_and_webhook(kubectl, namespace, op, tmp_path, ("Sensor (flytekit)", "Webhook Connector (flytekit)"))


HIDE_FLYTEKIT = '''
import importlib.abc, sys
class _HideFlytekit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flytekit" or name.startswith("flytekit."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _HideFlytekit())
'''


def test_without_flytekit_builtins_run_and_flytekit_types_fail_saying_what_to_install(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_FLYTEKIT)  # an operator image built without the extra
    target = tmp_path / "present.txt"
    target.write_text("x")
    bq = {"id": {"name": "q", "resourceType": "TASK"}, "type": "bigquery_query_job_task",
          "custom": {"Location": "US", "ProjectID": "p"}}
    with OperatorProcess(kubeconfig, namespaces=[namespace], entry_points=True,
                         env={"PYTHONPATH": str(site)}) as op:
        op.wait_ready()
        _apply(kubectl, namespace, agent_task_manifest("builtin-sensor", _template("file_sensor"), namespace=namespace,
                                                       inputs={"path": str(target)}, pollInterval="1s"))
        _apply(kubectl, namespace, agent_task_manifest("bq", bq, namespace=namespace))
        ok = _wait(kubectl, namespace, "builtin-sensor", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
        missing = _wait(kubectl, namespace, "bq", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
    assert ok["phase"] == "Succeeded", ok
    assert missing["phase"] == "Failed" and missing["reason"] == "AgentNotFound"
    assert "pip install 'flyte-agent-operator[flytekit]' flytekitplugins-bigquery" in missing["message"]


SECRET_CONNECTOR = '''
import hashlib
from dataclasses import dataclass
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta
from flytekit.extend.backend.utils import get_connector_secret

@dataclass
class TokMeta(ResourceMeta):
    digest: str

class WarehouseConnector(AsyncConnectorBase):
    name = "Warehouse Connector"
    def __init__(self):
        super().__init__(task_type_name="warehouse_job", metadata_type=TokMeta)
    def create(self, task_template, output_prefix, inputs=None, **kwargs):
        token = get_connector_secret("FLYTE_WAREHOUSE_TOKEN")
        return TokMeta(digest=hashlib.sha256(token.encode()).hexdigest()[:16])
    async def get(self, resource_meta, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED, message="token digest " + resource_meta.digest, outputs={"rows": 42})
    async def delete(self, resource_meta, **kwargs):
        pass

ConnectorRegistry.register(WarehouseConnector())
'''


def test_in_house_flytekit_connector_gets_the_agenttask_secret_through_flytekit(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    import hashlib

    (tmp_path / "warehouse_connector.py").write_text(SECRET_CONNECTOR)
    kubectl("-n", namespace, "create", "secret", "generic", "warehouse-creds",
            "--from-literal=FLYTE_WAREHOUSE_TOKEN=s3cr3t-t0ken")
    template = {"id": {"name": "nightly", "resourceType": "TASK"}, "type": "warehouse_job",
                "interface": {"outputs": {"variables": {"rows": {"type": {"simple": "INTEGER"}}}}}}
    with OperatorProcess(kubeconfig, namespaces=[namespace], env={"PYTHONPATH": str(tmp_path)},
                         extra_args=["--flytekit-module", "warehouse_connector"]) as op:
        op.wait_ready()
        _apply(kubectl, namespace, agent_task_manifest("nightly", template, namespace=namespace, pollInterval="1s",
                                                       secretRefs=[{"name": "warehouse-creds"}]))
        done = _wait(kubectl, namespace, "nightly", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
    assert done["phase"] == "Succeeded", done
    assert done["agent"]["name"] == "Warehouse Connector (flytekit)"
    assert hashlib.sha256(b"s3cr3t-t0ken").hexdigest()[:16] in done["message"]
    assert done["outputs"] == {"rows": 42}


def test_operator_drives_agents_served_by_agent_operator_serve(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str, tmp_path: Path,
) -> None:
    """Full circle: operator --remote--> `agent-operator serve` --in-process--> flytekit's SensorEngine."""
    import signal
    import subprocess

    port_file = tmp_path / "port"
    exe = Path(sys.executable).with_name("agent-operator")
    serve_proc = subprocess.Popen(
        [str(exe), "serve", "--address", "127.0.0.1:0", "--port-file", str(port_file), "--grace", "1",
         "--flytekit", "on", "--agent-source", "sensor=flytekit"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert serve_proc.poll() is None and time.monotonic() < deadline, "agent-operator serve did not start"
            time.sleep(0.2)
        endpoint = f"127.0.0.1:{port_file.read_text().strip()}"
        target = tmp_path / "circle.txt"
        args = ["--flytekit", "off", "--remote-endpoint", endpoint, "--remote-insecure", "--agent-source", "sensor=remote"]
        with OperatorProcess(kubeconfig, namespaces=[namespace], entry_points=True, extra_args=args) as op:
            op.wait_ready()
            _apply(kubectl, namespace, agent_task_manifest("circle", _template("file_sensor"), namespace=namespace,
                                                           inputs={"path": str(target)}, pollInterval="1s"))
            running = _wait(kubectl, namespace, "circle", _phase("Running", "Failed"), op)
            assert running["agent"]["name"] == "Sensor (flytekit) @ default", running
            target.write_text("x")
            done = _wait(kubectl, namespace, "circle", _phase("Succeeded", "Failed", "Aborted", "TimedOut"), op)
        assert done["phase"] == "Succeeded", done
    finally:
        serve_proc.send_signal(signal.SIGTERM)
        serve_proc.wait(30)


def test_grpc_status_classes_and_agent_error_from_a_python_agent_service(
    crd: str, kubeconfig: str, kubectl: Kubectl, namespace: str,
) -> None:
    from grpc_test_service import agent_meta, agent_service

    def job(name: str, **custom: Any) -> dict[str, Any]:
        return {"id": {"name": name, "resourceType": "TASK"}, "type": "svc_job", "custom": custom}

    throttled = {"fail": {"code": "RESOURCE_EXHAUSTED", "details": "slow down", "times": 2, "retry_after": 1},
                 "resource": {"phase": "SUCCEEDED", "message": "done"}}
    invalid = {"fail": {"code": "INVALID_ARGUMENT", "details": "query must not be empty"}}
    fatal = {"resource": {"phase": "FAILED", "message": "table missing",
                          "agentError": {"code": "NO_TABLE", "kind": "NON_RECOVERABLE"}}}
    recoverable = {"resource": {"phase": "FAILED", "message": "node lost",
                                "agentError": {"code": "PREEMPTED", "kind": "RECOVERABLE"}}}
    with agent_service(agents=[agent_meta("Svc", "svc_job")]) as (state, port):
        args = ["--flytekit", "off", "--remote-endpoint", f"127.0.0.1:{port}", "--remote-insecure"]
        with OperatorProcess(kubeconfig, namespaces=[namespace], extra_args=args) as op:
            op.wait_ready()
            for name, custom, extra in (("throttled", throttled, {}), ("invalid", invalid, {}),
                                        ("fatal", fatal, {}), ("recoverable", recoverable, {"maxAttempts": 2})):
                _apply(kubectl, namespace, agent_task_manifest(name, job(name, **custom), namespace=namespace,
                                                               pollInterval="1s", **extra))
            end = _phase("Succeeded", "Failed", "Aborted", "TimedOut")
            results = {name: _wait(kubectl, namespace, name, end, op, timeout=90)
                       for name in ("throttled", "invalid", "fatal", "recoverable")}
    ok = results["throttled"]
    assert ok["phase"] == "Succeeded" and ok["message"] == "done", ok
    creates = [r for svc, m, r in state.calls if m == "CreateTask"]
    # RESOURCE_EXHAUSTED twice: retried with the same idempotency key, the task never failed
    throttled_keys = [r.task_execution_metadata.task_execution_id.task_id.name
                      for r in creates if r.template.id.name == "throttled"]
    assert len(throttled_keys) == 3 and len(set(throttled_keys)) == 1, throttled_keys
    assert results["invalid"]["phase"] == "Failed" and results["invalid"]["reason"] == "AgentError"
    assert "INVALID_ARGUMENT: query must not be empty" in results["invalid"]["message"]
    assert results["fatal"]["phase"] == "Failed" and "[NO_TABLE] table missing" in results["fatal"]["message"]
    rec = results["recoverable"]
    assert rec["phase"] == "Failed" and rec["attempt"] == 2, rec  # RECOVERABLE: a new attempt was made
    assert "[PREEMPTED] node lost" in rec["message"]
    assert len([r for r in creates if r.template.id.name == "recoverable"]) == 2
