"""The small HTTP client the built-in agents share (stdlib only, blocking).

Agents call it from plain ``get``/``do`` methods, which the operator runs in a worker
thread, so blocking I/O is fine and no extra dependency is needed.  Failures are sorted
once, here: an unreachable host and "try again later" answers (429, 503) raise
:class:`TransientAgentError`; every other answer is returned for the agent to judge.
"""

from __future__ import annotations

import email.utils
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_operator.sdk import TransientAgentError

#: answers larger than this are truncated (they end up in the AgentTask status)
MAX_RESPONSE_BYTES = 1 << 20
#: statuses that mean "the service is fine, ask again later"
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class HttpAnswer:
    """Status, decoded body and headers of one HTTP exchange."""

    status: int
    body: str
    headers: Mapping[str, str]
    truncated: bool = False


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP-date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    timeout: float = 10.0,
) -> HttpAnswer:
    """Send one request; non-2xx answers are returned, not raised.

    Raises TransientAgentError when the server cannot be reached or answers 429/503, and
    TimeoutError when it does not answer within ``timeout`` (whether a timed-out request
    was processed is unknown, so the caller decides whether retrying is safe).
    """
    if params:
        query = urllib.parse.urlencode(
            {k: [_param(i) for i in v] if isinstance(v, (list, tuple)) else _param(v) for k, v in params.items()},
            doseq=True,
        )
        url = f"{url}{'&' if urllib.parse.urlsplit(url).query else '?'}{query}"
    data = None
    all_headers = {str(k): str(v) for k, v in (headers or {}).items()}
    if json_body is not None:
        data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if not any(k.lower() == "content-type" for k in all_headers):
            all_headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method.upper())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - user-chosen URL is the point
            answer = _answer(resp.status, resp, resp.headers)
    except urllib.error.HTTPError as e:
        answer = _answer(e.code, e, e.headers)
    except (TimeoutError, socket.timeout) as e:
        raise TimeoutError(f"no answer from {_host(url)} within {timeout:g}s") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise TimeoutError(f"no answer from {_host(url)} within {timeout:g}s") from e
        raise TransientAgentError(f"cannot reach {_host(url)}: {e.reason}") from e
    except (ConnectionError, OSError) as e:
        raise TransientAgentError(f"cannot reach {_host(url)}: {e}") from e
    if answer.status in RETRY_STATUSES:
        raise TransientAgentError(
            f"{_host(url)} answered HTTP {answer.status}: {excerpt(answer.body)}",
            retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
        )
    return answer


def _param(value: Any) -> str:
    """Query-string form of one value, as httpx (flytekit's client) writes it."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _answer(status: int, stream: Any, headers: Any) -> HttpAnswer:
    raw = stream.read(MAX_RESPONSE_BYTES + 1) if stream is not None else b""
    truncated = len(raw) > MAX_RESPONSE_BYTES
    charset = headers.get_content_charset() if hasattr(headers, "get_content_charset") else None
    body = raw[:MAX_RESPONSE_BYTES].decode(charset or "utf-8", errors="replace")
    return HttpAnswer(status=status, body=body, headers=dict(headers or {}), truncated=truncated)


def _host(url: str) -> str:
    """Scheme and host of ``url`` only: paths and queries may carry tokens."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def excerpt(text: str, limit: int = 512) -> str:
    """At most ``limit`` characters of ``text`` for a status message."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"
