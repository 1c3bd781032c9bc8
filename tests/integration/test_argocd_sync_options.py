"""What Argo CD's sync options do to an AgentTask whose spec changed, run with the real kubectl
calls they stand for (Argo CD's engine is not built here, see docs/gitops.md).

Argo CD syncs with ``ServerSideApply=true`` by the Application of
manifests/argocd/application-sync-options.yaml: a changed spec is rejected by the CRD.  The
per-object ``Force=true,Replace=true`` option makes Argo CD run ``kubectl replace --force``: the
task is deleted (its running job cancelled) and created again under a new UID.
"""

from __future__ import annotations

import json

import pytest
import yaml

from deploy_support import MANIFESTS
from operator_fixtures import Env, agent_task_manifest, crd, env, task_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.cluster

APPLICATION = MANIFESTS / "argocd" / "application-sync-options.yaml"


def test_the_example_application_carries_the_sync_options_the_docs_name() -> None:
    app = yaml.safe_load(APPLICATION.read_text())
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert {"ServerSideApply=true", "ApplyOutOfSyncOnly=true", "PruneLast=true"} <= set(options)
    assert "argocd.argoproj.io/sync-options: Force=true,Replace=true" in APPLICATION.read_text()


def test_force_replace_recreates_a_task_whose_spec_changed(env: Env) -> None:  # noqa: F811
    running = agent_task_manifest("job", task_template("test-async", phases=["RUNNING"]),
                                  namespace=env.namespace, pollInterval="1s")
    env.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(running))
    env.wait_phase("job", "Running")
    old_uid = env.uid("job")

    changed = agent_task_manifest("job", task_template("test-async"), namespace=env.namespace, pollInterval="1s")
    changed["metadata"]["annotations"] = {"argocd.argoproj.io/sync-options": "Force=true,Replace=true"}
    rejected = env.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(changed), check=False)
    assert rejected.returncode != 0
    assert "spec is immutable" in rejected.stderr, rejected.stderr

    env.kubectl("replace", "--force", "-f", "-", input=json.dumps(changed), timeout=120)
    env.wait("the recreated task", lambda: env.get("job")["metadata"]["uid"] != old_uid)
    env.wait_phase("job", "Succeeded")
    assert env.ledger.count("delete", old_uid) == 1  # the old job was cancelled
    assert env.ledger.count("create", env.uid("job")) == 1
