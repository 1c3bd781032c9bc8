"""The "Writing an agent" example (docs/writing-agents.md), run for real: the example agent in
examples/agents/ loaded with ``--agent``, a real batch-job HTTP service on loopback, the real
operator on the real API server.  The page shows the file itself, so it cannot drift."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent_operator.testing.operator_proc import OperatorProcess
from operator_fixtures import crd  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
AGENT_DIR = ROOT / "examples" / "agents"
TOKEN = "s3cr3t-batch-token-7f1c"


class JobService:
    """A tiny in-house batch service: jobs finish after three polls unless they 'sleep'."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.by_name: dict[str, str] = {}
        self.calls: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> None:
                with service.lock:
                    service.calls.append((self.command, self.path, self.headers.get("Authorization")))

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self._record()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with service.lock:
                    job_id = service.by_name.get(body["name"])
                    if job_id is None:
                        job_id = f"job-{len(service.jobs) + 1}"
                        service.by_name[body["name"]] = job_id
                        service.jobs[job_id] = {"spec": body, "polls": 0, "state": "queued"}
                self._send(200, {"id": job_id})

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                job = service.jobs.get(self.path.rsplit("/", 1)[-1])
                if job is None:
                    return self._send(404, {"error": "no such job"})
                with service.lock:
                    job["polls"] += 1
                    if job["state"] != "cancelled" and job["spec"]["command"] != "sleep":
                        job["state"] = "running" if job["polls"] < 3 else "succeeded"
                    elif job["state"] != "cancelled":
                        job["state"] = "running"
                result = len(str(job["spec"]["args"].get("text", "")).split())
                self._send(200, {"state": job["state"], "result": result,
                                 "logUrl": f"http://127.0.0.1/logs/{self.path.rsplit('/', 1)[-1]}"})

            def do_DELETE(self) -> None:  # noqa: N802
                self._record()
                job = service.jobs.get(self.path.rsplit("/", 1)[-1])
                if job is not None:
                    job["state"] = "cancelled"
                self._send(200, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, method: str) -> int:
        with self.lock:
            return sum(1 for m, _, _ in self.calls if m == method)


@pytest.fixture
def service() -> Iterator[JobService]:
    svc = JobService()
    yield svc
    svc.server.shutdown()


def manifest(name: str, base_url: str, command: str, text: str) -> dict[str, Any]:
    template = {
        "id": {"resourceType": "TASK", "project": "demo", "domain": "dev", "name": name, "version": "1"},
        "type": "batch_job",
        "metadata": {"runtime": {"type": "OTHER", "version": "1", "flavor": "batch"}},
        "interface": {"inputs": {"variables": {"text": {"type": {"simple": "STRING"}}}},
                      "outputs": {"variables": {"result": {"type": {"simple": "INTEGER"}}}}},
        "custom": {"baseUrl": base_url, "command": command},
    }
    return {"apiVersion": "flyteagents.dev/v1alpha1", "kind": "AgentTask", "metadata": {"name": name},
            "spec": {"taskTemplate": template, "inputs": {"text": text}, "pollInterval": "1s",
                     "secretRefs": [{"name": "batch-api"}]}}


def test_readme_example_agent_runs_jobs_and_cancels_them(control_plane: Any, crd: str, namespace: str,
                                                         tmp_path: Path, service: JobService) -> None:
    kubectl = control_plane.kubectl
    kubectl("-n", namespace, "create", "secret", "generic", "batch-api", f"--from-literal=token={TOKEN}")
    op = OperatorProcess(control_plane.kubeconfig, namespaces=[namespace], agents=["batch_job_agent:BatchJobAgent"],
                         env={"PYTHONPATH": os.pathsep.join([str(AGENT_DIR), os.environ.get("PYTHONPATH", "")])},
                         log_path=tmp_path / "operator.log")
    with op:
        op.wait_ready()
        kubectl("-n", namespace, "apply", "-f", "-",
                input=json.dumps(manifest("count-words", service.url, "wordcount", "to be or not to be")))
        kubectl("-n", namespace, "wait", "--for=condition=Succeeded", "at/count-words", "--timeout=60s")
        status = json.loads(kubectl("-n", namespace, "get", "at", "count-words", "-o", "json").stdout)["status"]
        assert status["outputs"] == {"result": 6}
        assert status["logLinks"][0]["name"] == "job log"

        kubectl("-n", namespace, "apply", "-f", "-",
                input=json.dumps(manifest("forever", service.url, "sleep", "zzz")))
        kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Running", "at/forever", "--timeout=60s")
        kubectl("-n", namespace, "delete", "at", "forever", "--timeout=60s")
        shown = kubectl("-n", namespace, "get", "at", "-o", "yaml").stdout
        log = op.logs()

    assert service.count("POST") == 2 and service.count("DELETE") == 1
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in service.calls)
    assert TOKEN not in shown and TOKEN not in log


def test_docs_show_the_example_agent_verbatim() -> None:
    readme = (ROOT / "docs" / "writing-agents.md").read_text()
    source = (AGENT_DIR / "batch_job_agent.py").read_text()
    assert f"```python\n{source}```" in readme
