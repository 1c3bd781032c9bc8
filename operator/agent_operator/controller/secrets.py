"""Data of the Secrets a task names in ``spec.secretRefs``, briefly cached."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from agent_operator.controller.errors import ApiError, NotFound
from agent_operator.crd.resource import AgentTask
from agent_operator.sdk import TransientAgentError

#: seconds a Secret's data is reused (a rotated Secret reaches new calls this fast)
SECRET_TTL = 10.0


class SecretReader(Protocol):
    """Reads one Secret's decoded data (the API)."""

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data; raises ApiError."""


class SecretCache:
    """``secrets_for(view)`` for the runner: same-namespace Secrets only, cached ``ttl`` seconds."""

    def __init__(self, reader: SecretReader, ttl: float = SECRET_TTL) -> None:
        self.reader = reader
        self.ttl = ttl
        self._data: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def secrets_for(self, view: AgentTask) -> dict[str, dict[str, str]]:
        """Data of the Secrets in ``spec.secretRefs``; a missing one is a transient error naming the field."""
        out: dict[str, dict[str, str]] = {}
        for i, ref in enumerate(view.spec.secret_refs if view.spec is not None else ()):
            name = ref.name
            cached = self._data.get((view.namespace, name))
            if cached is not None and time.monotonic() - cached[0] < self.ttl:
                out[name] = cached[1]
                continue
            try:
                data = await self.reader.read_secret_data(view.namespace, name)
            except NotFound:
                raise TransientAgentError(
                    f"spec.secretRefs[{i}]: Secret {view.namespace}/{name} does not exist") from None
            except ApiError as e:
                # retried (the Secret may become readable later), with the field to fix in the message
                raise TransientAgentError(
                    f"spec.secretRefs[{i}]: Secret {view.namespace}/{name} cannot be read ({e})") from None
            self._data[(view.namespace, name)] = (time.monotonic(), data)
            out[name] = data
        return out
