"""Shard ring membership: one ``coordination.k8s.io/v1`` Lease per replica, found by label.

Each replica (member) renews its own Lease, labelled ``flyteagents.dev/shard-ring=<ring>``
so members find each other with one labelled list.  Liveness follows client-go's rule
(and :mod:`agent_operator.ha.leader`'s): a member is dead once *this* observer has seen
its Lease spec unchanged for a whole lease duration on its own monotonic clock — wall
clocks are never compared across machines.  A member whose own renewals fail stops
driving work at ``renew_seconds`` after its last successful renewal was *sent*, before
any observer (which started counting when it *received* that renewal) may call it dead.

All Lease I/O goes through :class:`ShardStore` (four verbs and a list), so moving to
another Kubernetes client touches :class:`KubeShardStore` only.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

from agent_operator.controller.errors import ApiError, Conflict, NotFound
from agent_operator.ha.leader import LeaseConflict, Timing, micro_time

log = logging.getLogger("agent_operator.shards")

RING_LABEL = "flyteagents.dev/shard-ring"
#: refused by an API server that applies shard selectors (bounds must have 16 hex digits)
MALFORMED_SELECTOR = "shardRange(object.metadata.uid, '0x0', '0x1')"
TABLE_LABEL = "flyteagents.dev/shard-table"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

#: ``(method, path, body) -> decoded JSON``; raises an exception carrying ``.status`` (HTTP)
Request = Callable[[str, str, Any], Awaitable[Any]]


class ShardStore(Protocol):
    """Lease I/O of the shard protocol (tests and other clients supply their own)."""

    async def list_members(self) -> list[dict[str, Any]]:
        """Every member Lease of the ring."""

    async def get(self, name: str) -> dict[str, Any] | None:
        """The Lease ``name``, or ``None`` when it does not exist."""

    async def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        """Create a Lease; :class:`LeaseConflict` when it exists."""

    async def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        """Replace a Lease at its ``resourceVersion``; :class:`LeaseConflict` when it changed or is gone."""

    async def delete(self, name: str) -> None:
        """Delete a Lease (gone already is fine)."""

    async def server_filters(self, selector: str) -> bool:
        """True when the API server applies ``shardSelector`` to AgentTask lists and watches."""


class KubeShardStore:
    """:class:`ShardStore` over one async request function (the controller's API client)."""

    def __init__(self, request: Request, namespace: str, ring: str, task_list_path: str) -> None:
        self._request = request
        self.namespace = namespace
        self.ring = ring
        self._leases = LEASES.format(namespace=quote(namespace, safe=""))
        self._tasks = task_list_path

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return await self._request(method, path, body)
        except Conflict as exc:
            raise LeaseConflict(str(exc)) from None
        except NotFound as exc:
            if method == "PUT":
                raise LeaseConflict(str(exc)) from None
            if method in ("GET", "DELETE"):
                return None
            raise

    async def list_members(self) -> list[dict[str, Any]]:
        selector = quote(f"{RING_LABEL}={self.ring}", safe="")
        body = await self._call("GET", f"{self._leases}?labelSelector={selector}")
        return list((body or {}).get("items") or [])

    async def get(self, name: str) -> dict[str, Any] | None:
        out: dict[str, Any] | None = await self._call("GET", f"{self._leases}/{quote(name, safe='')}")
        return out

    async def create(self, lease: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", self._leases, lease)
        return out

    async def replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        name = quote(str(lease["metadata"]["name"]), safe="")
        out: dict[str, Any] = await self._call("PUT", f"{self._leases}/{name}", lease)
        return out

    async def delete(self, name: str) -> None:
        await self._call("DELETE", f"{self._leases}/{quote(name, safe='')}")

    async def server_filters(self, selector: str) -> bool:
        """The list's ``metadata.shardInfo`` echoes the selector (built-in types do), or — for
        custom resources, whose lists do not carry it at v1.37.2 although they are filtered —
        the server refuses a malformed selector, which only a server applying them does."""
        body = await self._call("GET", f"{self._tasks}?limit=1&shardSelector={quote(selector, safe='')}")
        echoed = ((body or {}).get("metadata") or {}).get("shardInfo") or {}
        if echoed.get("selector") == selector:
            return True
        try:
            await self._request("GET", f"{self._tasks}?limit=1&shardSelector={quote(MALFORMED_SELECTOR, safe='')}", None)
        except ApiError as exc:  # only the server's refusal of the selector counts
            return exc.code in (400, 422, 500) and "shard selector" in str(exc)
        return False


def member_name(ring: str) -> str:
    """A fresh member Lease name: unique per process start (a restarted replica is a new member)."""
    return f"{ring}-member-{uuid.uuid4().hex[:12]}"


@dataclass
class _Seen:
    spec: dict[str, Any]
    #: when this spec was first listed
    at: float
    #: when this member was first listed (a member known for less than a lease duration
    #: cannot have judged anyone dead yet either)
    first: float


class Member:
    """This replica's member Lease, and what it observed of the others'."""

    def __init__(self, store: ShardStore, ring: str, name: str, identity: str, timing: Timing,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.ring, self.name, self.identity = store, ring, name, identity
        self.timing = timing
        self.clock = clock
        self._lease: dict[str, Any] | None = None
        self._seen: dict[str, _Seen] = {}
        self._absent_since: dict[str, float] = {}
        #: monotonic time the last successful renewal was *sent*
        self.last_renew = float("-inf")

    # ------------------------------------------------------------------ own lease
    def fresh(self) -> bool:
        """True until ``renew_seconds`` after the last successful renewal was sent."""
        return self.clock() - self.last_renew < self.timing.renew_seconds

    def _spec(self, now: datetime) -> dict[str, Any]:
        old = (self._lease or {}).get("spec") or {}
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_seconds)),
            "acquireTime": old.get("acquireTime") or micro_time(now),
            "renewTime": micro_time(now),
        }

    async def renew(self) -> bool:
        """Create or renew this member's Lease; never raises for API errors."""
        sent = self.clock()
        now = datetime.now(timezone.utc)
        try:
            if self._lease is None:
                self._lease = await self.store.get(self.name)
            if self._lease is None:
                self._lease = await self.store.create({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "labels": {RING_LABEL: self.ring}},
                    "spec": self._spec(now),
                })
            else:
                self._lease = await self.store.replace(dict(self._lease, spec=self._spec(now)))
        except LeaseConflict:
            self._lease = None  # re-read at the next attempt
            return False
        except Exception as exc:  # noqa: BLE001 - the renew deadline decides, not one failure
            log.warning("member lease %s: %s: %s", self.name, type(exc).__name__, exc)
            return False
        self.last_renew = sent
        return True

    async def leave(self) -> None:
        """Delete this member's Lease (after its slots were released)."""
        try:
            await self.store.delete(self.name)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("could not delete member lease %s (it expires): %s", self.name, exc)

    # ------------------------------------------------------------------ others
    async def observe(self) -> set[str]:
        """List the ring's member Leases; the names of live members (this one while fresh)."""
        now = self.clock()
        present: set[str] = set()
        for lease in await self.store.list_members():
            name = str((lease.get("metadata") or {}).get("name") or "")
            spec = dict(lease.get("spec") or {})
            present.add(name)
            seen = self._seen.get(name)
            if seen is None or seen.spec != spec:
                self._seen[name] = _Seen(spec, now, seen.first if seen is not None else now)
        for name in set(self._seen) - present:
            del self._seen[name]
        for name in present:
            self._absent_since.pop(name, None)
        return {name for name in present if self.alive(name)}

    def settled(self, name: str) -> bool:
        """Whether ``name`` is old enough to judge the others dead: this observer has listed it
        for a lease duration (itself: always). A member that joined after another's last
        renewal needs a lease duration of its own watching before it can claim that one's slots."""
        if name == self.name:
            return True
        seen = self._seen.get(name)
        return seen is not None and self.clock() - seen.first >= self.timing.lease_seconds

    def alive(self, name: str) -> bool:
        """Whether ``name`` may still be driving work, as observed here (conservative)."""
        if name == self.name:
            return self.fresh()
        now = self.clock()
        seen = self._seen.get(name)
        if seen is None:
            # never seen (or deleted): dead only after a lease duration of absence
            return self._absent_since.setdefault(name, now) + self.timing.lease_seconds > now
        if not seen.spec.get("holderIdentity"):
            return False
        duration = max(self.timing.lease_seconds, float(seen.spec.get("leaseDurationSeconds") or 0))
        return seen.at + duration > now


def encode_owners(owners: tuple[str, ...]) -> str:
    """The owner table as stored in the ring Lease's annotation."""
    return json.dumps(list(owners), separators=(",", ":"))
