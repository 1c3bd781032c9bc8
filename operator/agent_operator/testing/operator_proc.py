"""The operator as a real child process, for integration tests, chaos tests and benchmarks.

``OperatorProcess`` runs ``python -m agent_operator.cli.main run`` exactly as a user would
(same flags, same kubeconfig handling), logs to a file, and offers the signals a test
needs: ``stop()`` (SIGTERM, graceful), ``kill()`` (SIGKILL, a crash).  It dies with the
test process (``PR_SET_PDEATHSIG``)::

    with OperatorProcess(kubeconfig, namespaces=[ns], agents=AGENT_SPECS,
                         env={LEDGER_ENV: str(ledger)}) as op:
        op.wait_ready()
        ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import processes

#: log line ``agent-operator run`` prints once it watches its namespaces
READY_MARKER = "agent-operator ready"


class OperatorProcessError(RuntimeError):
    """The operator exited or did not become ready; the message carries its log tail."""


def _asks_for_flytekit(args: Sequence[str]) -> bool:
    """Whether ``args`` choose the flytekit bridge's mode, name a module for it or select it."""
    return any(a == "--flytekit" or a.startswith(("--flytekit=", "--flytekit-module")) or a.endswith("=flytekit")
               for a in args)


class OperatorProcess:
    """One ``agent-operator run`` child process."""

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        namespaces: Sequence[str] = (),
        agents: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        all_namespaces: bool = False,
        entry_points: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        health_port: int | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespaces = list(namespaces)
        self.agents = list(agents)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.all_namespaces = all_namespaces or not self.namespaces
        self.entry_points = entry_points
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="agent-operator-proc-")) / "operator.log"
        self.health_port = health_port if health_port is not None else processes.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # ------------------------------------------------------------------ lifecycle
    def argv(self) -> list[str]:
        """The command line (useful in failure messages)."""
        argv = [sys.executable, "-m", "agent_operator.cli.main", "run", "--kubeconfig", self.kubeconfig,
                "--health-port", str(self.health_port)]
        if self.all_namespaces:
            argv.append("--all-namespaces")
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        for spec in self.agents:
            argv += ["--agent", spec]
        if not self.entry_points:
            argv.append("--no-entry-points")
        if not _asks_for_flytekit(self.extra_args):
            # the dev extra installs real flytekit plugins, which `--flytekit auto` would import
            # in every operator (measured: +5 s start, +68 MB); a test that wants them says so
            argv += ["--flytekit", "off"]
        return argv + self.extra_args

    def start(self) -> "OperatorProcess":
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        if self.running:
            raise OperatorProcessError("operator already running")
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = processes.spawn(self.argv(), self.log_path, env=env)
        return self

    def wait_ready(self, timeout: float = 60.0) -> "OperatorProcess":
        """Block until the operator watches its resources (readiness probe or log marker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise OperatorProcessError(f"operator exited with {code} before ready:\n{self.logs()[-4000:]}")
            if READY_MARKER in self._new_logs() or self._probe("/readyz"):
                return self
            time.sleep(0.2)
        raise OperatorProcessError(f"operator not ready after {timeout}s:\n{self.logs()[-4000:]}")

    def _probe(self, path: str) -> bool:
        if not self.health_port:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=1.0) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _new_logs(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        processes.stop(self.proc, timeout=timeout)
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self, timeout: float = 60.0) -> "OperatorProcess":
        """Start again after a stop/kill and wait until ready."""
        return self.start().wait_ready(timeout)

    @property
    def running(self) -> bool:
        """True while the child process lives."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's pid (None before start)."""
        return None if self.proc is None else self.proc.pid

    def logs(self) -> str:
        """Everything the process (and earlier runs of this object) logged."""
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
