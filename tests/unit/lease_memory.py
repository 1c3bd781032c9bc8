"""An in-memory Lease with the API server's optimistic concurrency, and per-candidate views
that can be partitioned (every call fails) to simulate a leader cut off from the API."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from agent_operator.ha.leader import LeaseConflict


class MemoryLease:
    """The shared Lease object (the 'API server')."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = 0
        self.writes: list[tuple[str, str | None]] = []  # (verb, holder)

    def view(self, name: str = "lease") -> "LeaseView":
        return LeaseView(self, name)


class LeaseView:
    """One candidate's connection to the shared Lease."""

    def __init__(self, lease: MemoryLease, name: str) -> None:
        self.lease = lease
        self.name = name
        self.partitioned = False
        self.delay = 0.0

    async def _io(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.partitioned:
            raise ConnectionError("partitioned from the API server")

    async def get(self, timeout: float) -> dict[str, Any] | None:
        await self._io()
        return copy.deepcopy(self.lease.obj)

    async def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        await self._io()
        if self.lease.obj is not None:
            raise LeaseConflict("already exists")
        return self._store("create", lease)

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        await self._io()
        current = self.lease.obj
        if current is None or lease.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise LeaseConflict("resourceVersion mismatch")
        return self._store("replace", lease)

    def _store(self, verb: str, lease: dict[str, Any]) -> dict[str, Any]:
        self.lease.rv += 1
        obj = copy.deepcopy(lease)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.lease.rv)
        self.lease.obj = obj
        self.lease.writes.append((verb, obj.get("spec", {}).get("holderIdentity")))
        return copy.deepcopy(obj)
