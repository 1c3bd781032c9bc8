"""AgentTasks synced from git by Flux's own controllers (built from source), run by the real
operator on the real API server.  Flux judges health with its own kstatus code: no test here
reads a condition the way Flux would, it asks Flux's Kustomization."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_operator.testing.flux import FluxControllers
from agent_operator.testing.gitserver import GitServer
from gitops_flux_support import FORCE_ANNOTATION, GitOps, flux, git_server, gitops_env, task_yaml  # noqa: F401
from operator_fixtures import crd  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster


@pytest.fixture
def gitops(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
           tmp_path: Path, git_server: GitServer, flux: FluxControllers) -> Iterator[GitOps]:  # noqa: F811
    yield from gitops_env(request, control_plane, namespace, tmp_path, git_server, flux)


def phases(g: GitOps) -> dict[str, str]:
    return {name: str(g.env.status(name).get("phase", "")) for name in g.task_names()}


def test_wait_true_is_ready_only_after_every_task_succeeded(gitops: GitOps) -> None:
    g = gitops
    g.repo.write("tasks/quick.yaml", task_yaml("quick"))
    g.repo.write("tasks/slow.yaml", task_yaml("slow", phases=["RUNNING", "SUCCEEDED"], runSeconds=8))
    revision = g.push("two tasks")
    g.sync(wait=True)
    seen_waiting = []

    def ready_implies_succeeded() -> None:
        ready, current = g.ready(), phases(g)
        if ready.get("status") == "True":
            assert current == {"quick": "Succeeded", "slow": "Succeeded"}, (ready, current)
        elif current.get("slow") in ("Pending", "Running"):
            seen_waiting.append(ready.get("message", ""))

    ready = g.wait_ready("True", revision, check=ready_implies_succeeded)
    assert seen_waiting, "the Kustomization was never seen waiting for the running task"
    assert f"Applied revision: main@sha1:{revision}" == ready["message"]
    assert phases(g) == {"quick": "Succeeded", "slow": "Succeeded"}


def test_a_failed_task_makes_the_kustomization_not_ready_with_its_reason(gitops: GitOps) -> None:
    g = gitops
    g.repo.write("tasks/ok.yaml", task_yaml("ok"))
    g.repo.write("tasks/broken.yaml", task_yaml("broken", errors={"create": {"kind": "permanent"}}))
    revision = g.push("one task fails")
    g.sync(wait=True)
    ready = g.wait_ready("False", revision)
    status = g.env.wait_phase("broken", "Failed")
    assert ready["reason"] == "HealthCheckFailed", ready
    assert f"AgentTask/{g.ns}/broken" in ready["message"], ready
    assert "Failed" in ready["message"], ready
    # the task's own reason and message are one `kubectl describe` away, on the object Flux names
    stalled = g.env.condition("broken", "Stalled")
    assert stalled and stalled["status"] == "True" and "injected permanent create error" in status["message"]


def test_an_edited_spec_is_rejected_and_force_recreates_the_task(gitops: GitOps) -> None:
    g = gitops
    g.repo.write("tasks/job.yaml", task_yaml("job", phases=["RUNNING"]))  # runs until cancelled
    g.push("job v1")
    g.sync(wait=True, timeout="20s")
    g.env.wait("Flux created the task", lambda: "job" in g.task_names())
    g.env.wait_phase("job", "Running")
    old_uid = g.env.uid("job")

    g.repo.write("tasks/job.yaml", task_yaml("job", phases=["RUNNING", "RUNNING", "SUCCEEDED"]))
    edited = g.push("job v2: the spec changed")
    ready = g.wait_ready("False", edited)
    assert ready["reason"] == "ReconciliationFailed", ready
    assert "spec is immutable" in ready["message"], ready
    assert g.env.uid("job") == old_uid  # nothing was applied
    # the new commit waited for the health check of the running v1 to time out (Flux's default:
    # the CancelHealthCheckOnNewRevision feature gate is off), as the Kustomization's Events show
    # (its wording varies: "timeout waiting for: [AgentTask/... status: 'InProgress']", or the
    # client's "rate limiter Wait ... would exceed context deadline" when the deadline hits there)
    messages = [str(e.get("message")) for e in g.env.events(g.name)]
    assert any(m.startswith("health check failed after") for m in messages), messages

    # what docs/gitops.md tells users: let Flux recreate this object (or give it a new name)
    g.repo.write("tasks/job.yaml", task_yaml("job", phases=["RUNNING", "RUNNING", "SUCCEEDED"],
                                             annotations={FORCE_ANNOTATION: "enabled"}))
    forced = g.push("job v2, recreated by Flux")
    g.wait_ready("True", forced)
    assert g.env.uid("job") != old_uid
    assert g.env.status("job")["phase"] == "Succeeded"
    assert g.env.ledger.count("delete", old_uid) == 1  # the running job of the old task was cancelled
    assert g.env.ledger.count("create", g.env.uid("job")) == 1


def test_a_file_removed_with_prune_deletes_the_task_and_cancels_its_job(gitops: GitOps) -> None:
    g = gitops
    g.repo.write("tasks/keep.yaml", task_yaml("keep"))
    g.repo.write("tasks/drop.yaml", task_yaml("drop", phases=["RUNNING"]))  # runs until cancelled
    first = g.push("two tasks")
    g.sync(wait=False)
    g.wait_ready("True", first)
    g.env.wait_phase("drop", "Running")
    uid = g.env.uid("drop")
    assert g.env.ledger.count("delete", uid) == 0

    g.repo.remove("tasks/drop.yaml")
    pruned = g.push("drop removed")
    g.wait_ready("True", pruned)
    g.env.wait("drop deleted (finalizer released)", lambda: "drop" not in g.task_names())
    assert g.env.ledger.count("delete", uid) == 1  # the operator cancelled the agent's job
    assert g.task_names() == {"keep"}


def suspended_skips(g: GitOps) -> int:
    """How often kustomize-controller logged that it skipped this namespace's suspended Kustomization."""
    return sum(1 for line in g.flux.logs("kustomize-controller").splitlines()
               if "Reconciliation is suspended for this object" in line and f'"{g.ns}"' in line)


def test_suspend_and_resume_do_not_restart_finished_tasks(gitops: GitOps) -> None:
    g = gitops
    g.repo.write("tasks/a.yaml", task_yaml("a"))
    g.repo.write("tasks/b.yaml", task_yaml("b"))
    first = g.push("two tasks")
    g.sync(wait=True)
    g.wait_ready("True", first)
    uids = {name: g.env.uid(name) for name in ("a", "b")}

    g.kubectl("patch", f"kustomization/{g.name}", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    g.repo.write("tasks/c.yaml", task_yaml("c"))
    later = g.push("a third task while suspended")
    g.env.wait("source fetched the new revision", lambda: (g.env.get(g.name, "gitrepository").get("status") or {})
               .get("artifact", {}).get("revision", "").endswith(later))
    skipped = suspended_skips(g)
    g.request_reconcile("kustomization")  # a suspended Kustomization ignores the request...
    g.env.wait("kustomize-controller skipping the suspended Kustomization", lambda: suspended_skips(g) > skipped)
    assert "c" not in g.task_names()  # ...and applied nothing

    g.kubectl("patch", f"kustomization/{g.name}", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    g.request_reconcile("kustomization")
    g.wait_ready("True", later)
    assert g.env.status("c")["phase"] == "Succeeded"
    for name, uid in uids.items():
        assert g.env.uid(name) == uid, name
        assert g.env.status(name)["phase"] == "Succeeded"
        assert g.env.ledger.count("create", uid) == 1, name
