"""Durations as Kubernetes users write them (Go ``time.ParseDuration`` strings), and times
as the API server writes them (RFC 3339).

``spec.timeout: 1h30m`` and ``spec.pollInterval: 10s`` use the same syntax as
``metav1.Duration`` so that the API server's CEL ``duration()`` function can validate
them (the CRD enforces the poll-interval floor with it) and users need to learn nothing
new.  :func:`parse_duration_ns` follows Go's algorithm step by step (integer nanoseconds,
the same overflow points, the same truncation of fractions), so an offline check and the
API server agree even on ``0.0000000001s`` (0 ns) or ``9999999999h`` (overflow).
"""

from __future__ import annotations

import datetime as dt
import functools

_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_U63 = 1 << 63

#: the longest duration Go can represent (int64 nanoseconds), in seconds
MAX_SECONDS = (_U63 - 1) / 1e9

#: the grammar the CRD accepts, as a JSON-schema pattern: no sign, every number has a unit
DURATION_PATTERN = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"

_SYNTAX = "expected a number with a unit (ns, us, ms, s, m, h), e.g. '30s', '5m', '1h30m'"


def _digits(s: str, i: int) -> int:
    while i < len(s) and "0" <= s[i] <= "9":
        i += 1
    return i


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration string, exactly as Go's ``time.ParseDuration`` computes them.

    Raises ``ValueError`` naming the accepted syntax.  Negative durations are rejected:
    nothing in an AgentTask can last a negative time.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30s' or '1h30m', got {type(text).__name__}")
    s = text
    shown = repr(text[:64])
    if s in ("0", "+0", "-0"):
        return 0
    if s.startswith(("-", "+")):
        if s[0] == "-":
            raise ValueError(f"invalid duration {shown}: must not be negative")
        s = s[1:]
    if not s:
        raise ValueError(f"invalid duration {shown}: {_SYNTAX}")
    total = 0
    i = 0
    while i < len(s):
        if not (s[i] == "." or "0" <= s[i] <= "9"):
            raise ValueError(f"invalid duration {shown}: {_SYNTAX}")
        # integer part (Go's leadingInt: error on overflow)
        j = _digits(s, i)
        pre = j != i
        v = 0
        for c in s[i:j]:
            if v > _U63 // 10:
                raise ValueError(f"invalid duration {shown}: longer than about 290 years")
            v = v * 10 + ord(c) - 48
            if v > _U63:
                raise ValueError(f"invalid duration {shown}: longer than about 290 years")
        i = j
        # fraction (Go's leadingFraction: stops accumulating on overflow, keeps consuming)
        f, scale, post = 0, 1.0, False
        if i < len(s) and s[i] == ".":
            i += 1
            j = _digits(s, i)
            post = j != i
            overflow = False
            for c in s[i:j]:
                if overflow:
                    continue
                if f > (_U63 - 1) // 10:
                    overflow = True
                    continue
                y = f * 10 + ord(c) - 48
                if y > _U63:
                    overflow = True
                    continue
                f, scale = y, scale * 10
            i = j
        if not pre and not post:
            raise ValueError(f"invalid duration {shown}: {_SYNTAX}")
        # unit
        j = i
        while j < len(s) and not (s[j] == "." or "0" <= s[j] <= "9"):
            j += 1
        unit = _UNIT_NS.get(s[i:j])
        if unit is None:
            raise ValueError(f"invalid duration {shown}: {_SYNTAX}")
        i = j
        if v > _U63 // unit:
            raise ValueError(f"invalid duration {shown}: longer than about 290 years")
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _U63:
                raise ValueError(f"invalid duration {shown}: longer than about 290 years")
        total += v
        if total > _U63:
            raise ValueError(f"invalid duration {shown}: longer than about 290 years")
    if total > _U63 - 1:
        raise ValueError(f"invalid duration {shown}: longer than about 290 years")
    return total


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``"90s"``, ``"1h30m"``, ``"1.5h"``, ``"0"``)."""
    return parse_duration_ns(text) / 1e9


@functools.lru_cache(maxsize=4096)  # the same few timestamps are read on every decision
def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (``Z`` or offset, optional fraction)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


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
