"""Structured logs: every line carries the AgentTask's namespace, name and uid.

The identity comes from, in order: explicit ``extra={"task_namespace": ..., ...}`` on the
call, kopf's per-object logger (``k8s_ref``), or the :func:`task_context` context variable the
controller sets around the work for one object (asyncio copies context variables into the
tasks it spawns, so agent calls made inside inherit it).  Lines that are not about a task
carry ``null`` for the three keys, so a log query ``uid == X`` never misses a line because a
field was absent.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, TextIO

FORMATS = ("text", "json")


@dataclass(frozen=True)
class TaskRef:
    """The identity of the AgentTask a log line is about."""

    namespace: str | None
    name: str | None
    uid: str | None


_current: contextvars.ContextVar[TaskRef | None] = contextvars.ContextVar("agent_operator_task", default=None)

#: attributes every LogRecord has; anything else on a record is a user ``extra``
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "task_namespace", "task_name", "task_uid", "k8s_ref", "k8s_skip", "settings",
}


@contextlib.contextmanager
def task_context(namespace: str | None, name: str | None, uid: str | None = None) -> Iterator[TaskRef]:
    """Within the block (and tasks spawned from it), log lines carry this task's identity."""
    ref = TaskRef(namespace, name, uid)
    token = _current.set(ref)
    try:
        yield ref
    finally:
        _current.reset(token)


def current_task() -> TaskRef | None:
    """The task identity bound to the current context, if any."""
    return _current.get()


class TaskContextFilter(logging.Filter):
    """Adds ``task_namespace``, ``task_name`` and ``task_uid`` to every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_name", None) is None:
            ref = getattr(record, "k8s_ref", None)
            if isinstance(ref, dict) and ref.get("name"):
                record.task_namespace = ref.get("namespace")
                record.task_name = ref.get("name")
                record.task_uid = ref.get("uid")
            else:
                bound = _current.get()
                record.task_namespace = bound.namespace if bound else None
                record.task_name = bound.name if bound else None
                record.task_uid = bound.uid if bound else None
        else:
            record.task_namespace = getattr(record, "task_namespace", None)
            record.task_uid = getattr(record, "task_uid", None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, namespace, name, uid, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "namespace": getattr(record, "task_namespace", None),
            "name": getattr(record, "task_name", None),
            "uid": getattr(record, "task_uid", None),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines; ``[namespace/name]`` is prefixed when the line is about a task."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        name = getattr(record, "task_name", None)
        if name:
            ns = getattr(record, "task_namespace", None)
            head, sep, tail = line.partition(": ")
            line = f"{head}{sep}[{ns}/{name}] {tail}" if ns else f"{head}{sep}[{name}] {tail}"
        return line


class _OperatorHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure` installed, so a second call replaces it."""


def configure(fmt: str = "text", level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Route all logging (root logger) through one handler in ``fmt`` (``text`` or ``json``).

    Replaces a handler installed by an earlier call; leaves other handlers alone (pytest's
    capture, for example).  Returns the handler.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OperatorHandler)]:
        root.removeHandler(old)
    handler = _OperatorHandler(stream or sys.stderr)
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler
