"""A real Prometheus on loopback for tests, and the rule file the project ships.

``manifests/monitoring/prometheusrule.yaml`` is the single source of the alert rules; a plain
Prometheus (and ``promtool``) reads its ``spec.groups`` as a rule file, which
:func:`write_rule_file` extracts.  :class:`PrometheusServer` runs the ``prometheus`` binary
built by :mod:`.gotools` against static loopback targets and answers PromQL through the HTTP
API, so tests judge alerts and dashboard queries on the same engine production uses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import processes
from .gotools import PROMETHEUS, find_tool

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or answered a query with an error (the message carries it)."""


def rule_groups(path: Path = PROMETHEUS_RULE) -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule at ``path`` (a plain rule file's ``groups``)."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("kind") != "PrometheusRule":
        raise ValueError(f"{path}: not a PrometheusRule (kind={doc.get('kind') if isinstance(doc, dict) else None!r})")
    groups = (doc.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"{path}: spec.groups is missing or empty")
    return groups


def write_rule_file(target: Path, groups: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write ``groups`` (default: the shipped rules) as a Prometheus rule file at ``target``."""
    target.write_text(yaml.safe_dump({"groups": list(groups if groups is not None else rule_groups())},
                                     sort_keys=False))
    return target


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the promtool built from the pinned Prometheus release (built on first use)."""
    binary = find_tool(PROMETHEUS, "promtool")
    return subprocess.run([str(binary), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)


class PrometheusServer:
    """One ``prometheus`` process scraping ``targets`` (host:port on loopback) every ``interval``."""

    def __init__(self, targets: Sequence[str], *, rule_files: Sequence[Path] = (), interval: str = "1s",
                 job: str = "agent-operator", workdir: Path | None = None) -> None:
        for target in targets:
            host = target.rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost", "[::1]"):
                raise ValueError(f"scrape target {target!r} is not on loopback")
        self.targets = list(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.interval = interval
        self.job = job
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="agent-operator-prom-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process writes its log."""
        return self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml this server runs with."""
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}],
        }

    def start(self, timeout: float = 60.0) -> "PrometheusServer":
        """Start the process and wait until ``/-/ready`` answers."""
        binary = find_tool(PROMETHEUS, "prometheus")
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.port = processes.free_port()
        self.proc = processes.spawn(
            [str(binary), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            self.log_path, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready within {timeout}s:\n{self.logs()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the process; remove the work directory if this object created it."""
        processes.stop(self.proc)
        self.proc = None
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        """The process log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a success, else :class:`PrometheusError`."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30.0) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector result of ``expr`` (PromQL errors raise :class:`PrometheusError`)."""
        data = self.api("query", query=expr)
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result or [])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) as ``/api/v1/alerts`` lists them."""
        return list(self.api("alerts").get("alerts") or [])

    def target_health(self) -> list[str]:
        """``health`` of every active scrape target (``up``, ``down``, ``unknown``)."""
        return [t.get("health", "") for t in self.api("targets").get("activeTargets") or []]


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.prometheus rules``: print the shipped rules as a rule file."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["rules"]:
        print("usage: python -m agent_operator.testing.prometheus rules", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
