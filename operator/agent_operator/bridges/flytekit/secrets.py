"""An AgentTask's Secrets, seen by flytekit connectors through flytekit's own secret lookup.

flytekit connectors read credentials with ``get_connector_secret(key)`` /
``flytekit.current_context().secrets.get(group, key)``, which look at environment variables
and files.  The operator instead hands each call the Secrets named in ``spec.secretRefs``
(keyword ``secrets``: ``{secretName: {key: value}}``).  Process-wide environment variables
cannot carry per-task values (calls of many tasks run concurrently), so the bridge keeps the
current call's secrets in a :class:`contextvars.ContextVar` and wraps
``SecretsManager.get`` once to consult it first:

* ``get(key=K)`` (no group): key ``K`` of any referenced Secret (Secrets in name order);
* ``get(group=G, key=K)``: key ``K`` of the Secret named ``G``;

both compared case-insensitively, since flytekit upper-cases env var names.  Anything not
found falls through to flytekit's normal env var / file lookup, so a connector that reads
operator-wide credentials from its environment keeps working.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Mapping
from typing import Any

#: secrets of the agent call running in this context ({secret name: {key: value}})
TASK_SECRETS: contextvars.ContextVar[Mapping[str, Mapping[str, str]] | None] = contextvars.ContextVar(
    "agent_operator_task_secrets", default=None
)


def lookup(secrets: Mapping[str, Mapping[str, str]], group: str | None, key: str | None) -> str | None:
    """The value flytekit's ``get(group, key)`` should see, or None to fall through."""
    if not key:
        return None
    wanted = key.lower()
    for name in sorted(secrets):
        if group is not None and name.lower() != group.lower():
            continue
        for k, v in secrets[name].items():
            if k.lower() == wanted:
                return v
    return None


_installed = False


def install() -> None:
    """Wrap flytekit's ``SecretsManager.get`` (idempotent)."""
    global _installed
    if _installed:
        return
    from flytekit.core.context_manager import SecretsManager

    original = SecretsManager.get

    @functools.wraps(original)
    def get(self: Any, group: str | None = None, key: str | None = None, group_version: str | None = None,
            encode_mode: str = "r") -> Any:
        current = TASK_SECRETS.get()
        if current:
            value = lookup(current, group, key)
            if value is not None:
                return value.encode() if "b" in encode_mode else value
        return original(self, group=group, key=key, group_version=group_version, encode_mode=encode_mode)

    SecretsManager.get = get
    _installed = True
