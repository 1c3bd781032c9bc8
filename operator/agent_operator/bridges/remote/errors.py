"""gRPC status codes of a remote agent service, sorted into transient and permanent.

Transient (the operator retries the same call with backoff; the task does not fail):
UNAVAILABLE (service down, connection refused, TLS handshake while a pod restarts),
DEADLINE_EXCEEDED (our per-call deadline) and RESOURCE_EXHAUSTED (throttled; a
``google.rpc.RetryInfo`` detail, when sent, becomes ``retry_after``; but not gRPC's own
"message larger than max", which has the same code and would fail forever).  Every other code
is permanent: NOT_FOUND (no agent for the task type), INVALID_ARGUMENT, INTERNAL (the
agent raised; flytekit puts its traceback in the details), UNIMPLEMENTED, ...
"""

from __future__ import annotations

from typing import Any

import grpc

from agent_operator.sdk import TransientAgentError

TRANSIENT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class RemoteAgentError(RuntimeError):
    """A remote agent service answered a call with a permanent error status."""

    def __init__(self, message: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def _retry_after(err: grpc.RpcError) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` status detail, if the server sent one."""
    try:
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:  # pragma: no cover - googleapis-common-protos comes with flyteidl
        return None
    trailing: Any = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # noqa: BLE001 - a malformed detail only loses the hint
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return max(float(info.retry_delay.ToNanoseconds()) / 1e9, 0.0)
    return None


def _message_too_large(code: grpc.StatusCode, details: str) -> bool:
    """gRPC reports an over-size message as RESOURCE_EXHAUSTED too; retrying cannot fix that."""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details.lower()


def classify_rpc_error(err: grpc.RpcError, operation: str, endpoint: str) -> Exception:
    """The exception the SDK contract expects for ``err`` (return it; the caller raises)."""
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details: str = (err.details() if hasattr(err, "details") else None) or ""
    message = f"{operation} on agent service {endpoint} failed with {code.name}: {details or '(no message)'}"
    if code in TRANSIENT_CODES and not _message_too_large(code, details):
        return TransientAgentError(message, retry_after=_retry_after(err))
    return RemoteAgentError(message, code, details)
