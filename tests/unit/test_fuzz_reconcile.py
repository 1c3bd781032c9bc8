"""Hypothesis fuzz of the reconcile core (issue 9): random specs, random (often tampered)
status, random metadata and random agent answers and exceptions through ``decide`` and
``absorb``, the pure functions every driver runs.

Properties, for every input:

* neither function raises;
* every status it returns is one the API server stores: it loads through the CRD's status
  model (``AgentTaskStatus.from_dict``: enums, patterns, lengths, list sizes) and is
  strict JSON (no NaN/Infinity), with ``message`` at most 4096 bytes;
* the action is one a driver can carry out: a known kind, a finite delay >= 0, attempt >= 1;
* no secret value handed to the agent (>= 4 characters) appears anywhere in the new status
  or in an Event, although the agent's answers and exceptions carry it everywhere.

10,000 examples of decide+absorb plus 2,000 of the deletion path; the live counterpart
(random specs and status patches on the real API server with an operator running) is
tests/integration/test_fuzz_operator_live.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_operator.controller.backend import status_write
from agent_operator.core.clock import format_time
from agent_operator.core.model import Action, ActionKind, Answer, Decision
from agent_operator.core.prepare import PrepareFailure, prepare
from agent_operator.core.reconcile import Context, Settings, absorb, decide
from agent_operator.core.runner import AgentExited
from agent_operator.core.signing import Signer
from agent_operator.crd import names
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.resource import AgentTask, load_stored_agent_task
from agent_operator.crd.status import AgentTaskStatus
from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound, Resource, TaskLog, TransientAgentError
from agent_operator.serialization import SpecError
from agent_operator.testing.agents import TestAsyncAgent, TestJobMeta, TestSyncAgent, task_template
from agent_operator.testing.bad_agents import BadAsyncAgent, BadJobMeta, BadSyncAgent, bad_template
from spec_strategies import specs, status_patches

SIGNER = Signer(b"f" * 32)
NOW = 1_800_000_000.0
UID = "0b4c0ffe-0000-4000-8000-000000000001"
SECRET_PREFIX = "SEKRIT-"
TERMINAL = ("Succeeded", "Failed", "Aborted", "TimedOut")
#: FUZZ_EXAMPLES overrides the count (e.g. a quick 500 while editing the core)
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(autouse=True, scope="module")
def agents() -> Iterator[None]:
    with AgentRegistry.snapshot():
        for cls in (TestAsyncAgent, TestSyncAgent, BadAsyncAgent, BadSyncAgent):
            AgentRegistry.register(cls(), override=True)
        yield


# --------------------------------------------------------------------------- strategies
ONE_IN_8 = st.integers(0, 7).map(lambda n: n == 0)
#: spec_strategies' hostile specs and status patches (costly to draw: used one time in eight)
ANY_SPEC = specs()
ANY_STATUS = status_patches()
# Values come mostly from fixed pools of nasty cases: drawing from a pool costs hypothesis
# one choice, where free-form text and recursive JSON cost dozens (12,000 examples must
# stay well under a minute of CPU).  Free-form text still appears in one draw out of five.
WORDS = ("", "x", "Ω≈ç√", "a b", "line\nbreak", "quote\"s", "back\\slash", "***", "\x00", "🙂", "%s{}",
         "n" * 300, "u" * 4100, "m" * 5000)
WEIRD = (None, True, 0, -1, 2**63, -(2**70), 1.5, -0.0, float("nan"), float("inf"), float("-inf"), "", "ok",
         b"\xff", b"", object(), {1, 2}, (1, 2), [1, [2, [3]]], {"a": {"b": [None]}}, {1: "int key"}, Ellipsis)
words = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS),
                  st.text(max_size=8))
weird_scalars = st.one_of(st.sampled_from(WEIRD), st.sampled_from(WEIRD), words, st.integers(), st.floats())
weird_keys = st.one_of(words, st.sampled_from([1, (1, 2), None, 2.5, True]))
weird_maps = st.dictionaries(weird_keys, weird_scalars, max_size=4)
json_values = st.sampled_from([None, True, 0, -3, 2**53, 1.25, "", "x", [], [1, "a"], {}, {"k": [1, {"n": None}]}])
#: secret values: overlapping prefixes on purpose (scrubbing the shorter first would leak a tail)
SECRET_POOL = (SECRET_PREFIX + "ab", SECRET_PREFIX + "abc-long-Ω", SECRET_PREFIX + "x\"y\\z", SECRET_PREFIX + "0")
secrets_st = st.lists(st.sampled_from(SECRET_POOL), max_size=3, unique=True)
#: text an agent produces: ordinary text with secret values (handed to it or not) mixed in
leaky_text = st.lists(st.one_of(words, st.sampled_from(SECRET_POOL)), max_size=4).map(" ".join)

_valid_templates = st.one_of(
    st.builds(lambda phases, out: task_template("test-async", phases=phases, outputs=out),
              st.lists(st.sampled_from(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED"]), min_size=1, max_size=3),
              st.sampled_from([None, {"n": "INTEGER"}, {"x": "FLOAT", "s": "STRING"}])),
    st.just(task_template("test-sync")),
    st.sampled_from(["get-none", "get-nan", "leak", "get-huge-links"]).map(bad_template),
    st.just(bad_template("leak", "test-bad-sync")),
)
_spec_extras = st.fixed_dictionaries({}, optional={
    "timeout": st.sampled_from(["1s", "5m", "2562047h", "0.5s"]),
    "pollInterval": st.sampled_from(["1s", "10s", "2562047h"]),
    "maxAttempts": st.integers(1, 100),
    "outputPrefix": st.sampled_from(["", "file:///tmp/fuzz-out", "s3://bucket/x"]),
    "deletionPolicy": st.sampled_from(["Delete", "Orphan"]),
    "secretRefs": st.just([{"name": "token"}]),
})


@st.composite
def task_specs(draw: st.DrawFn) -> Any:
    """Mostly runnable specs (so agent answers get absorbed), sometimes anything at all."""
    if draw(ONE_IN_8):
        return draw(ANY_SPEC)
    return {"taskTemplate": draw(_valid_templates), **draw(_spec_extras)}


def _storable(status: Any) -> dict[str, Any]:
    """Drop fields until the status model (= the API server's schema) accepts it."""
    if not isinstance(status, dict):
        return {}
    status = {k: v for k, v in status.items()
              if not (k in ("outputs", "customInfo") and _has_null_member(v))}  # merge patches drop nulls
    for _ in range(len(status) + 1):
        try:
            AgentTaskStatus.from_dict(status)  # the pools hold no NaN: no JSON round trip needed
            return status
        except InvalidField as e:
            key = e.field.removeprefix("status").lstrip(".").split(".")[0].split("[")[0]
            if key not in status:
                return {}
            status.pop(key)
    return {}


_status_fields = st.fixed_dictionaries({}, optional={
    "phase": st.sampled_from(["Pending", "Queued", "Running", "Succeeded", "Failed", "Aborted", "TimedOut"]),
    "reason": st.sampled_from(["Running", "AgentUnavailable", "ResourceMetaTampered", "X"]),
    "message": st.sampled_from(["", "m" * 4096, "é" * 1365]),
    "attempt": st.sampled_from([0, 1, 2, 3, 1000]),
    "transientFailures": st.sampled_from([0, 1, 4, 5, 64, 2**62]),
    "customInfo": st.sampled_from([{}, {"nextPollSeconds": 0}, {"nextPollSeconds": 1e300}, {"nextPollSeconds": -1},
                                   {"nextPollSeconds": 2**62}, {"nextPollSeconds": "5"}, {"k": [1, {"n": 0}]}]),
    "startTime": st.sampled_from(["1970-01-01T00:00:00Z", "2026-01-02T03:04:05Z", "2999-12-31T23:59:59Z"]),
    "logLinks": st.sampled_from([[], [{"name": "a", "uri": "http://x"}]]),
    "outputs": st.sampled_from([{}, {"n": 1}, {"big": "b" * 5000}]),
    "outputsRef": st.sampled_from(["", "s3://x/outputs.pb"]),
    "createPending": st.just("2026-01-02T03:04:05Z"),
})
_meta_configs = st.sampled_from([{}, {"phases": ["RUNNING"]}, {"x": [None, 1.5]}])
_meta_kinds = st.sampled_from(["none", "valid", "valid", "other-attempt", "other-uid", "garbage", "edited"])
_garbage_meta = st.sampled_from(["", "v1", "v1.1.e30.x", "v1.1..", "v2.1.e30.AAAA", "a" * 300])


@st.composite
def statuses(draw: st.DrawFn, uid: str) -> dict[str, Any]:
    """A stored status: random fields, and a resourceMeta that is valid, stale or forged."""
    status = _storable(draw(ANY_STATUS)) if draw(ONE_IN_8) else {}
    status.update(draw(_status_fields))
    attempt = status.get("attempt") if isinstance(status.get("attempt"), int) and status["attempt"] >= 1 else 1
    meta = TestJobMeta(key=f"{uid}-{attempt}", attempt=attempt, task_type="test-async", created_at=NOW,
                       config=draw(_meta_configs))
    how = draw(_meta_kinds)
    if how == "valid":
        status["resourceMeta"] = SIGNER.sign(meta.encode(), uid=uid, attempt=attempt)
    elif how == "other-attempt":
        status["resourceMeta"] = SIGNER.sign(meta.encode(), uid=uid, attempt=attempt + 1)
    elif how == "other-uid":
        status["resourceMeta"] = SIGNER.sign(meta.encode(), uid="someone-else", attempt=attempt)
    elif how == "garbage":
        status["resourceMeta"] = draw(_garbage_meta)
    elif how == "edited":
        status["resourceMeta"] = SIGNER.sign(meta.encode(), uid=uid, attempt=attempt)[:-3] + "AAA"
    return _storable(status)


class BrokenStr(Exception):
    """An exception whose message cannot even be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no string for you")


text = leaky_text
errors = st.one_of(
    st.builds(TransientAgentError, text, st.one_of(st.none(), st.floats(0, allow_nan=False),
                                                   st.just(math.inf), st.just(math.nan))),
    st.builds(FlyteAgentNotFound, text), st.builds(SpecError, text, text),
    st.builds(RuntimeError, text), st.builds(AgentExited, text), st.builds(KeyError, text),
    st.just(BrokenStr()), st.sampled_from([10, 5000, 200_000]).map(lambda n: ValueError("e" * n)),
)
garbage = st.one_of(
    weird_scalars, weird_maps,
    st.builds(TestJobMeta, text, st.integers(-2, 5), text, st.floats(), st.dictionaries(text, json_values)),
    st.builds(BadJobMeta, text, st.dictionaries(text, st.one_of(json_values, st.just(object())))),
    st.sampled_from([40_000, 70_000]).map(lambda n: BadJobMeta(key="k" * n, config={})),
)
links = st.lists(st.one_of(
    st.builds(TaskLog, name=text, uri=text), st.builds(TaskLog, name=text, uri=text), weird_scalars), max_size=5)
links = st.one_of(links, links, st.sampled_from([70, 200]).map(
    lambda n: [TaskLog(name=f"{i}-" + "n" * 300, uri=f"https://x/{i}") for i in range(n)]))
phases = st.one_of(st.integers(-2, 12), st.sampled_from([42, 2**40, "SUCCEEDED", None, 2.5, True]))
resources = st.builds(
    Resource, phase=phases,
    message=st.one_of(st.none(), text, st.integers(), st.sampled_from(["m" * 4097, "é" * 3000])),
    log_links=st.one_of(st.none(), links),
    outputs=st.one_of(st.none(), weird_maps, st.dictionaries(text, weird_scalars, max_size=3)),
    custom_info=st.one_of(st.none(), weird_maps, st.dictionaries(text, text, max_size=3),
                          st.sampled_from([60_000, 70_000]).map(lambda n: {"blob": "c" * n})),
)
#: what an agent call might produce: garbage values, odd Resources, any exception, a time-out
answers = st.one_of(st.just(Answer(timed_out=True)), errors.map(lambda e: Answer(error=e)),
                    garbage.map(lambda v: Answer(value=v)), resources.map(lambda r: Answer(value=r)))


# --------------------------------------------------------------------------- checks
def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _has_null_member(value: Any) -> bool:
    """A null object member: a JSON merge patch would delete it instead of storing it."""
    if isinstance(value, Mapping):
        return any(v is None or _has_null_member(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null_member(v) for v in value)
    return False


def check(decision: Decision, secrets: list[str]) -> None:
    """A decision the driver can apply and the API server can store."""
    action = decision.action
    assert isinstance(action, Action) and isinstance(action.kind, ActionKind)
    assert math.isfinite(action.delay) and action.delay >= 0, action
    assert isinstance(action.attempt, int) and action.attempt >= 1, action
    if decision.status is not None:
        status = json.loads(json.dumps(decision.status.to_dict(), allow_nan=False))
        # what the API server stores reads back as the same status: else every poll would write
        assert AgentTaskStatus.from_dict(status) == decision.status, status
        assert len(status.get("message", "").encode()) <= 4096
        assert len(json.dumps(status)) < 512 * 1024
        # a merge patch would delete a null member: customInfo has none; outputs keep the
        # agent's nulls (answers.outputs_json), and the controller writes a status holding one
        # with a JSON patch (controller/backend.py; test_real_plugins_operator reads them back
        # from the real API server)
        assert not _has_null_member(status.get("customInfo")), status.get("customInfo")
        if _has_null_member(status.get("outputs")):
            assert isinstance(status_write({}, status), list), "a null output needs the JSON patch"
        for text in _strings(status):
            for secret in secrets:
                assert secret not in text, (secret, text[:200])
    for event in decision.events:
        assert event.type in ("Normal", "Warning") and event.reason
        for secret in secrets:
            assert secret not in event.message


_PREPARED: dict[str, Any] = {}


def _prepare(view: AgentTask) -> Any:
    """prepare() once per distinct spec (the pools repeat specs; drivers cache per uid too)."""
    key = repr((view.spec, str(view.spec_error)))
    if key not in _PREPARED:
        try:
            _PREPARED[key] = prepare(view)
        except PrepareFailure as e:
            _PREPARED[key] = e
    return _PREPARED[key]


def context(view: AgentTask, secrets: list[str], budget: int, last_call: float | None) -> Context:
    prepared = _prepare(view)
    if isinstance(prepared, PrepareFailure):
        return Context(signer=SIGNER, failure=prepared, settings=Settings(transient_budget=budget), last_call=last_call)
    return Context(signer=SIGNER, prepared=prepared, settings=Settings(transient_budget=budget),
                   secret_values=tuple(secrets), last_call=last_call)


def _apply(view: AgentTask, decision: Decision) -> AgentTask:
    if decision.status is not None:
        stored = json.loads(json.dumps(decision.status.to_dict()))
        view = dataclasses.replace(view, status=AgentTaskStatus.from_dict(stored))
    if decision.metadata is not None and decision.metadata.create_pending is not None:
        annotations = {names.ANNOTATION_CREATE_PENDING: str(decision.metadata.create_pending)}
        view = dataclasses.replace(view, metadata=dataclasses.replace(view.metadata, annotations=annotations))
    return view


_annotations = st.dictionaries(st.sampled_from([names.ANNOTATION_CREATE_PENDING, names.ANNOTATION_SKIP_AGENT_DELETE]),
                               st.sampled_from(["1", "2", "true", "x", ""]), max_size=2)
_finalizers = st.sampled_from([(), (names.FINALIZER,), ("other/finalizer", names.FINALIZER)])
_generations = st.integers(1, 5)
_creation = st.one_of(st.none(), st.floats(NOW - 10**6, NOW + 10))
_budgets = st.integers(1, 6)
_last_calls = st.one_of(st.none(), st.floats(NOW - 600, NOW))
_forced = st.sampled_from([ActionKind.CREATE, ActionKind.GET, ActionKind.DO, ActionKind.DELETE])
_later = st.floats(0, 3600)
_STATUSES = statuses(UID)
_TASK_SPECS = task_specs()


@st.composite
def scenarios(draw: st.DrawFn, deleting: bool = False) -> tuple[AgentTask, Context, list[str], Answer, ActionKind, float]:
    secrets = draw(secrets_st)
    created = draw(_creation)
    meta: dict[str, Any] = {
        "namespace": "fuzz", "name": "task", "uid": UID, "generation": draw(_generations),
        "annotations": draw(_annotations), "finalizers": list(draw(_finalizers)),
        "creationTimestamp": format_time(created) if created is not None else None,
        "deletionTimestamp": format_time(NOW) if deleting or draw(ONE_IN_8) else None,
    }
    # as the controller reads a stored object: a spec the model rejects becomes spec_error
    view = load_stored_agent_task({"metadata": meta, "spec": draw(_TASK_SPECS), "status": draw(_STATUSES)})
    ctx = context(view, secrets, draw(_budgets), draw(_last_calls))
    return view, ctx, secrets, draw(answers), draw(_forced), draw(_later)


def _run(scenario: tuple[AgentTask, Context, list[str], Answer, ActionKind, float]) -> None:
    view, ctx, secrets, answer, forced, later = scenario
    first = decide(view, ctx, NOW)
    check(first, secrets)
    if ctx.prepared is None:
        return
    view = _apply(view, first)
    kind = first.action.kind
    action = first.action if kind in (ActionKind.CREATE, ActionKind.GET, ActionKind.DO, ActionKind.DELETE) \
        else Action(forced, attempt=view.attempt, purpose="timeout" if forced == ActionKind.DELETE else "")
    second = absorb(view, ctx, action, answer, NOW + later)
    check(second, secrets)
    if isinstance(answer.error, TransientAgentError) and second.status is not None:
        # whatever the agent's retry hint, a transient error is retried: it never ends the task
        was_terminal = view.status.terminal
        assert was_terminal or not second.status.terminal, second.status.message
    third = decide(_apply(view, second), ctx, NOW + later + 1)  # and the driver decides again
    check(third, secrets)


@FUZZ
@given(scenario=scenarios())
def test_decide_and_absorb_never_raise_and_always_return_a_storable_status(scenario: Any) -> None:
    _run(scenario)


@settings(max_examples=2_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios(deleting=True))
def test_deletion_path_never_raises_and_always_returns_a_storable_status(scenario: Any) -> None:
    _run(scenario)
