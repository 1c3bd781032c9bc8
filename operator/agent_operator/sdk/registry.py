"""The process-wide agent registry and agent discovery.

Like flytekit, the registry is class-level state: an agent module may register itself at
import time (``AgentRegistry.register(MyAgent())``) and any caller can look it up later.
Discovery adds two explicit ways in: ``--agent module:Class`` specs and Python entry
points in the group ``agent_operator.agents`` (value ``module:Class`` or
``module:instance``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, ClassVar, Union, cast

from flyteidl.admin import agent_pb2

from agent_operator.sdk.base import AgentBase, AsyncAgentBase, SyncAgentBase
from agent_operator.sdk.errors import AgentLoadError, FlyteAgentNotFound
from agent_operator.sdk.resource import TaskCategory

log = logging.getLogger(__name__)

#: entry-point group scanned by :func:`load_agents`
ENTRY_POINT_GROUP = "agent_operator.agents"

#: an agent instance the registry holds (not flyteidl's ``admin.Agent`` message, which is
#: what ``agent_operator.sdk.Agent`` is, as in flytekit)
AnyAgent = Union[AsyncAgentBase, SyncAgentBase]
#: the old name of :data:`AnyAgent`, kept for bridges/ (imports it) until they switch
Agent = AnyAgent


class AgentRegistry:
    """This is the registry for all agents, keyed by task category.

    One agent per category; the metadata view (``list_agents``) groups categories by agent
    name as flyteidl ``admin.Agent`` messages.
    """

    _REGISTRY: ClassVar[dict[TaskCategory, AnyAgent]] = {}
    _METADATA: ClassVar[dict[str, agent_pb2.Agent]] = {}
    #: callables that may explain a missing category (e.g. "install the flytekit extra")
    _NOT_FOUND_HINTS: ClassVar[list[Callable[[TaskCategory], str | None]]] = []
    #: the hints among them whose answer means "may appear later" (FlyteAgentNotFound.transient)
    _TRANSIENT_HINTS: ClassVar[list[Callable[[TaskCategory], str | None]]] = []

    @staticmethod
    def register(agent: AnyAgent, override: bool = False) -> None:
        """Register ``agent`` for its task category.

        A second agent for the same category is a ``ValueError`` unless ``override`` (or
        unless it is the very same object, which makes repeated imports harmless).
        """
        if not isinstance(agent, (AsyncAgentBase, SyncAgentBase)):
            raise TypeError(f"expected an AsyncAgentBase or SyncAgentBase instance, got {agent!r}")
        category = agent.task_category
        existing = AgentRegistry._REGISTRY.get(category)
        if existing is agent:
            return
        if existing is not None and not override:
            raise ValueError(
                f"Duplicate agent for task type: {category} (already served by {existing.name!r}; "
                f"pass override=True to replace it with {agent.name!r})"
            )
        if existing is not None:
            AgentRegistry._drop_category(existing.name, category)
        AgentRegistry._REGISTRY[category] = agent

        pb_category = category.to_flyte_idl()
        meta = AgentRegistry._METADATA.get(agent.name)
        if meta is None:
            meta = agent_pb2.Agent(name=agent.name, is_sync=isinstance(agent, SyncAgentBase))
            AgentRegistry._METADATA[agent.name] = meta
        if all((c.name, c.version) != (category.name, category.version) for c in meta.supported_task_categories):
            meta.supported_task_categories.append(pb_category)
            meta.supported_task_types.append(category.name)
        log.info("registered agent %r for task category %s", agent.name, category)

    @staticmethod
    def _drop_category(agent_name: str, category: TaskCategory) -> None:
        """Remove ``category`` from an agent's metadata after an override took it away."""
        meta = AgentRegistry._METADATA.get(agent_name)
        if meta is None:
            return
        kept = [c for c in meta.supported_task_categories if (c.name, c.version) != (category.name, category.version)]
        del meta.supported_task_categories[:]
        meta.supported_task_categories.extend(kept)
        del meta.supported_task_types[:]
        meta.supported_task_types.extend(c.name for c in kept)
        if not kept:
            del AgentRegistry._METADATA[agent_name]

    @staticmethod
    def unregister(task_type_name: str, task_type_version: int = 0) -> AnyAgent | None:
        """Remove whatever agent serves the category; returns it (None when none did).

        Used when configuration hands a task type to another source (see
        ``agent_operator.bridges.selection``).
        """
        category = TaskCategory(name=task_type_name, version=task_type_version)
        agent = AgentRegistry._REGISTRY.pop(category, None)
        if agent is not None:
            AgentRegistry._drop_category(agent.name, category)
        return agent

    @staticmethod
    def get_agent(task_type_name: str, task_type_version: int = 0) -> AnyAgent:
        """The agent serving ``task_type_name``/``task_type_version``, or FlyteAgentNotFound."""
        category = TaskCategory(name=task_type_name, version=task_type_version)
        agent = AgentRegistry._REGISTRY.get(category)
        if agent is None:
            known = ", ".join(sorted(str(c) for c in AgentRegistry._REGISTRY)) or "none"
            answers = [(hint, hint(category)) for hint in list(AgentRegistry._NOT_FOUND_HINTS)]
            hints = [text for _, text in answers if text]
            transient = any(text and hint in AgentRegistry._TRANSIENT_HINTS for hint, text in answers)
            raise FlyteAgentNotFound(
                f"Cannot find agent for task category: {category}. Registered task types: {known}."
                + "".join(f" {h}" for h in hints),
                transient=transient,
            )
        return agent

    @staticmethod
    def add_not_found_hint(hint: Callable[[TaskCategory], str | None], *, transient: bool = False) -> None:
        """Append ``hint(category)`` (when not None) to every "cannot find agent" message.

        Lets an optional bridge say what to install or enable for a type it could serve.
        With ``transient`` an answer also marks the error :attr:`FlyteAgentNotFound.transient`
        (the type may appear once the bridge can ask its source again), so the operator
        retries the lookup instead of failing the task.  Adding the same callable twice has
        no effect.
        """
        if hint not in AgentRegistry._NOT_FOUND_HINTS:
            AgentRegistry._NOT_FOUND_HINTS.append(hint)
        if transient and hint not in AgentRegistry._TRANSIENT_HINTS:
            AgentRegistry._TRANSIENT_HINTS.append(hint)

    @staticmethod
    def remove_not_found_hint(hint: Callable[[TaskCategory], str | None]) -> None:
        """Undo :meth:`add_not_found_hint` (no error when it was not added)."""
        if hint in AgentRegistry._NOT_FOUND_HINTS:
            AgentRegistry._NOT_FOUND_HINTS.remove(hint)
        if hint in AgentRegistry._TRANSIENT_HINTS:
            AgentRegistry._TRANSIENT_HINTS.remove(hint)

    @staticmethod
    def list_agents() -> list[agent_pb2.Agent]:
        """One flyteidl ``admin.Agent`` per registered agent name (copies)."""
        out = []
        for meta in list(AgentRegistry._METADATA.values()):  # remote discovery registers from a thread
            copy = agent_pb2.Agent()
            copy.CopyFrom(meta)
            out.append(copy)
        return out

    @staticmethod
    def get_agent_metadata(name: str) -> agent_pb2.Agent:
        """The ``admin.Agent`` message of the agent called ``name``, or FlyteAgentNotFound."""
        meta = AgentRegistry._METADATA.get(name)
        if meta is None:
            known = ", ".join(sorted(AgentRegistry._METADATA)) or "none"
            raise FlyteAgentNotFound(f"Cannot find agent for name: {name}. Registered agents: {known}.")
        copy = agent_pb2.Agent()
        copy.CopyFrom(meta)
        return copy

    # flytekit >= 1.15 spells these "connector"; keep both so either import ports.
    get_connector = get_agent
    list_connectors = list_agents
    get_connector_metadata = get_agent_metadata

    @staticmethod
    def agents() -> list[AnyAgent]:
        """The registered agent objects, ordered by task category."""
        return [AgentRegistry._REGISTRY[c] for c in sorted(AgentRegistry._REGISTRY, key=str)]

    @staticmethod
    @contextlib.contextmanager
    def snapshot() -> Iterator[None]:
        """Restore the registry to its current content on exit (for tests and tools)."""
        saved_registry = dict(AgentRegistry._REGISTRY)
        saved_hints = list(AgentRegistry._NOT_FOUND_HINTS)
        saved_transient = list(AgentRegistry._TRANSIENT_HINTS)
        saved_meta = {}
        for name, meta in AgentRegistry._METADATA.items():
            copy = agent_pb2.Agent()
            copy.CopyFrom(meta)
            saved_meta[name] = copy
        try:
            yield
        finally:
            AgentRegistry._REGISTRY.clear()
            AgentRegistry._REGISTRY.update(saved_registry)
            AgentRegistry._METADATA.clear()
            AgentRegistry._METADATA.update(saved_meta)
            AgentRegistry._NOT_FOUND_HINTS[:] = saved_hints
            AgentRegistry._TRANSIENT_HINTS[:] = saved_transient


def _resolve(obj: Any, origin: str) -> AnyAgent:
    """Turn a loaded object (agent class or instance) into a registered agent instance."""
    if isinstance(obj, type) and issubclass(obj, AgentBase):
        for registered in AgentRegistry._REGISTRY.values():
            # the module registered an instance of this class on import: reuse it
            if type(registered) is obj:
                return registered
        try:
            obj = cast(Any, obj)()
        except TypeError as e:
            raise AgentLoadError(
                f"{origin}: cannot instantiate {obj.__qualname__} without arguments ({e}); "
                f"point the spec at a module-level instance instead (module:instance)"
            ) from e
    if not isinstance(obj, (AsyncAgentBase, SyncAgentBase)):
        raise AgentLoadError(
            f"{origin}: {obj!r} is neither an agent class nor an agent instance "
            f"(expected a subclass or instance of AsyncAgentBase / SyncAgentBase)"
        )
    AgentRegistry.register(obj)
    return obj


def load_agent_spec(spec: str) -> AnyAgent:
    """Import ``module:Class`` (or ``module:instance``, dotted attributes allowed) and register it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AgentLoadError(f"agent spec {spec!r}: expected 'module:Class' or 'module:instance'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise AgentLoadError(f"agent spec {spec!r}: cannot import module {module_name!r}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise AgentLoadError(f"agent spec {spec!r}: {module_name!r} has no attribute {attr!r}") from e
    return _resolve(obj, f"agent spec {spec!r}")


def iter_entry_points(group: str = ENTRY_POINT_GROUP) -> list[metadata.EntryPoint]:
    """Installed entry points of ``group``, sorted by name for a stable load order."""
    return sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)


def load_agents(
    specs: Iterable[str] = (), *, entry_points: bool = True, group: str = ENTRY_POINT_GROUP
) -> list[AnyAgent]:
    """Load and register agents from entry points (unless disabled) and explicit specs.

    Returns the loaded agents in load order, without duplicates.  A broken spec or entry
    point raises :class:`AgentLoadError` naming it: an operator silently missing an agent
    would leave AgentTasks of that type failing with a confusing "not found".
    """
    loaded: list[AnyAgent] = []

    def add(agent: AnyAgent) -> None:
        if all(agent is not a for a in loaded):
            loaded.append(agent)

    if entry_points:
        for ep in iter_entry_points(group):
            origin = f"entry point {ep.name!r} ({ep.value}) in group {group!r}"
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - any import-time failure names the entry point
                raise AgentLoadError(f"{origin}: {type(e).__name__}: {e}") from e
            add(_resolve(obj, origin))
    for spec in specs:
        add(load_agent_spec(spec))
    return loaded
