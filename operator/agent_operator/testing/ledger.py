"""The call ledger of the test agents: every agent call appended to sqlite, durably, before
the agent answers, so tests can count calls by idempotency key across operator restarts.

The database path comes from env ``AGENT_OPERATOR_TEST_LEDGER``; WAL mode and one
connection per use make it safe across threads and processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER_ENV = "AGENT_OPERATOR_TEST_LEDGER"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    pid INTEGER NOT NULL,
    task_type TEXT NOT NULL,
    method TEXT NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_key ON calls (key, method);
"""


@dataclass(frozen=True)
class Call:
    """One ledger row."""

    seq: int
    ts: float
    pid: int
    task_type: str
    method: str
    key: str
    attempt: int
    detail: dict[str, Any]


def _set_up(conn: sqlite3.Connection) -> None:
    """WAL mode and the table. Switching a new file to WAL takes an exclusive lock that
    sqlite's busy timeout does not wait for: callers that open the ledger at the same moment
    (run-local's concurrent tasks on their first call) retry instead of failing with
    "database is locked"."""
    deadline = time.monotonic() + 60.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Ledger:
    """The sqlite call ledger; safe across threads and processes (WAL, one connection per use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def from_env(cls) -> "Ledger | None":
        """The ledger named by ``AGENT_OPERATOR_TEST_LEDGER`` (None when unset)."""
        path = os.environ.get(LEDGER_ENV)
        return cls(path) if path else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        try:
            _set_up(conn)
            yield conn
        finally:
            conn.close()

    def append(self, task_type: str, method: str, key: str, attempt: int, detail: Mapping[str, Any]) -> None:
        """Record one call (committed before returning)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO calls (ts, pid, task_type, method, key, attempt, detail) VALUES (?,?,?,?,?,?,?)",
                (time.time(), os.getpid(), task_type, method, key, attempt, json.dumps(dict(detail), default=str)),
            )

    def calls(self, key: str | None = None, method: str | None = None, task_type: str | None = None) -> list[Call]:
        """Calls in order, filtered by idempotency key (or its uid prefix), method, task type."""
        if not self.path.exists():
            return []
        sql = "SELECT seq, ts, pid, task_type, method, key, attempt, detail FROM calls WHERE 1=1"
        args: list[Any] = []
        if key is not None:
            sql += " AND (key = ? OR key LIKE ?)"
            args += [key, f"{key}-%"]
        if method is not None:
            sql += " AND method = ?"
            args.append(method)
        if task_type is not None:
            sql += " AND task_type = ?"
            args.append(task_type)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [Call(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def count(self, method: str, key: str | None = None) -> int:
        """How many ``method`` calls were made (for one key, or a uid's keys, or all)."""
        return len(self.calls(key=key, method=method))
