"""Our SDK has every class, method, parameter and property of flytekit's base_agent seed.

The reference is flytekit's API page for ``flytekit.extend.backend.base_agent`` (the
team's seed ``base_agent.md``, copied to ``tests/fixtures/flytekit/base_agent.seed.md`` so
the test always runs).  Every class it lists must be implemented or excluded below with
a reason, so a new class in the seed fails this test until someone decides.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import message

import agent_operator
from agent_operator import sdk

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit" / "base_agent.seed.md"
PREFIX = "flytekit.extend.backend.base_agent."

#: names the seed lists only because base_agent.py imports them; not part of the agent API
OUT_OF_SCOPE = {
    "ABC": "stdlib abc",
    "Any": "typing.Any",
    "OrderedDict": "stdlib collections",
    "partial": "stdlib functools",
    "FrameType": "stdlib types",
    "FlyteContext": "flytekit runtime context (no flytekit here)",
    "FlyteContextManager": "flytekit runtime context",
    "ExecutionState": "flytekit runtime context",
    "ImageConfig": "flytekit serialization settings",
    "SerializationSettings": "flytekit serialization settings",
    "PythonTask": "flytekit task classes (the bridges room runs them)",
    "PythonFunctionTask": "flytekit task classes",
    "TypeEngine": "flytekit type engine (agent_operator.serialization does conversion)",
    "Progress": "rich progress bar",
    "RichHandler": "rich logging",
    "Struct": "google.protobuf.struct_pb2.Struct, imported by agents directly",
}
#: flytekit model classes we replace by the flyteidl message they wrap: fields must match
FLYTEIDL_MESSAGES = {"LiteralMap", "TaskTemplate", "TaskExecutionMetadata", "Agent", "TaskExecution", "TaskLog"}


@dataclass
class Signature:
    params: list[str]


@dataclass
class SeedClass:
    name: str
    constructor: Signature | None = None
    methods: dict[str, Signature] = field(default_factory=dict)
    properties: list[str] = field(default_factory=list)


def _signature(block: str) -> Signature:
    params = []
    for line in block.splitlines()[1:]:
        m = re.match(r"^\s+(\w+)(?::.*)?,\s*$", line)
        if m:
            params.append(m.group(1))
    return Signature(params)


def parse_seed(text: str) -> dict[str, SeedClass]:
    """Classes of the seed page with constructor, methods and properties."""
    directory = text.split("\n## ", 2)[1]
    listed = set(re.findall(r"^\| \[`(\w+)`\]", directory, re.M)) | set(re.findall(r"^\* \[`(\w+)`\]", directory, re.M))
    classes: dict[str, SeedClass] = {}
    for chunk in re.split(rf"^## {re.escape(PREFIX)}", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        name = name.strip()
        seed = SeedClass(name)
        head, _, rest = body.partition("### Methods")
        ctor = re.search(rf"```python\ndef {name}\((.*?)\)(?::)?\n```", head, re.S)
        if ctor:
            seed.constructor = _signature(ctor.group(0))
        for meth, block in re.findall(r"^#### (\w+)\(\)\n\n```python\n(def \w+\(.*?\)(?::)?)\n```", rest, re.M | re.S):
            seed.methods[meth] = _signature(block)
        props = body.partition("### Properties")[2]
        seed.properties = re.findall(r"^\| (\w+) \|", props, re.M)
        seed.properties = [p for p in seed.properties if p != "Property"]
        classes[name] = seed
    assert listed == set(classes), f"directory and sections disagree: {listed ^ set(classes)}"
    return classes


@pytest.fixture(scope="module")
def seed() -> dict[str, SeedClass]:
    return parse_seed(SEED.read_text())


def _ours(name: str) -> object:
    return getattr(sdk, name)


def _check_params(where: str, ours: inspect.Signature, theirs: Signature) -> list[str]:
    problems = []
    ordered = [
        p for p in ours.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls")
    ]
    names = [p.name for p in ordered]
    expected = [p for p in theirs.params if p not in ("kwargs", "args")]
    if names[: len(expected)] != expected:
        problems.append(f"{where}: parameters {names}, seed has {expected}")
    for extra in ordered[len(expected):]:
        if extra.name not in expected and extra.default is inspect.Parameter.empty:
            problems.append(f"{where}: extra parameter {extra.name!r} has no default")
    kinds = {p.kind for p in ours.parameters.values()}
    if "kwargs" in theirs.params and inspect.Parameter.VAR_KEYWORD not in kinds:
        problems.append(f"{where}: missing **kwargs")
    if "args" in theirs.params and inspect.Parameter.VAR_POSITIONAL not in kinds:
        problems.append(f"{where}: missing *args")
    return problems


def test_seed_is_parsed_completely(seed: dict[str, SeedClass]) -> None:
    assert seed["AsyncAgentBase"].methods["create"].params == [
        "task_template", "output_prefix", "inputs", "task_execution_metadata", "kwargs",
    ]
    assert seed["AgentRegistry"].methods.keys() == {"get_agent", "get_agent_metadata", "list_agents", "register"}
    assert seed["TaskCategory"].properties == ["name", "version"]


def test_every_seed_class_is_implemented_or_excluded_with_a_reason(seed: dict[str, SeedClass]) -> None:
    missing = [n for n in seed if n not in OUT_OF_SCOPE and not hasattr(sdk, n)]
    assert missing == []
    assert set(OUT_OF_SCOPE) <= set(seed), "stale exclusions"


def test_seed_protocol_messages_are_the_flyteidl_messages(seed: dict[str, SeedClass]) -> None:
    problems = []
    for name in FLYTEIDL_MESSAGES:
        cls = _ours(name)
        assert isinstance(cls, type) and issubclass(cls, message.Message), name
        fields = set(cls.DESCRIPTOR.fields_by_name) | set(cls.DESCRIPTOR.enum_values_by_name if hasattr(cls.DESCRIPTOR, "enum_values_by_name") else ())
        ctor = seed[name].constructor
        for param in ctor.params if ctor else []:
            if param not in fields:
                problems.append(f"{name}: seed field {param!r} is not a field of {cls.DESCRIPTOR.full_name}")
    assert problems == []


def test_constructors_methods_and_properties_match_the_seed(seed: dict[str, SeedClass]) -> None:
    problems: list[str] = []
    for name, ref in seed.items():
        if name in OUT_OF_SCOPE or name in FLYTEIDL_MESSAGES:
            continue
        cls = _ours(name)
        assert isinstance(cls, type), name
        if ref.constructor is not None:
            problems += _check_params(f"{name}()", inspect.signature(cls), ref.constructor)
        for meth, sig in ref.methods.items():
            ours = getattr(cls, meth, None)
            if ours is None:
                problems.append(f"{name}.{meth}: missing")
                continue
            problems += _check_params(f"{name}.{meth}()", inspect.signature(ours), sig)
        field_names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        for prop in ref.properties:
            if not hasattr(cls, prop) and prop not in field_names:
                problems.append(f"{name}.{prop}: missing property")
    assert problems == []


def test_package_root_reexports_the_agent_api() -> None:
    for name in ("AgentBase", "AsyncAgentBase", "SyncAgentBase", "AgentRegistry", "Resource", "ResourceMeta",
                 "TaskCategory", "FlyteAgentNotFound", "TransientAgentError", "TaskExecutionMetadata",
                 "AsyncAgentExecutorMixin", "SyncAgentExecutorMixin"):
        assert getattr(agent_operator, name) is getattr(sdk, name)
    with pytest.raises(AttributeError):
        agent_operator.NoSuchThing  # noqa: B018
