"""Loopback fakes of the services two real flytekit connector plugins talk to.

* :class:`FakeOpenAI` - the OpenAI Batch API (``flytekitplugins-openai``'s
  ``BatchEndpointConnector``, task type ``openai-batch``), reached through the ``openai``
  client's ``OPENAI_BASE_URL``;
* :class:`FakeSageMaker` - the SageMaker endpoint calls (``flytekitplugins-awssagemaker``'s
  ``SageMakerEndpointConnector``, task type ``sagemaker-endpoint``), AWS JSON 1.1 protocol,
  reached through botocore's ``AWS_ENDPOINT_URL``.

Both are real HTTP servers on 127.0.0.1 that can be stopped and started again on the same
port (an outage), record every request, and move a job forward only when the test says so
(:meth:`LoopbackService.finish`), so no test depends on timing.  The plugins themselves
are the unchanged packages from the registry.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Reply = tuple[int, dict[str, Any]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Job:
    """One external job: its id, state and the request that created it."""

    id: str
    state: str
    created: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    polls: int = 0


class LoopbackService:
    """A stoppable HTTP service on a fixed loopback port; subclasses answer requests."""

    def __init__(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.requests: list[Request] = []
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, req: Request) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> "LoopbackService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length))
                with service.lock:
                    service.requests.append(req)
                    status, body = service.answer(req)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not service.amz else "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        deadline = time.monotonic() + 30
        while True:
            try:
                self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:  # the port of the previous run is still being released
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(timeout=30)
            self._httpd = None

    amz = False

    def __enter__(self) -> "LoopbackService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def job(self) -> Job:
        """The only job created so far (tests run one task per service)."""
        with self.lock:
            assert len(self.jobs) == 1, f"expected one job, have {list(self.jobs)}"
            return next(iter(self.jobs.values()))

    def finish(self, job_id: str | None = None) -> None:
        """Let the job complete: the next status read reports it done."""
        with self.lock:
            job = self.jobs[job_id] if job_id else next(iter(self.jobs.values()))
            job.state = self.done_state

    done_state = "done"

    def calls(self, marker: str) -> list[Request]:
        """Requests whose path or X-Amz-Target contains ``marker``."""
        with self.lock:
            return [r for r in self.requests if marker in r.path or marker in r.headers.get("x-amz-target", "")]


class FakeOpenAI(LoopbackService):
    """``/v1/batches`` create, retrieve and cancel, with the API's null fields.

    Requests must carry ``Authorization: Bearer <api_key>`` exactly (401 otherwise), which
    is what a key read with its trailing newline fails.
    """

    done_state = "completed"

    def __init__(self, api_key: str, finish_after_polls: int = 0) -> None:
        super().__init__()
        self.api_key = api_key
        #: > 0: a batch completes by itself on that many retrievals (for doc runs)
        self.finish_after_polls = finish_after_polls

    def batch(self, job: Job) -> dict[str, Any]:
        return {
            "id": job.id, "object": "batch", "endpoint": job.created.get("endpoint"), "errors": None,
            "input_file_id": job.created.get("input_file_id"), "completion_window": job.created.get("completion_window"),
            "status": job.state, "output_file_id": "file-out-1" if job.state == "completed" else None,
            "error_file_id": None, "created_at": 1764460800, "metadata": None,
        }

    def answer(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        parts = req.path.split("?")[0].strip("/").split("/")
        if req.method == "POST" and parts == ["v1", "batches"]:
            job = Job(id=f"batch_{len(self.jobs) + 1}", state="in_progress", created=req.json())
            self.jobs[job.id] = job
            return 200, self.batch(job)
        if len(parts) >= 3 and parts[:2] == ["v1", "batches"] and parts[2] in self.jobs:
            job = self.jobs[parts[2]]
            if req.method == "POST" and parts[3:] == ["cancel"]:
                job.cancelled, job.state = True, "cancelling"
            elif req.method == "GET" and self.finish_after_polls and job.state == "in_progress":
                job.polls += 1
                if job.polls >= self.finish_after_polls:
                    job.state = self.done_state
            return 200, self.batch(job)
        return 404, {"error": {"message": f"no route {req.method} {req.path}"}}


class FakeSageMaker(LoopbackService):
    """CreateEndpoint, DescribeEndpoint and DeleteEndpoint (AWS JSON 1.1, ``X-Amz-Target``)."""

    amz = True
    done_state = "InService"

    def answer(self, req: Request) -> Reply:
        target = req.headers.get("x-amz-target", "")
        if not req.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return 403, {"__type": "MissingAuthenticationTokenException", "message": "unsigned request"}
        body = req.json()
        name = str(body.get("EndpointName", ""))
        if target == "SageMaker.CreateEndpoint":
            if name in self.jobs:
                return 400, {"__type": "ValidationException",
                             "message": f"Cannot create already existing endpoint \"{name}\"."}
            self.jobs[name] = Job(id=name, state="Creating", created=body)
            return 200, {"EndpointArn": self.arn(name)}
        job = self.jobs.get(name)
        if job is None:
            return 400, {"__type": "ValidationException", "message": f"Could not find endpoint \"{name}\"."}
        if target == "SageMaker.DescribeEndpoint":
            return 200, {"EndpointName": name, "EndpointArn": self.arn(name), "EndpointStatus": job.state,
                         "EndpointConfigName": job.created.get("EndpointConfigName"),
                         "CreationTime": 1764460800.0, "LastModifiedTime": 1764460800.0}
        if target == "SageMaker.DeleteEndpoint":
            job.cancelled, job.state = True, "Deleting"
            return 200, {}
        return 400, {"__type": "UnknownOperationException", "message": target}

    @staticmethod
    def arn(name: str) -> str:
        return f"arn:aws:sagemaker:us-east-2:000000000000:endpoint/{name}"


# --------------------------------------------------------------------------- the tasks
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
VENV_BIN = Path(sys.executable).parent
OPENAI_KEY = "sk-test-0123456789"


def serialize_plugin_tasks(work: Path) -> dict[str, Path]:
    """Run the real ``pyflyte serialize`` on fixtures/plugins/plugin_tasks.py: task name -> TaskSpec file."""
    pkg = work / "plugin_pkg"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(FIXTURES / "plugin_tasks.py", pkg / "plugin_tasks.py")
    out = work / "out"
    out.mkdir(exist_ok=True)
    subprocess.run([str(VENV_BIN / "pyflyte"), "--pkgs", "plugin_pkg", "serialize", "--image",
                    "ghcr.io/flyteorg/flytekit:py3.11-1.16.0", "workflows", "-f", str(out)],
                   cwd=work, check=True, capture_output=True)
    return {pb.name.split("_", 1)[1].rsplit("_", 1)[0]: pb for pb in sorted(out.glob("*.pb"))}


def render(spec_file: Path, name: str, inputs: dict[str, str], **spec: Any) -> dict[str, Any]:
    """``agent-operator render`` of a pyflyte TaskSpec file, plus ``spec`` fields (camelCase)."""
    argv = [str(VENV_BIN / "agent-operator"), "render", str(spec_file), "--name", name, "-o", "json"]
    for key, value in inputs.items():
        argv += ["--input", f"{key}={value}"]
    manifest: dict[str, Any] = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    manifest["spec"].update(spec)
    return manifest


def openai_env(svc: FakeOpenAI) -> dict[str, str]:
    """What points the unchanged openai client at the fake."""
    return {"OPENAI_BASE_URL": svc.base + "/v1"}


def sagemaker_env(svc: FakeSageMaker) -> dict[str, str]:
    """What points the unchanged botocore client at the fake (one attempt per call: the
    operator does the retrying)."""
    return {"AWS_ENDPOINT_URL": svc.base, "AWS_ACCESS_KEY_ID": "AKIDLOOPBACKTEST", "AWS_SECRET_ACCESS_KEY": "loopback",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``pred`` until it returns something truthy (a wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {what}")
