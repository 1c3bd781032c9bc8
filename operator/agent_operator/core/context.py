"""What a decision depends on besides the object: policy knobs, the prepared spec, the
signer, and what this process remembers about the object (when it last called the agent).

:class:`ContextFactory` is the one way drivers get a :class:`Context`: it prepares each
object once (the spec is immutable) and keeps the result by uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_operator.core.prepare import AgentLookup, PrepareFailure, Prepared, prepare
from agent_operator.core.signing import Signer
from agent_operator.crd.phases import Reason
from agent_operator.crd.resource import AgentTask
from agent_operator.crd.status import MAX_INLINE_OUTPUTS
from agent_operator.sdk import AgentRegistry

MAX_INLINE_OUTPUT_BYTES = MAX_INLINE_OUTPUTS


@dataclass(frozen=True)
class Settings:
    """Operator-wide policy knobs (flags of ``agent-operator run``)."""

    default_poll_interval: float = 10.0
    min_poll_interval: float = 1.0
    jitter: float = 0.1
    transient_budget: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    max_inline_output_bytes: int = MAX_INLINE_OUTPUT_BYTES


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the object that a decision depends on."""

    signer: Signer
    prepared: Prepared | None = None
    failure: PrepareFailure | None = None
    settings: Settings = field(default_factory=Settings)
    #: secret values handed to the agent; scrubbed from every message
    secret_values: tuple[str, ...] = ()
    #: when the last agent call for this object was made (in memory; None after a restart)
    last_call: float | None = None
    #: when this process first handled the object (in memory)
    first_seen: float | None = None


class ContextFactory:
    """Builds the :class:`Context` of an object, preparing it once per uid.

    A failure to find the task's agent is not kept: an agent may still be registered or
    discovered later (remote agent services), so the next decision looks again.
    """

    def __init__(self, signer: Signer, settings: Settings | None = None,
                 lookup: AgentLookup = AgentRegistry.get_agent) -> None:
        self.signer = signer
        self.settings = settings or Settings()
        self._lookup = lookup
        self._prepared: dict[str, Prepared | PrepareFailure] = {}

    def prepared(self, task: AgentTask) -> Prepared | PrepareFailure:
        """The prepared task (or why it cannot run), from the cache when known."""
        entry = self._prepared.get(task.uid)
        if entry is None:
            try:
                entry = prepare(task, self._lookup)
            except PrepareFailure as e:
                entry = e
            if not (isinstance(entry, PrepareFailure) and entry.reason == Reason.AGENT_NOT_FOUND):
                self._prepared[task.uid] = entry
        return entry

    def __call__(self, task: AgentTask, last_call: float | None = None, *, first_seen: float | None = None,
                 secret_values: tuple[str, ...] = ()) -> Context:
        """The context to decide about ``task`` in (``last_call``, ``first_seen`` and
        ``secret_values``: what the driver knows of it, see :class:`Context`)."""
        entry = self.prepared(task)
        if isinstance(entry, PrepareFailure):
            return Context(signer=self.signer, failure=entry, settings=self.settings, last_call=last_call,
                           first_seen=first_seen, secret_values=secret_values)
        return Context(signer=self.signer, prepared=entry, settings=self.settings, last_call=last_call,
                       first_seen=first_seen, secret_values=secret_values)

    def forget(self, uid: str) -> None:
        """Drop what is kept about the object with ``uid`` (deleted)."""
        self._prepared.pop(uid, None)
        self.signer.forget(uid)
