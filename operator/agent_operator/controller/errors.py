"""Typed errors of the Kubernetes API client: one class per answer a caller acts on.

Callers catch :class:`NotFound`, :class:`Conflict`, ... instead of comparing status codes.
Every error carries the API server's ``Status`` object when it sent one (``status_body``),
so a rejected write can be reported with the server's own message and field causes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An API request failed.

    ``code`` is the HTTP status (0: no answer at all), ``reason`` the ``Status.reason``
    (``NotFound``, ``Conflict``, ``Invalid``...), ``status_body`` the ``Status`` object.
    """

    code: int = 0

    def __init__(self, message: str, *, code: int | None = None, reason: str = "",
                 status_body: Mapping[str, Any] | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(f"HTTP {self.code}: {message}" if self.code else message)
        self.message = message
        self.reason = reason
        self.status_body: Mapping[str, Any] = status_body or {}

    @property
    def causes(self) -> list[Mapping[str, Any]]:
        """``Status.details.causes`` (field, reason, message per rejected field)."""
        details = self.status_body.get("details")
        causes = details.get("causes") if isinstance(details, Mapping) else None
        return [c for c in causes if isinstance(c, Mapping)] if isinstance(causes, list) else []


class Unreachable(ApiError):
    """No answer: connection refused or reset, TLS failure, timeout."""


class BadRequest(ApiError):
    """HTTP 400: the request itself was malformed (e.g. a JSON patch that does not apply)."""

    code = 400


class Unauthorized(ApiError):
    """HTTP 401: the credentials were refused (after one refresh)."""

    code = 401


class Forbidden(ApiError):
    """HTTP 403: RBAC does not allow this request (or the namespace is terminating)."""

    code = 403


class NotFound(ApiError):
    """HTTP 404: the object (or the resource type) does not exist."""

    code = 404


class Conflict(ApiError):
    """HTTP 409: stale ``resourceVersion``, or the object already exists."""

    code = 409


class Gone(ApiError):
    """HTTP 410: the requested resourceVersion is too old."""

    code = 410


class Invalid(ApiError):
    """HTTP 422 (Unprocessable Entity): the object failed validation; see :attr:`causes`."""

    code = 422


class TooManyRequests(ApiError):
    """HTTP 429: API priority and fairness turned the request away; retry after ``retry_after`` s."""

    code = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """HTTP 5xx: the API server (or its storage) failed; worth retrying."""

    code = 500


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the API server sends whole seconds); None when absent or a date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for(code: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The typed error for an HTTP answer ``code`` with ``body`` (a ``Status`` object or text)."""
    status: dict[str, Any] = {}
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        status = decoded
    message = str(status.get("message") or body.decode("utf-8", "replace")[:500] or f"HTTP {code}")
    kwargs: dict[str, Any] = {"code": code, "reason": str(status.get("reason") or ""), "status_body": status}
    if code == 429:
        return TooManyRequests(message, retry_after=parse_retry_after(retry_after), **kwargs)
    if code >= 500:
        return ServerError(message, **kwargs)
    return _BY_CODE.get(code, ApiError)(message, **kwargs)
