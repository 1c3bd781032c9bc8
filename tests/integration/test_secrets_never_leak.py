"""A Secret handed to agents through ``spec.secretRefs`` never shows up in status, Events or
the operator's logs, even when the agent tries to leak it everywhere it can (issue 9).

The leaking agent (``testing/bad_agents.py``, ``misbehave: leak``) echoes the value into
its message, outputs, customInfo keys and values, log link names and URIs, exceptions and
transient errors, from ``create``, ``get`` and ``do``.  The test then greps everything a
user or a log collector sees: ``kubectl get -o yaml`` of the tasks, the namespace's
Events and the operator's log (text and JSON format, DEBUG level) for the value and its
base64 form: 0 hits.  Positive control: the scrubbed marker is there, so the agents did
receive the value and did try.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_fixtures import Env, crd, make_env, task_template  # noqa: F401 - fixture
from agent_operator.testing.bad_agents import BAD_AGENT_SPECS, bad_template

pytestmark = pytest.mark.cluster

TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")
SECRET = "api-token"
#: (name, template, expected phase)
LEAKERS = (
    ("leak-succeed", bad_template("leak", leakSecret=f"{SECRET}/token"), "Succeeded"),
    ("leak-running", bad_template("leak", leakSecret=f"{SECRET}/token", leakStage="running"), "Succeeded"),
    ("leak-raise", bad_template("leak", leakSecret=f"{SECRET}/token", leakStage="raise"), "Failed"),
    ("leak-transient", bad_template("leak", leakSecret=f"{SECRET}/token", leakStage="transient"), "Succeeded"),
    ("leak-create-raise", bad_template("leak", leakSecret=f"{SECRET}/token", leakStage="create-raise"), "Failed"),
    ("leak-sync", bad_template("leak", "test-bad-sync", leakSecret=f"{SECRET}/token"), "Succeeded"),
    ("leak-sync-raise", bad_template("leak", "test-bad-sync", leakSecret=f"{SECRET}/token", leakStage="raise"),
     "Failed"),
    ("leak-test-agent", task_template("test-async", phases=["RUNNING", "SUCCEEDED"], leakSecret=f"{SECRET}/token"),
     "Succeeded"),
)


@pytest.fixture(params=["text", "json"])
def leak_env(request: pytest.FixtureRequest, control_plane: Any, crd: str, namespace: str,  # noqa: F811
             tmp_path: Path) -> Iterator[Env]:
    """An operator at DEBUG level, in text or JSON log format, with the misbehaving agents."""
    args = ("--log-format", request.param, "--log-level", "DEBUG",
            *(a for spec in BAD_AGENT_SPECS for a in ("--agent", spec)))
    yield from make_env(request, control_plane, namespace, tmp_path, extra_args=args)


def _secret(env: Env, name: str, **data: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": env.namespace},
                "stringData": data}
    env.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def test_a_secret_leaked_by_agents_reaches_no_status_event_or_log(leak_env: Env) -> None:
    env = leak_env
    value = f"s3cr3t-{uuid.uuid4().hex}"
    _secret(env, SECRET, token=value, other="unused-value-1234")
    for name, template, _ in LEAKERS:
        env.apply(name, template, secretRefs=[{"name": SECRET}], pollInterval="1s")
    for name, _, phase in LEAKERS:
        status = env.wait_phase(name, *TERMINAL, timeout=90)
        assert status["phase"] == phase, (name, status.get("message"))
    # a running leaker deleted: the delete path (Events, logs) sees the value too
    env.apply("leak-deleted", bad_template("leak", leakSecret=f"{SECRET}/token", leakStage="running"),
              secretRefs=[{"name": SECRET}], pollInterval="1s")
    env.wait_phase("leak-deleted", "Running")

    tasks = env.kubectl("-n", env.namespace, "get", "agenttasks", "-o", "yaml").stdout
    env.kubectl("-n", env.namespace, "delete", "agenttask", "leak-deleted", "--timeout=30s")
    events = env.kubectl("-n", env.namespace, "get", "events", "-o", "yaml").stdout
    logs = env.operator.logs()
    encoded = base64.b64encode(value.encode()).decode()
    for where, text in (("status", tasks), ("events", events), ("operator log", logs)):
        assert text.count(value) == 0, f"{where} shows the secret"
        assert text.count(encoded) == 0, f"{where} shows the secret base64-encoded"
        assert "***" in text, f"{where}: no scrubbed value seen, so the leak was never attempted there"
    succeeded = env.status("leak-succeed")
    assert succeeded["outputs"]["token"] == "***" and succeeded["customInfo"]["***"] == "as a key"
    assert "token=***" in succeeded["logLinks"][0]["uri"]


def test_missing_secret_names_the_secret_ref_and_recovers_once_created(leak_env: Env) -> None:
    env = leak_env
    _secret(env, "present", token="present-value-1234")
    env.apply("needs-secret", task_template("test-async", phases=["SUCCEEDED"]),
              secretRefs=[{"name": "present"}, {"name": "absent"}])
    status = env.wait("missing Secret reported",
                      lambda: (s := env.status("needs-secret")).get("reason") == "AgentUnavailable" and s)
    assert f"spec.secretRefs[1]: Secret {env.namespace}/absent does not exist" in status["message"]
    assert status["phase"] == "Pending"
    _secret(env, "absent", token="now-it-exists")
    assert env.wait_phase("needs-secret", *TERMINAL, timeout=60)["phase"] == "Succeeded"


@pytest.mark.parametrize("ref", [{"name": "x", "namespace": "kube-system"}, {"name": "kube-system/x"}])
def test_secret_ref_to_another_namespace_is_impossible(control_plane: Any, crd: str, namespace: str,  # noqa: F811
                                                       ref: dict[str, str]) -> None:
    manifest = {"apiVersion": "flyteagents.dev/v1alpha1", "kind": "AgentTask",
                "metadata": {"name": "cross-ns", "namespace": namespace},
                "spec": {"taskTemplate": task_template("test-async"), "secretRefs": [ref]}}
    proc = control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert proc.returncode != 0 and "secretRefs[0]" in proc.stderr, proc.stderr
