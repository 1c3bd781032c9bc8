"""Misbehaving agents for the bad-input and secret-leak tests (issue 9).

An agent is code the admin installed, but its *answers* are treated like user input: a
remote agent service, a buggy plugin or a hostile job can return anything.  These agents
return exactly the things a careful operator must survive, chosen by the template's
``custom.misbehave`` (build templates with :func:`bad_template`):

=========================  ====================================================================
``create-none``            ``create`` returns None instead of a ResourceMeta
``create-wrong-type``      ``create`` returns a dict
``get-none``               ``get`` returns None
``get-wrong-type``         ``get`` returns a dict that looks like a Resource
``get-undefined-phase``    ``get`` returns phase 42 (not a flyteidl phase)
``get-unset-phase``        ``get`` returns phase UNDEFINED (0)
``get-bad-outputs``        SUCCEEDED with outputs the declared interface cannot hold
``get-nan``                SUCCEEDED with NaN/Infinity in outputs and customInfo (not JSON)
``get-message-not-str``    a Resource whose message is an int
``get-huge-message``       a 1 MiB message
``get-huge-links``         201 log links: 1000-character names, one 10 000-character URI
``get-huge-custominfo``    2 MiB of customInfo (more than etcd stores in one object)
``get-odd-custominfo``     customInfo with non-string keys and non-JSON values
``get-null-custominfo``    RUNNING forever, customInfo with a null member (a merge patch deletes it)
``raise-huge``             ``get`` raises with a 1 MiB message
``raise-systemexit``       ``get`` raises SystemExit (must not stop the operator)
``leak``                   see below
=========================  ====================================================================

``leak`` (with ``leakSecret: "secretName/key"``) puts the secret's value into every field
an answer has: message, outputs, customInfo (keys and values), log link names and URIs;
``leakStage`` picks where: ``succeed`` (default: a SUCCEEDED answer), ``running`` (a
RUNNING answer, then SUCCEEDED), ``raise`` (``get`` raises an exception carrying it),
``transient`` (``get`` raises TransientAgentError carrying it twice, then succeeds),
``create-raise`` (``create`` raises with it).

Task types: ``test-bad`` (async, plain methods) and ``test-bad-sync`` (``do`` answers like
``get`` would).  No ledger: these tests look at status, not call counts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.core.identity import key_of
from agent_operator.sdk import (
    AsyncAgentBase,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskExecution,
    TaskLog,
    TransientAgentError,
)

BAD_TASK_TYPES = ("test-bad", "test-bad-sync")
#: ``--agent`` specs loading the misbehaving agents
BAD_AGENT_SPECS = (
    "agent_operator.testing.bad_agents:BadAsyncAgent",
    "agent_operator.testing.bad_agents:BadSyncAgent",
)
MODES = (
    "create-none", "create-wrong-type", "get-none", "get-wrong-type", "get-undefined-phase",
    "get-unset-phase", "get-bad-outputs", "get-nan", "get-message-not-str", "get-huge-message",
    "get-huge-links", "get-huge-custominfo", "get-odd-custominfo", "get-null-custominfo", "raise-huge", "raise-systemexit", "leak",
)
MIB = 1024 * 1024


class BadAgentError(RuntimeError):
    """What the misbehaving agents raise."""


def bad_template(mode: str, task_type: str = "test-bad", *, outputs: Mapping[str, str] | None = None,
                 **config: Any) -> dict[str, Any]:
    """A TaskTemplate (protobuf JSON mapping) for a misbehaving agent; ``config`` adds custom fields."""
    if mode not in MODES:
        raise ValueError(f"unknown misbehaviour {mode!r} (one of {', '.join(MODES)})")
    declared = outputs if outputs is not None else {"n": "INTEGER"}
    return {
        "id": {"resourceType": "TASK", "project": "test", "domain": "test", "name": f"bad-{mode}", "version": "1"},
        "type": task_type,
        "interface": {"outputs": {"variables": {k: {"type": {"simple": v}} for k, v in declared.items()}}},
        "custom": json.loads(json.dumps({"misbehave": mode, **config})),
    }


@dataclass
class BadJobMeta(ResourceMeta):
    """Handle of a misbehaving job: its key and the template's custom fields."""

    key: str
    config: dict[str, Any]


def _config(template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    return json_format.MessageToDict(template.custom) if template.HasField("custom") else {}


def _secret(config: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]] | None) -> str:
    name, _, key = str(config.get("leakSecret", "")).partition("/")
    return str((secrets or {}).get(name, {}).get(key, ""))


class _Polls:
    """Get calls per job key (in memory: these tests never restart the operator mid-job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n: dict[str, int] = {}

    def next(self, key: str) -> int:
        with self._lock:
            n = self._n.get(key, 0)
            self._n[key] = n + 1
            return n


def leaky_resource(value: str, phase: int = TaskExecution.SUCCEEDED) -> Resource:
    """An answer carrying ``value`` in every field a Resource has."""
    return Resource(
        phase=phase,
        message=f"connected with password {value}",
        log_links=[TaskLog(name=f"console {value}", uri=f"https://console.example/job?token={value}")],
        outputs={"n": 1, "token": value} if phase == TaskExecution.SUCCEEDED else None,
        custom_info={"token": value, value: "as a key", "nested": {"list": [f"Bearer {value}"]}},
    )


def answer(mode: str, config: Mapping[str, Any], poll: int, secrets: Mapping[str, Mapping[str, str]] | None) -> Any:
    """What ``get`` (or ``do``) returns for ``mode`` on its ``poll``-th call; may raise."""
    done = TaskExecution.SUCCEEDED
    if mode == "get-none":
        return None
    if mode == "get-wrong-type":
        return {"phase": "SUCCEEDED", "outputs": {"n": 1}}
    if mode == "get-undefined-phase":
        return Resource(phase=42)
    if mode == "get-unset-phase":
        return Resource(phase=TaskExecution.UNDEFINED)
    if mode == "get-bad-outputs":
        return Resource(phase=done, outputs={"n": object()})
    if mode == "get-nan":
        return Resource(phase=done, outputs={"x": float("nan"), "y": float("inf")},
                        custom_info={"ratio": float("nan"), "limit": float("-inf")})
    if mode == "get-message-not-str":
        return Resource(phase=done, message=12345)  # type: ignore[arg-type]
    if mode == "get-huge-message":
        return Resource(phase=done, message="m" * MIB)
    if mode == "get-huge-links":
        links = [TaskLog(name="too-long-uri", uri="https://logs.example/" + "u" * 10_000)]
        links += [TaskLog(name=f"link-{i}-" + "n" * 1000, uri=f"https://logs.example/{i}") for i in range(200)]
        return Resource(phase=done, log_links=links)
    if mode == "get-huge-custominfo":
        return Resource(phase=done, custom_info={"blob": "c" * (2 * MIB)})
    if mode == "get-odd-custominfo":
        return Resource(phase=done, custom_info={1: "int key", (1, 2): "tuple key", "when": object(),  # type: ignore[dict-item]
                                                 "set": {1, 2}, "bytes": b"\xff"})
    if mode == "get-null-custominfo":
        return Resource(phase=TaskExecution.RUNNING, custom_info={"progress": None, "step": 1})
    if mode == "raise-huge":
        raise BadAgentError("e" * MIB)
    if mode == "raise-systemexit":
        raise SystemExit(3)
    if mode == "leak":
        value, stage = _secret(config, secrets), str(config.get("leakStage", "succeed"))
        if stage == "raise":
            raise BadAgentError(f"authentication failed for token {value!r}")
        if stage == "transient":
            if poll < 2:
                raise TransientAgentError(f"service rejected token {value}, try again")
            return leaky_resource(value)
        if stage == "running" and poll < 3:
            return leaky_resource(value, TaskExecution.RUNNING)
        return leaky_resource(value)
    return Resource(phase=done, outputs={"n": 1})


class BadAsyncAgent(AsyncAgentBase):
    """``test-bad``: an async agent whose answers misbehave as the template says."""

    name = "Bad Async Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="test-bad", metadata_type=BadJobMeta)
        self._polls = _Polls()

    def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
               inputs: literals_pb2.LiteralMap | None = None, task_execution_metadata: Any = None,
               **kwargs: Any) -> Any:
        """A handle, or the garbage the mode asks for."""
        config = _config(task_template)
        mode = str(config.get("misbehave", ""))
        if mode == "create-none":
            return None
        if mode == "create-wrong-type":
            return {"job": "id-1"}
        if mode == "leak" and config.get("leakStage") == "create-raise":
            raise BadAgentError(f"could not log in with {_secret(config, kwargs.get('secrets'))}")
        return BadJobMeta(key=key_of(task_execution_metadata), config=config)

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Any:
        """The answer for the job's mode."""
        assert isinstance(resource_meta, BadJobMeta)
        config = resource_meta.config
        return answer(str(config.get("misbehave", "")), config, self._polls.next(resource_meta.key),
                      kwargs.get("secrets"))

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Nothing to cancel."""


class BadSyncAgent(SyncAgentBase):
    """``test-bad-sync``: ``do`` answers what ``get`` would on its last call."""

    name = "Bad Sync Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="test-bad-sync")

    def do(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
           inputs: literals_pb2.LiteralMap | None = None, **kwargs: Any) -> Any:
        """The answer for the template's mode (a final one: sync agents have no later call)."""
        config = _config(task_template)
        return answer(str(config.get("misbehave", "")), config, 99, kwargs.get("secrets"))
