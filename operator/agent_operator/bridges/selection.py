"""Which agent serves a task type when a built-in and a bridged agent both claim it.

Sources are ``builtin`` (everything ``agent_operator.sdk.load_agents`` registers: the
operator's own agents, ``--agent`` specs, entry points), ``flytekit`` (the in-process
flytekit bridge), ``flyte2`` (the in-process Flyte 2 connector bridge) and ``remote`` / ``remote:<deployment>`` (a remote agent service).

The rule, applied by every bridge when it registers an agent:

1. a task type named in the selection (``--agent-source sensor=flytekit`` or the
   ``agentSources`` map of the remote config file) is served by that source only; the
   selected bridge replaces whatever was registered before it;
2. otherwise the first registration wins.  The CLI loads built-in agents first, then the
   flytekit bridge, then remote services, so without a selection built-ins win.

Keeping the decision in one explicit table (instead of "last import wins", as in a
flytekit process) means an operator upgrade that adds a built-in agent never silently
takes a task type away from a bridge an admin chose.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agent_operator.sdk import AgentRegistry, FlyteAgentNotFound, TaskCategory
from agent_operator.sdk.registry import Agent

log = logging.getLogger(__name__)

BUILTIN = "builtin"
FLYTEKIT = "flytekit"
FLYTE2 = "flyte2"
REMOTE = "remote"
_KINDS = (BUILTIN, FLYTEKIT, FLYTE2, REMOTE)


def parse_category(text: str) -> TaskCategory:
    """``sensor`` or ``sensor:1`` (task type and optional version) as a TaskCategory."""
    name, sep, version = text.strip().partition(":")
    if not name:
        raise ValueError(f"task type {text!r}: expected NAME or NAME:VERSION")
    if not sep:
        return TaskCategory(name=name)
    try:
        return TaskCategory(name=name, version=int(version))
    except ValueError:
        raise ValueError(f"task type {text!r}: version {version!r} is not an integer") from None


def parse_source(text: str) -> str:
    """Validate ``builtin``, ``flytekit``, ``remote`` or ``remote:<deployment>``."""
    kind, sep, detail = text.strip().partition(":")
    if kind not in _KINDS or (sep and (kind != REMOTE or not detail)):
        raise ValueError(
            f"agent source {text!r}: expected one of builtin, flytekit, remote, remote:<deployment>"
        )
    return text.strip()


def format_category(category: TaskCategory) -> str:
    """The ``NAME`` / ``NAME:VERSION`` spelling :func:`parse_category` reads."""
    return category.name if category.version == 0 else f"{category.name}:{category.version}"


@dataclass(frozen=True)
class AgentSourceSelection:
    """Task category -> chosen source; categories not listed follow first-registration-wins."""

    choices: Mapping[TaskCategory, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, specs: Iterable[str], base: Mapping[str, str] | None = None) -> "AgentSourceSelection":
        """Build from ``TYPE[:VERSION]=SOURCE`` specs; they override the ``base`` map (config file)."""
        choices: dict[TaskCategory, str] = {}
        for key, value in (base or {}).items():
            choices[parse_category(str(key))] = parse_source(str(value))
        for spec in specs:
            key, sep, value = spec.partition("=")
            if not sep:
                raise ValueError(f"--agent-source {spec!r}: expected TYPE[:VERSION]=SOURCE")
            choices[parse_category(key)] = parse_source(value)
        return cls(choices=MappingProxyType(choices))

    def chosen(self, category: TaskCategory) -> str | None:
        """The configured source for ``category``, if any."""
        return self.choices.get(category)

    def admits(self, category: TaskCategory, source: str) -> bool:
        """True when ``source`` may serve ``category`` under this selection."""
        chosen = self.chosen(category)
        if chosen is None:
            return True
        return source == chosen or (chosen == REMOTE and source.startswith(REMOTE + ":"))

    def register(self, agent: Agent, source: str) -> bool:
        """Register ``agent`` (coming from ``source``) if the rule lets it serve its category.

        Returns whether the agent is now the one serving its category.
        """
        category = agent.task_category
        try:
            current = AgentRegistry.get_agent(category.name, category.version)
        except FlyteAgentNotFound:
            current = None
        if current is agent:
            return True
        chosen = self.chosen(category)
        if chosen is not None:
            if not self.admits(category, source):
                _log_once(logging.INFO, "task type %s: %s agent %r not used (selected source: %s)",
                          category, source, agent.name, chosen)
                return False
            if current is not None:
                log.info("task type %s: %s agent %r replaces %r (selected source: %s)",
                         category, source, agent.name, current.name, chosen)
            AgentRegistry.register(agent, override=True)
            return True
        if current is not None:
            _log_once(
                logging.INFO,
                "task type %s is already served by %r; %s agent %r is not used "
                "(choose it with --agent-source %s=%s)",
                category, current.name, source, agent.name, format_category(category), source,
            )
            return False
        AgentRegistry.register(agent)
        return True


_logged: set[tuple[object, ...]] = set()


def _log_once(level: int, msg: str, *args: object) -> None:
    """Log a selection decision at ``level`` once; repeats (every discovery refresh) go to debug."""
    key = (msg, *map(str, args))
    log.log(level if key not in _logged else logging.DEBUG, msg, *args)
    _logged.add(key)


def source_of(agent: Agent) -> str:
    """The source an agent object comes from: ``builtin``, ``flytekit`` or ``remote:<deployment>``."""
    module = type(agent).__module__
    if module.startswith("agent_operator.bridges.flytekit"):
        return FLYTEKIT
    if module.startswith("agent_operator.bridges.flyte2sdk"):
        return FLYTE2
    if module.startswith("agent_operator.bridges.remote"):
        return f"{REMOTE}:{getattr(agent, 'deployment_id', '?')}"
    return BUILTIN


def add_selection_arg(parser: "argparse._ActionsContainer") -> None:
    """Add ``--agent-source`` once (several bridges' argument helpers call this)."""
    if "--agent-source" in parser._option_string_actions:  # noqa: SLF001 - argparse has no public lookup
        return
    parser.add_argument(
        "--agent-source",
        action="append",
        default=[],
        metavar="TYPE[:VERSION]=SOURCE",
        help="serve a task type only from this source: builtin, flytekit, flyte2, remote or remote:<deployment> "
        "(repeatable; unnamed types: the first loaded wins, built-ins first)",
    )

