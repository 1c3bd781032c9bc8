"""The examples in examples/ are valid AgentTasks and do what their comments say.

`agent-operator validate --agents-strict` accepts every file with the built-in agents
only; then each example's template and inputs are run through the built-in agent it
selects (the webhook ones against examples/webhook_server.py on a free loopback port, the
sensor against a temporary file) - what the operator will do in `make demo`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from flyteidl.core import tasks_pb2

from agent_operator.agents.sensor import SensorAgent
from agent_operator.agents.webhook import WebhookAgent
from agent_operator.cli.main import main
from agent_operator.sdk import TaskExecution, TransientAgentError
from agent_operator.serialization import literal_map_to_plain, load_inputs, load_task_template

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
sys.path.insert(0, str(ROOT / "examples"))
from webhook_server import DemoHandler  # noqa: E402


def _load(name: str) -> tuple[tasks_pb2.TaskTemplate, Any]:
    spec = yaml.safe_load((ROOT / "examples" / name).read_text())["spec"]
    template = load_task_template(spec["taskTemplate"])
    return template, load_inputs(spec.get("inputs"), template)


@pytest.fixture
def demo_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DemoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _on_port(template: tasks_pb2.TaskTemplate, port: int) -> tasks_pb2.TaskTemplate:
    """The same template calling the test's server instead of the demo's fixed port 18080."""
    url = template.custom.fields["url"].string_value
    assert url.startswith("http://127.0.0.1:18080/")
    copy = tasks_pb2.TaskTemplate()
    copy.CopyFrom(template)
    copy.custom.fields["url"].string_value = url.replace(":18080/", f":{port}/")
    return copy


def test_there_are_sensor_webhook_and_plain_input_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"sensor-file.yaml", "webhook-get.yaml", "webhook-post-inputs.yaml"} <= names


def test_every_example_passes_validate_with_the_built_in_agents(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--agents-strict", "--flytekit", "off", *map(str, EXAMPLES)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{len(EXAMPLES)} AgentTask(s) checked, 0 invalid" in out


def test_examples_carry_no_namespace_so_kubectl_n_places_them() -> None:
    for path in EXAMPLES:
        assert "namespace" not in yaml.safe_load(path.read_text())["metadata"], path


def test_sensor_example_succeeds_once_its_file_exists(tmp_path: Path) -> None:
    template, inputs = _load("sensor-file.yaml")
    assert literal_map_to_plain(inputs) == {"path": "/tmp/agent-operator-demo/ready"}
    target = tmp_path / "ready"
    inputs = load_inputs({"path": str(target)}, template)
    agent = SensorAgent()
    meta = agent.create(template, output_prefix="", inputs=inputs)
    assert agent.get(meta).phase == TaskExecution.RUNNING
    target.write_text("now")
    assert agent.get(meta).phase == TaskExecution.SUCCEEDED


def test_webhook_get_example_succeeds_against_the_demo_server(demo_server: int) -> None:
    template, inputs = _load("webhook-get.yaml")
    result = WebhookAgent().do(_on_port(template, demo_server), output_prefix="", inputs=inputs)
    assert result.phase == TaskExecution.SUCCEEDED, result.message
    info = literal_map_to_plain(result.outputs)["info"]
    assert info["status_code"] == 200 and '"status": "ok"' in info["response_data"]


def test_webhook_post_example_templates_url_header_and_body_from_plain_inputs(demo_server: int) -> None:
    template, inputs = _load("webhook-post-inputs.yaml")
    result = WebhookAgent().do(_on_port(template, demo_server), output_prefix="", inputs=inputs)
    assert result.phase == TaskExecution.SUCCEEDED, result.message
    info = literal_map_to_plain(result.outputs)["info"]
    assert '"order": "42"' in info["response_data"] and '"customer": "ada"' in info["response_data"]
    assert info["input_data"]["note"] == "order 42 for ada"


def test_webhook_server_runs_as_a_script_and_answers_healthz() -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "webhook_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.read() == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_hello_example_gets_the_operators_readyz() -> None:
    """examples/cluster/hello.yaml (the README's first AgentTask) asks the operator's own health server.

    Run against the real health server on loopback: the template's URL names the operator's
    Service, which only a cluster's DNS resolves, so the host is swapped for 127.0.0.1.
    """
    from agent_operator.observability.health import start_http_server

    template, inputs = _load("cluster/hello.yaml")
    url = template.custom.fields["url"].string_value
    assert url == "http://agent-operator-metrics.flyte-agent-operator.svc:8080/readyz"
    service = yaml.safe_load((ROOT / "manifests" / "base" / "service.yaml").read_text())
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("agent-operator-metrics",
                                                                               "flyte-agent-operator")
    assert service["spec"]["ports"][0]["port"] == 8080
    ready = {"now": False}
    server = start_http_server(0, lambda: ready["now"], host="127.0.0.1")
    try:
        local = tasks_pb2.TaskTemplate()
        local.CopyFrom(template)
        local.custom.fields["url"].string_value = f"http://127.0.0.1:{server.port}/readyz"
        with pytest.raises(TransientAgentError, match="503"):  # not ready yet: retried, not failed
            WebhookAgent().do(local, output_prefix="", inputs=inputs)
        ready["now"] = True
        result = WebhookAgent().do(local, output_prefix="", inputs=inputs)
    finally:
        server.stop()
    assert result.phase == TaskExecution.SUCCEEDED, result.message
    assert literal_map_to_plain(result.outputs)["info"]["status_code"] == 200
