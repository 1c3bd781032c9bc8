"""Shared parts of the Flux tests and the GitOps demo: a git repository served on loopback,
Flux's own controllers (built from source) and the two Flux objects that sync it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_operator.testing.agents import agent_task_manifest, task_template
from agent_operator.testing.flux import FluxControllers
from agent_operator.testing.gitserver import GitRepo, GitServer
from operator_fixtures import Env, make_env

FORCE_ANNOTATION = "kustomize.toolkit.fluxcd.io/force"


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """One git HTTP server on loopback for the module."""
    with GitServer(tmp_path_factory.mktemp("git-server")) as server:
        yield server


@pytest.fixture(scope="module")
def flux(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxControllers]:
    """source-controller and kustomize-controller running against the session's control plane."""
    controllers = FluxControllers(control_plane.kubeconfig, control_plane.kubectl_path,
                                  workdir=tmp_path_factory.mktemp("flux"), log=lambda m: print(f"[flux] {m}"))
    controllers.start()
    try:
        yield controllers
    finally:
        controllers.stop()


def task_yaml(name: str, **config: Any) -> str:
    """An AgentTask of the test agent as a file in git (no namespace: Flux's targetNamespace sets it)."""
    annotations = config.pop("annotations", None)
    manifest = agent_task_manifest(name, task_template("test-async", **config), pollInterval="1s")
    if annotations:
        manifest["metadata"]["annotations"] = annotations
    return yaml.safe_dump(manifest, sort_keys=False)


@dataclass
class GitOps:
    """One namespace synced from one git repository by one GitRepository + Kustomization."""

    env: Env
    repo: GitRepo
    flux: FluxControllers
    name: str = "tasks"
    synced: bool = False

    @property
    def ns(self) -> str:
        return self.env.namespace

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.env.kubectl("-n", self.ns, *args, **kw)

    def sync(self, *, wait: bool = True, prune: bool = True, timeout: str = "90s") -> None:
        """Create the GitRepository and the Kustomization for ``tasks/`` of the repository."""
        source = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                  "metadata": {"name": self.name, "namespace": self.ns},
                  "spec": {"interval": "1m", "url": self.repo.url, "ref": {"branch": self.repo.branch}}}
        kustomization = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                         "metadata": {"name": self.name, "namespace": self.ns},
                         "spec": {"interval": "1m", "retryInterval": "2s", "timeout": timeout, "path": "./tasks",
                                  "prune": prune, "wait": wait, "targetNamespace": self.ns,
                                  "sourceRef": {"kind": "GitRepository", "name": self.name}}}
        self.env.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                               "items": [source, kustomization]}))
        self.synced = True

    def push(self, message: str) -> str:
        """Commit and push the working tree, then ask source-controller to fetch it now."""
        revision = self.repo.commit(message)
        if self.synced:
            self.request_reconcile("gitrepository")
        return revision

    def request_reconcile(self, kind: str) -> None:
        """Flux's ``reconcile.fluxcd.io/requestedAt`` annotation (what ``flux reconcile`` sets)."""
        self.kubectl("annotate", "--overwrite", f"{kind}/{self.name}",
                     f"reconcile.fluxcd.io/requestedAt={time.time_ns()}")

    def kustomization(self) -> dict[str, Any]:
        return dict(self.env.get(self.name, "kustomizations.kustomize.toolkit.fluxcd.io"))

    def ready(self, kustomization: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Kustomization's Ready condition ({} before the first one)."""
        obj = kustomization if kustomization is not None else self.kustomization()
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return dict(c)
        return {}

    def wait_ready(self, status: str, revision: str, what: str = "", timeout: float = 150.0,
                   check: Callable[[], None] | None = None) -> dict[str, Any]:
        """Wait for Ready=``status`` on ``revision`` (its message names the revision); ``check`` runs
        on every poll."""
        def reached() -> dict[str, Any] | None:
            if check is not None:
                check()
            obj = self.kustomization()  # one read: the condition and the revision must agree
            ready = self.ready(obj)
            attempted = str((obj.get("status") or {}).get("lastAttemptedRevision", ""))
            if ready.get("status") == status and attempted.endswith(revision):
                return ready
            return None
        return dict(self.env.wait(f"{what or 'Kustomization'} Ready={status} at {revision[:8]}", reached,
                                  timeout=timeout, every=0.3))

    def task_names(self) -> set[str]:
        out = self.kubectl("get", "agenttasks", "-o", "name").stdout.split()
        return {ref.split("/", 1)[1] for ref in out}

    def release(self) -> None:
        """Stop syncing: delete the Kustomization (pruning its tasks while the operator still runs)."""
        self.kubectl("delete", "kustomizations.kustomize.toolkit.fluxcd.io", "--all", "--timeout=60s", check=False)
        self.kubectl("delete", "gitrepositories.source.toolkit.fluxcd.io", "--all", "--timeout=30s", check=False)


def gitops_env(request: pytest.FixtureRequest, control_plane: Any, namespace: str, tmp_path: Path,
               git_server: GitServer, flux: FluxControllers) -> Iterator[GitOps]:
    """An operator for ``namespace`` and an empty repository for its AgentTasks."""
    repo = git_server.create_repo(namespace, tmp_path / "work")
    for env in make_env(request, control_plane, namespace, tmp_path):
        gitops = GitOps(env, repo, flux)
        try:
            yield gitops
        finally:
            gitops.release()
