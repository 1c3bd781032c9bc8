"""Executor mixins run a task through its registered agent in-process, like flytekit's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyteidl.core import literals_pb2, tasks_pb2

from agent_operator.sdk import (
    AgentRegistry,
    AsyncAgentBase,
    AsyncAgentExecutorMixin,
    FlyteUserException,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    SyncAgentExecutorMixin,
    TaskExecution,
)
from agent_operator.serialization import literal_map_to_plain, load_task_template


@dataclass
class CountMeta(ResourceMeta):
    target: int


class CountdownAgent(AsyncAgentBase):
    """Finishes after ``target`` polls; records calls so tests can see the protocol."""

    def __init__(self) -> None:
        super().__init__(task_type_name="countdown", metadata_type=CountMeta)
        self.calls: list[str] = []
        self.polls = 0
        self.on_get = None

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        self.calls.append("create")
        return CountMeta(target=inputs.literals["n"].scalar.primitive.integer)

    def get(self, resource_meta, **kwargs):
        self.calls.append("get")
        self.polls += 1
        if self.on_get:
            self.on_get()
        if resource_meta.target < 0:
            return Resource(phase=TaskExecution.FAILED, message="negative target")
        if self.polls >= resource_meta.target:
            return Resource(phase=TaskExecution.SUCCEEDED, outputs={"polls": self.polls, "info": {"ok": True}})
        return Resource(phase=TaskExecution.RUNNING)

    def delete(self, resource_meta, **kwargs):
        self.calls.append("delete")


class UpperAgent(SyncAgentBase):
    def __init__(self) -> None:
        super().__init__(task_type_name="upper")

    def do(self, task_template, output_prefix, inputs=None, **kwargs):
        text = inputs.literals["s"].scalar.primitive.string_value
        if not text:
            return Resource(phase=TaskExecution.FAILED, message="empty")
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"s": text.upper()})


def _template(task_type: str, inputs: dict[str, str], outputs: dict[str, dict]) -> tasks_pb2.TaskTemplate:
    return load_task_template(
        {
            "id": {"name": f"{task_type}-task"},
            "type": task_type,
            "interface": {
                "inputs": {"variables": {k: {"type": {"simple": v}} for k, v in inputs.items()}},
                "outputs": {"variables": {k: {"type": t} for k, t in outputs.items()}},
            },
        }
    )


class CountdownTask(AsyncAgentExecutorMixin):
    poll_interval = 0.01
    task_template = _template(
        "countdown",
        {"n": "INTEGER"},
        {"polls": {"simple": "INTEGER"}, "info": {"simple": "STRUCT"}},
    )


class UpperTask(SyncAgentExecutorMixin):
    task_template = _template("upper", {"s": "STRING"}, {"s": {"simple": "STRING"}})


@pytest.fixture
def agents() -> Iterator[tuple[CountdownAgent, UpperAgent]]:
    with AgentRegistry.snapshot():
        countdown, upper = CountdownAgent(), UpperAgent()
        AgentRegistry.register(countdown, override=True)
        AgentRegistry.register(upper, override=True)
        yield countdown, upper


def test_async_mixin_polls_until_success_and_types_outputs_by_interface(agents) -> None:
    countdown, _ = agents
    out = CountdownTask().execute(n=3)
    assert countdown.calls == ["create", "get", "get", "get"]
    # "info" is declared as a generic STRUCT here, so it is not msgpack-encoded
    assert out.literals["info"].scalar.WhichOneof("value") == "generic"
    assert literal_map_to_plain(out) == {"polls": 3, "info": {"ok": True}}


def test_async_mixin_failure_raises_user_exception_with_agent_message(agents) -> None:
    with pytest.raises(FlyteUserException, match=r"countdown-task \(FAILED\) with error: negative target"):
        CountdownTask().execute(n=-1)


def test_async_mixin_interrupt_calls_delete_once_then_stops(agents) -> None:
    countdown, _ = agents
    task = CountdownTask()
    countdown.on_get = lambda: task.agent_signal_handler(task.resource_meta, 2, None)
    with pytest.raises(KeyboardInterrupt):
        task.execute(n=1000)
    assert countdown.calls == ["create", "get", "delete"]


def test_async_mixin_reads_outputs_file_when_agent_returns_none(agents, tmp_path: Path) -> None:
    class FileOutputAgent(CountdownAgent):
        def get(self, resource_meta, **kwargs):
            return Resource(phase=TaskExecution.SUCCEEDED)

    AgentRegistry.register(FileOutputAgent(), override=True)
    lm = literals_pb2.LiteralMap()
    lm.literals["polls"].scalar.primitive.integer = 9
    (tmp_path / "outputs.pb").write_bytes(lm.SerializeToString())
    task = CountdownTask()
    task.output_prefix = str(tmp_path)
    assert task.execute(n=1) == lm


def test_sync_mixin_runs_do_once(agents) -> None:
    assert literal_map_to_plain(UpperTask().execute(s="abc")) == {"s": "ABC"}
    with pytest.raises(FlyteUserException, match="empty"):
        UpperTask().execute(s="")


def test_mixin_checks_agent_kind_and_inputs(agents) -> None:
    class Mismatch(SyncAgentExecutorMixin):
        task_template = CountdownTask.task_template

    with pytest.raises(TypeError, match="not a sync agent"):
        Mismatch().execute(n=1)
    with pytest.raises(ValueError, match="inputs.n: expected integer"):
        CountdownTask().execute(n="three")
    with pytest.raises(TypeError, match="must provide a flyteidl TaskTemplate"):
        SyncAgentExecutorMixin().execute()


def test_async_mixin_off_main_thread_does_not_touch_signals(agents) -> None:
    result: dict[str, object] = {}

    def run() -> None:
        result["out"] = literal_map_to_plain(CountdownTask().execute(n=1))

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=60)
    assert result["out"] == {"polls": 1, "info": {"ok": True}}
