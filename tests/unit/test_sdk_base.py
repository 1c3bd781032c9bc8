"""The SDK value types and base classes behave like flytekit's base_agent."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2

from agent_operator.sdk import (
    AgentBase,
    AsyncAgentBase,
    FlyteAgentNotFound,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskCategory,
    TaskExecution,
    TaskLog,
    TransientAgentError,
    convert_to_flyte_phase,
    invoke,
    is_terminal_phase,
)


@dataclass
class JobMeta(ResourceMeta):
    job_id: str
    region: str = "local"


@dataclass
class Inner:
    name: str
    sizes: list[int]


@dataclass
class NestedMeta(ResourceMeta):
    inner: Inner
    extras: dict[str, Inner] = field(default_factory=dict)
    maybe: Inner | None = None
    ratio: float = 1.0


class EchoAsync(AsyncAgentBase):
    def __init__(self) -> None:
        super().__init__(task_type_name="echo", metadata_type=JobMeta)

    def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        return JobMeta(job_id="j1")

    def get(self, resource_meta, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED)

    def delete(self, resource_meta, **kwargs):
        return None


class NamedSync(SyncAgentBase):
    name = "Named Sync Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="named", task_type_version=2)

    def do(self, task_template, output_prefix, inputs=None, **kwargs):
        return Resource(phase=TaskExecution.SUCCEEDED)


def test_task_category_is_a_hashable_value_with_flytekit_string_form() -> None:
    assert TaskCategory("sensor") == TaskCategory(name="sensor", version=0)
    assert len({TaskCategory("a", 1), TaskCategory("a", 1), TaskCategory("a", 2)}) == 2
    assert str(TaskCategory("sensor", 3)) == "sensor_v3"
    assert TaskCategory("x", 1).to_flyte_idl() == agent_pb2.TaskCategory(name="x", version=1)
    with pytest.raises(AttributeError):
        TaskCategory("x").name = "y"  # type: ignore[misc]


def test_agent_name_defaults_to_class_name_unless_set() -> None:
    assert EchoAsync().name == "EchoAsync"
    assert NamedSync().name == "Named Sync Agent"


def test_agent_exposes_task_category_from_constructor_arguments() -> None:
    agent = NamedSync()
    assert agent.task_category == TaskCategory("named", 2)
    assert (agent.task_type_name, agent.task_type_version) == ("named", 2)
    assert EchoAsync().metadata_type is JobMeta


def test_async_agent_rejects_metadata_type_that_is_not_resource_meta() -> None:
    class Bad(AsyncAgentBase):
        def create(self, *a, **k): ...
        def get(self, *a, **k): ...
        def delete(self, *a, **k): ...

    with pytest.raises(TypeError, match="ResourceMeta subclass"):
        Bad(task_type_name="bad", metadata_type=dict)  # type: ignore[arg-type]


def test_agent_without_required_methods_cannot_be_instantiated() -> None:
    class Half(AsyncAgentBase):
        def create(self, *a, **k): ...

    with pytest.raises(TypeError, match="abstract"):
        Half(task_type_name="half", metadata_type=JobMeta)  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        SyncAgentBase(task_type_name="x")  # type: ignore[abstract]


def test_empty_task_type_name_is_rejected() -> None:
    class Plain(AgentBase):
        pass

    with pytest.raises(ValueError, match="task_type_name"):
        Plain(task_type_name="")
    assert Plain(task_type_name="p").task_category == TaskCategory("p")


def test_resource_meta_encodes_to_stable_sorted_json() -> None:
    a = JobMeta(job_id="j-1", region="eu")
    assert a.encode() == b'{"job_id":"j-1","region":"eu"}'
    assert JobMeta.decode(a.encode()) == a


def test_resource_meta_decode_rebuilds_nested_dataclasses() -> None:
    meta = NestedMeta(
        inner=Inner("a", [1, 2]), extras={"k": Inner("b", [])}, maybe=Inner("c", [3]), ratio=2.0
    )
    back = NestedMeta.decode(meta.encode())
    assert back == meta
    assert isinstance(back.extras["k"], Inner)
    assert NestedMeta.decode(b'{"inner":{"name":"x","sizes":[]},"ratio":2}').ratio == 2.0


def test_resource_meta_decode_names_unknown_fields_and_bad_json() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['zone'\]"):
        JobMeta.decode(b'{"job_id":"1","zone":"x"}')
    with pytest.raises(ValueError, match="not JSON"):
        JobMeta.decode(b"\xff")


def test_resource_round_trips_through_flyteidl() -> None:
    outputs = literals_pb2.LiteralMap()
    outputs.literals["n"].scalar.primitive.integer = 7
    res = Resource(
        phase=TaskExecution.RUNNING,
        message="halfway",
        log_links=[TaskLog(name="console", uri="http://127.0.0.1/job/1")],
        outputs=outputs,
        custom_info={"job": {"id": "1", "tags": ["a"]}},
    )
    pb = res.to_flyte_idl()
    assert isinstance(pb, agent_pb2.Resource)
    assert pb.phase == TaskExecution.RUNNING
    assert pb.log_links[0].uri == "http://127.0.0.1/job/1"
    back = Resource.from_flyte_idl(pb)
    assert back == res
    assert Resource.from_flyte_idl(agent_pb2.Resource.FromString(pb.SerializeToString())) == res


def test_empty_resource_round_trips_with_none_fields() -> None:
    res = Resource(phase=TaskExecution.SUCCEEDED)
    pb = res.to_flyte_idl()
    assert not pb.HasField("outputs") and not pb.HasField("custom_info")
    assert Resource.from_flyte_idl(pb) == res


def test_transient_error_carries_retry_after_hint() -> None:
    err = TransientAgentError("throttled", retry_after=2.5)
    assert str(err) == "throttled" and err.retry_after == 2.5
    assert TransientAgentError("down").retry_after is None
    with pytest.raises(ValueError):
        TransientAgentError("x", retry_after=-1)


def test_agent_not_found_has_timestamp_like_flytekit() -> None:
    err = FlyteAgentNotFound("missing", timestamp=12.0)
    assert err.timestamp == 12.0 and "missing" in str(err)
    assert FlyteAgentNotFound("x").timestamp > 0


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("Succeeded", TaskExecution.SUCCEEDED),
        ("DONE", TaskExecution.SUCCEEDED),
        ("failed", TaskExecution.FAILED),
        ("cancelled", TaskExecution.FAILED),
        ("internal_error", TaskExecution.RETRYABLE_FAILED),
        ("running", TaskExecution.RUNNING),
        ("pending", TaskExecution.INITIALIZING),
    ],
)
def test_state_words_map_to_flyte_phases(state: str, phase: int) -> None:
    assert convert_to_flyte_phase(state) == phase


def test_unknown_state_word_is_an_error() -> None:
    with pytest.raises(ValueError, match="Unrecognized state: weird"):
        convert_to_flyte_phase("weird")


def test_terminal_phases() -> None:
    assert all(is_terminal_phase(p) for p in (3, 4, 5, 8))
    assert not any(is_terminal_phase(p) for p in (0, 1, 2, 6, 7))


def test_invoke_runs_plain_methods_off_the_event_loop_thread() -> None:
    seen: dict[str, int] = {}

    def plain(x: int) -> int:
        seen["thread"] = threading.get_ident()
        return x + 1

    async def coro(x: int) -> int:
        seen["coro_thread"] = threading.get_ident()
        return x * 2

    async def main() -> tuple[int, int, int]:
        seen["loop"] = threading.get_ident()
        return await invoke(plain, x=1), await invoke(coro, x=3), await invoke(lambda: coro(x=4))

    assert asyncio.run(main()) == (2, 6, 8)
    assert seen["thread"] != seen["loop"]
    assert seen["coro_thread"] == seen["loop"]


def test_plain_outputs_are_typed_by_declared_output_types() -> None:
    from flyteidl.core import types_pb2

    from agent_operator.serialization import literal_map_to_plain

    generic = types_pb2.LiteralType(simple=types_pb2.SimpleType.STRUCT)
    res = Resource(phase=TaskExecution.SUCCEEDED, outputs={"info": {"a": 1}, "n": 2})
    typed = res.to_flyte_idl({"info": generic}).outputs
    guessed = res.to_flyte_idl().outputs
    assert typed.literals["info"].scalar.WhichOneof("value") == "generic"
    assert guessed.literals["info"].scalar.binary.tag == "msgpack"  # flytekit's encoding of a dict
    assert literal_map_to_plain(typed) == {"info": {"a": 1.0}, "n": 2}
    assert literal_map_to_plain(guessed) == {"info": {"a": 1}, "n": 2}
