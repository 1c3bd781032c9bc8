"""Messages that reach status, Events and logs: bounded in size and scrubbed of secrets.

Agent exceptions can carry anything (a whole HTTP body, a token in a URL); status has
room for 4 KiB and must never show a Secret's value, so every message goes through
:func:`clean` before it leaves the core.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent_operator.crd.status import MAX_MESSAGE

#: status.message limit of the CRD, counted in bytes of UTF-8 (never more characters than that)
MAX_MESSAGE_BYTES = MAX_MESSAGE
#: shorter secret values are not scrubbed (they would mangle ordinary words)
MIN_SECRET_LENGTH = 4
REDACTED = "***"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` (longest first, so prefixes cannot leak)."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def bound(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes, saying how much was dropped."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    suffix = f"... [{len(data) - limit + 64} more bytes truncated]"
    head = data[: limit - len(suffix.encode())].decode("utf-8", errors="ignore")
    return head + suffix


def clean(text: str | None, secrets: Iterable[str] = ()) -> str:
    """Scrub, then bound (scrubbing first: a cut could split a secret and leak its prefix)."""
    return bound(scrub(text or "", secrets))


def describe_exception(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``Type: message`` of an agent exception, cleaned for status."""
    text = str(exc).strip()
    kind = type(exc).__name__
    return clean(f"{kind}: {text}" if text else kind, secrets)


def scrub_json(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (JSON data: outputs, customInfo, logLinks) with every secret value scrubbed
    from every string in it, keys included: agents echo tokens into URLs and info too."""
    values = tuple(secrets)
    if not any(len(s) >= MIN_SECRET_LENGTH for s in values):
        return value
    if isinstance(value, str):
        return scrub(value, values)
    if isinstance(value, dict):
        return {scrub(str(k), values): scrub_json(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_json(v, values) for v in value]
    return value
