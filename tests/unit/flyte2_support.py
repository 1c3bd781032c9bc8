"""A real Flyte 2 connector server (the SDK's ``c0``) on loopback, running the connector in
tests/fixtures/flyte2/loopback_connector.py, and the Flyte 2 TaskSpec file of its task."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import grpc
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.connector import service_pb2_grpc as s2

from agent_operator.testing.pyflyte import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flyte2"
VENV_BIN = Path(sys.executable).parent


def write_task_spec(job_dir: Path, out: Path) -> Path:
    """Serialize the loopback task with the Flyte 2 SDK into ``out`` (a flyteidl2 TaskSpec file)."""
    subprocess.run([sys.executable, str(FIXTURES / "loopback_connector.py"), str(job_dir), str(out)],
                   check=True, capture_output=True)
    return out


class C0Server:
    """``c0 --port P --modules loopback_connector``: stop() and start() again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="c0-")) / "c0.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "C0Server":
        env = {**os.environ, "PYTHONPATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "c0"), "--port", str(self.port), "--prometheus_port", str(self.metrics_port),
                 "--modules", "loopback_connector"], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"c0 exited: {self.log.read_text()[-3000:]}"
            try:
                with grpc.insecure_channel(self.endpoint) as ch:
                    s2.ConnectorMetadataServiceStub(ch).ListConnectors(c2.ListConnectorsRequest(), timeout=2)
                return self
            except grpc.RpcError:
                assert time.monotonic() < deadline, f"c0 did not answer: {self.log.read_text()[-3000:]}"
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self.proc = None

    def __enter__(self) -> "C0Server":
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
