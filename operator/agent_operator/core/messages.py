"""Messages that reach status, Events and logs: bounded in size and scrubbed of secrets.

Agent exceptions can carry anything (a whole HTTP body, a token in a URL); status has
room for 4 KiB and must never show a Secret's value, so every message goes through
:func:`clean` before it leaves the core.
"""

from __future__ import annotations

from collections.abc import Iterable

#: status.message limit of the CRD (bytes of UTF-8)
MAX_MESSAGE_BYTES = 4096
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
