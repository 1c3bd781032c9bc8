"""Errors an agent author meets or raises.

The operator sorts agent failures into exactly two kinds: *transient* (raise
:class:`TransientAgentError`; the operator retries the same call later) and everything
else (the task fails).  Keeping that decision with the agent author, who knows the
remote service, avoids guessing from exception types in the reconcile core.
"""

from __future__ import annotations

import enum
import time


class ErrorKind(str, enum.Enum):
    """The two kinds of agent failure; also the ``error_kind`` label of the agent-call metrics
    (the operator's runner and the ``serve`` bridge report the same words)."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class FlyteAgentNotFound(LookupError):
    """No agent is registered for a task category (or agent name).

    Name and ``timestamp`` keep parity with flytekit's exception of the same name so that
    code catching it keeps working after the import line changes.
    """

    def __init__(self, *args: object, timestamp: float | None = None, transient: bool = False) -> None:
        super().__init__(*args)
        self._timestamp = time.time() if timestamp is None else timestamp
        self._transient = transient

    @property
    def timestamp(self) -> float:
        """When the lookup failed (seconds since the epoch)."""
        return self._timestamp

    @property
    def transient(self) -> bool:
        """The agent may still appear: a source that could serve it cannot be asked right now
        (a remote agent service whose discovery fails), so the lookup is worth retrying."""
        return self._transient


class TransientAgentError(Exception):
    """Raised by an agent for a failure worth retrying: service unreachable, throttled, 5xx.

    ``retry_after`` (seconds) is a hint from the remote service (``Retry-After``); the
    operator uses it as the lower bound of its next backoff step.  Any other exception an
    agent raises is treated as a permanent failure of the task.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after}")
        self.retry_after = retry_after


class FlyteUserException(Exception):
    """A task run through an executor mixin ended in a non-successful phase.

    Same name as flytekit's, raised in the same place (local execution of a task).
    """

    def __init__(self, *args: object, timestamp: float | None = None) -> None:
        super().__init__(*args)
        self._timestamp = time.time() if timestamp is None else timestamp

    @property
    def timestamp(self) -> float:
        """When the failure was raised (seconds since the epoch)."""
        return self._timestamp


class AgentLoadError(ImportError):
    """An ``--agent module:Class`` spec or an entry point could not be turned into an agent."""


#: how many linked exceptions to look at (chains are short; the bound keeps a cycle harmless)
MAX_CAUSES = 64


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps, nearest first: ``__cause__`` (``raise ... from
    e``), ``__context__`` (raised while handling), and the members of an exception group.

    A context hidden with ``from None`` is followed too: httpcore re-raises a connection
    error ``from None`` after its pool bookkeeping, and that hides the
    ``ConnectionRefusedError`` underneath, which is exactly what tells an outage apart
    from a bad request.
    """
    chain: list[BaseException] = []
    queue: list[BaseException] = [exc]
    while queue and len(chain) < MAX_CAUSES:
        current = queue.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        linked = [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            linked += list(current.exceptions)
        queue += [e for e in linked if e is not None]
    return chain
