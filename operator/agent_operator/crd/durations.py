"""Durations as Kubernetes users write them: Go ``time.ParseDuration`` strings.

``spec.timeout: 1h30m`` and ``spec.pollInterval: 10s`` use the same syntax as
``metav1.Duration`` so that the API server's CEL ``duration()`` function can validate
them (the CRD enforces the poll-interval floor with it) and users need to learn nothing
new.
"""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")

#: the longest duration Go can represent (int64 nanoseconds)
MAX_SECONDS = (2**63 - 1) / 1e9

#: the same grammar as a JSON-schema pattern (used in the CRD)
DURATION_PATTERN = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``"90s"``, ``"1h30m"``, ``"1.5h"``, ``"0"``).

    Raises ``ValueError`` with the accepted syntax in the message.  Negative durations
    are rejected: nothing in an AgentTask can last a negative time.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30s' or '1h30m', got {type(text).__name__}")
    s = text.strip()
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(
            f"invalid duration {text[:64]!r}: expected a number with a unit (ns, us, ms, s, m, h), "
            f"e.g. '30s', '5m', '1h30m'"
        )
    if total > MAX_SECONDS:
        # Go's time.ParseDuration (and so the API server's CEL duration()) stops at int64 ns
        raise ValueError(f"invalid duration {text[:64]!r}: longer than about 290 years")
    return total


def format_duration(seconds: float) -> str:
    """A short Go-style duration for messages (``"1h2m3s"``, ``"1.5s"``)."""
    if seconds < 0:
        raise ValueError("negative duration")
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    frac = seconds - whole
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = ""
    if h:
        out += f"{h}h"
    if m:
        out += f"{m}m"
    if s or frac or not out:
        sec = s + frac
        out += f"{sec:.3f}".rstrip("0").rstrip(".") + "s"
    return out
