"""Run a real ``pyflyte serve connector`` process on loopback (tests, demos, benchmarks).

flytekit's own connector service is the reference implementation the remote bridge must
interoperate with, so the tests drive the genuine article rather than a look-alike.  It
needs flytekit and prometheus-client (the ``dev`` extra has both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pyflyte_executable() -> str:
    """``pyflyte`` next to this interpreter, else on PATH."""
    local = Path(sys.executable).with_name("pyflyte")
    if local.exists():
        return str(local)
    found = shutil.which("pyflyte")
    if found is None:
        raise FileNotFoundError("pyflyte not found: install flytekit (pip install 'flyte-agent-operator[flytekit]')")
    return found


class PyflyteConnector:
    """``pyflyte serve connector --port P`` as a context manager; ``endpoint`` is ``127.0.0.1:P``.

    ``modules`` are passed as ``--modules`` (extra connector modules); ``env`` is added to
    the process environment; ``port`` pins the gRPC port (e.g. to restart a service in
    place with ``stop()`` then ``start()``).  Output goes to a log file readable with :meth:`logs`.
    """

    def __init__(self, modules: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 cwd: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.prometheus_port = free_port()
        self.modules = modules
        self.env = env or {}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="pyflyte-connector-", suffix=".log", delete=False)

    @property
    def endpoint(self) -> str:
        """gRPC target of the service."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "PyflyteConnector":
        """Start the process and wait until ``ListAgents`` answers."""
        cmd = [pyflyte_executable(), "serve", "connector", "--port", str(self.port),
               "--prometheus_port", str(self.prometheus_port)]
        for module in self.modules:
            cmd += ["--modules", module]
        from agent_operator.testing.processes import spawn

        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        # dies with the test process (PR_SET_PDEATHSIG), even when that one is SIGKILLed
        self.process = spawn(cmd, Path(self._log.name), env=env, cwd=Path(self.cwd) if self.cwd else None)
        self.wait_ready(timeout)
        return self

    def list_agents(self, timeout: float = 2.0) -> list[agent_pb2.Agent]:
        """One ``ListAgents`` call (raises grpc.RpcError when the service is not up)."""
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
            return list(stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=timeout).agents)

    def wait_ready(self, timeout: float) -> None:
        """Poll ``ListAgents`` until it answers; fail with the log when the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pyflyte serve connector exited with {self.process.returncode}:\n{self.logs()}")
            try:
                self.list_agents()
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pyflyte serve connector not ready after {timeout}s:\n{self.logs()}") from None
                time.sleep(0.3)

    def logs(self) -> str:
        """Everything the process printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> "PyflyteConnector":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
