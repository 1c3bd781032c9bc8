"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

kopf's peering only pauses operators that see each other; it is not a lock.  This module is
one: replicas race to write a Lease with optimistic concurrency (``resourceVersion``), the
winner renews it, the others wait until it is *observed* unchanged for a whole lease duration
(measured on their own monotonic clock, never by comparing wall clocks across machines).

Safety — never two leaders at once — rests on ``renew_seconds < lease_seconds``:

* the leader counts its deadline from the moment it *sent* its last successful renewal;
* a standby starts counting only once it has *received* that renewal, i.e. later;
* the leader stops working (cancels ``main``) when ``renew_seconds`` have passed without a
  successful renewal, before any standby may take over at ``lease_seconds``;
* a watchdog thread enforces that even when the event loop is blocked: it cancels ``main``
  at the renew deadline and, if ``main`` is still running shortly before the lease could
  expire, ends the process (``os._exit``) — a dead leader is safe, a stuck one is not.

On graceful shutdown the leader first stops ``main``, then releases the Lease (empty holder,
like client-go's ``ReleaseOnCancel``) so a standby takes over at its next poll instead of
waiting for expiry.

Defaults (10 s lease, 7 s renew deadline, 1.5 s retry) keep a standby's takeover after the
leader's death under ~14 s worst case, inside the 15 s budget of the HA requirement;
client-go's 15/10/2 would take up to ~19 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol

from ..controller.api import object_path
from ..controller.client import KubeClient
from ..controller.errors import Conflict, NotFound
from ..observability import metrics

log = logging.getLogger("agent_operator.leader")

#: client-go's JitterFactor; the acquire loop sleeps retry * (1 + U(0, ACQUIRE_JITTER))
ACQUIRE_JITTER = 0.2
RENEW_JITTER_FACTOR = 1.2


@dataclass
class ElectionState:
    """What this process is doing in the election (read by the health endpoint)."""

    role: str = "disabled"  # disabled | standby | leader
    api_reachable: bool = False  # the last attempt got an answer from the API server


#: this process's election state; one election per process
STATE = ElectionState()


def standby_ready() -> bool:
    """True for a standby waiting for the Lease that can reach the API server.

    A standby must count as ready: with ``maxUnavailable: 0`` a rolling update waits for the
    new (standby) pod to be ready before it stops the old leader.
    """
    return STATE.role == "standby" and STATE.api_reachable


class LeaseConflict(Exception):
    """Another writer changed the Lease first (HTTP 409); retry after re-reading it."""


class LeadershipLost(RuntimeError):
    """The Lease could not be renewed before the deadline; ``main`` was cancelled.

    The process should exit non-zero (``exit_code``) so its supervisor restarts it as a
    standby, with no state left from the lost term.
    """

    exit_code = 1


class LeaseStore(Protocol):
    """Reads and writes one Lease object as a plain dict (tests supply an in-memory one)."""

    name: str

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The Lease, or ``None`` when it does not exist."""

    async def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Create it; raise :class:`LeaseConflict` if it already exists."""

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Replace it (``metadata.resourceVersion`` must match); raise :class:`LeaseConflict` if not."""


class KubeLeaseStore:
    """:class:`LeaseStore` over the operator's :class:`~agent_operator.controller.client.KubeClient`
    (raw JSON: MicroTime keeps its microseconds)."""

    def __init__(self, client: KubeClient, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self._collection = object_path("/apis/coordination.k8s.io/v1", namespace, "leases")
        self._path = object_path("/apis/coordination.k8s.io/v1", namespace, "leases", name)

    async def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return await self.client.get(self._path, timeout=max(0.5, timeout))
        except NotFound:
            return None

    async def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            return await self.client.create(self._collection, lease, timeout=max(0.5, timeout))
        except Conflict as e:
            raise LeaseConflict(str(e)) from None

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            return await self.client.replace(self._path, lease, timeout=max(0.5, timeout))
        except Conflict as e:
            raise LeaseConflict(str(e)) from None
        except NotFound:
            raise LeaseConflict("lease was deleted") from None


def micro_time(now: datetime | None = None) -> str:
    """A ``metav1.MicroTime`` string (RFC 3339 with exactly six fractional digits)."""
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """``<hostname>_<uuid>`` like client-go: unique even when two processes share a pod name."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class Timing:
    """Lease timing; validated like client-go's ``NewLeaderElector``."""

    lease_seconds: float = 10.0
    renew_seconds: float = 7.0
    retry_seconds: float = 1.5

    def __post_init__(self) -> None:
        if self.lease_seconds <= self.renew_seconds:
            raise ValueError(f"lease_seconds ({self.lease_seconds}) must be greater than "
                             f"renew_seconds ({self.renew_seconds})")
        if self.renew_seconds <= RENEW_JITTER_FACTOR * self.retry_seconds:
            raise ValueError(f"renew_seconds ({self.renew_seconds}) must be greater than "
                             f"{RENEW_JITTER_FACTOR} * retry_seconds ({self.retry_seconds})")

    @property
    def exit_margin(self) -> float:
        """Seconds before the lease could expire at which the watchdog ends a stuck leader."""
        return (self.lease_seconds - self.renew_seconds) / 2


class LeaderElector:
    """One candidate for one Lease: ``acquire``, ``renew_until_lost``, ``release``."""

    def __init__(self, store: LeaseStore, identity: str, timing: Timing = Timing(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self._lease: dict[str, Any] | None = None  # last object read or written
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0
        #: monotonic time the last successful acquire/renew request was *sent*
        self.last_renew = float("-inf")

    # ------------------------------------------------------------------ state
    @property
    def holder(self) -> str | None:
        """The holder of the Lease as last observed (``None`` when free or unknown)."""
        spec = self._observed_spec or {}
        return spec.get("holderIdentity") or None

    @property
    def is_leader(self) -> bool:
        """True while the last observed holder is this candidate."""
        return self.holder == self.identity

    def renew_deadline(self) -> float:
        """Monotonic time at which this leader must stop working if not renewed by then."""
        return self.last_renew + self.timing.renew_seconds

    def _observe(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        spec = dict(lease.get("spec") or {})
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = self.clock()

    def _record(self, old: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The spec this candidate writes to acquire or renew."""
        ours = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_seconds)),
            "acquireTime": old.get("acquireTime") if ours and old.get("acquireTime") else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if ours else 1),
        }

    # ------------------------------------------------------------------ one attempt
    async def try_acquire_or_renew(self, timeout: float) -> bool:
        """One attempt to become or stay leader; never raises for API errors."""
        sent = self.clock()
        now = datetime.now(timezone.utc)
        try:
            if self.is_leader and self._lease is not None:
                # fast path (client-go's optimistic update): one write, no read
                try:
                    body = dict(self._lease, spec=self._record(self._observed_spec or {}, now))
                    self._observe(await self.store.replace(body, timeout))
                    self.last_renew = sent
                    return True
                except LeaseConflict:
                    log.info("lease changed under us; re-reading it")
            lease = await self.store.get(timeout)
            if lease is None:
                created = await self.store.create({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.store.name},
                    "spec": self._record({"leaseTransitions": -1}, now),
                }, timeout)
                self._observe(created)
                self.last_renew = sent
                return True
            self._observe(lease)
            STATE.api_reachable = True
            spec = self._observed_spec or {}
            holder = spec.get("holderIdentity")
            if holder and holder != self.identity:
                duration = max(self.timing.lease_seconds, float(spec.get("leaseDurationSeconds") or 0))
                if self._observed_at + duration > self.clock():
                    return False  # held and not yet expired (as observed by us)
            body = dict(lease, spec=self._record(spec, now))
            self._observe(await self.store.replace(body, timeout))
            self.last_renew = sent
            return True
        except LeaseConflict:
            STATE.api_reachable = True
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # API down, timeout, 5xx: the caller's deadline decides
            STATE.api_reachable = False
            log.warning("lease %s: %s: %s", self.store.name, type(exc).__name__, exc)
            return False

    # ------------------------------------------------------------------ loops
    async def acquire(self) -> None:
        """Block until this candidate holds the Lease."""
        t = self.timing
        while True:
            if await self._attempt(t.retry_seconds + t.renew_seconds):
                log.info("became leader (identity %s)", self.identity)
                return
            await asyncio.sleep(t.retry_seconds * (1 + random.uniform(0, ACQUIRE_JITTER)))

    async def renew_until_lost(self) -> None:
        """Renew every ``retry_seconds``; return when the renew deadline passes or another holds it."""
        t = self.timing
        while True:
            await asyncio.sleep(max(0.0, min(t.retry_seconds, self.renew_deadline() - self.clock())))
            remaining = self.renew_deadline() - self.clock()
            if remaining <= 0:
                log.error("could not renew the lease within %.1fs: stepping down", t.renew_seconds)
                return
            ok = await self._attempt(remaining)
            if not ok and self._observed_spec is not None and not self.is_leader:
                log.error("lease is now held by %r: stepping down", self.holder)
                return

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(timeout), timeout)
        except asyncio.TimeoutError:
            return False

    async def release(self) -> bool:
        """Give the Lease up (empty holder) if this candidate holds it; True when released."""
        if not self.is_leader or self._lease is None:
            return False
        now = micro_time()
        spec = self._observed_spec or {}
        body = dict(self._lease, spec={
            "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0),
        })
        try:
            self._observe(await asyncio.wait_for(self.store.replace(body, self.timing.retry_seconds * 2),
                                                 self.timing.retry_seconds * 2))
        except Exception as exc:
            log.warning("could not release the lease (a standby takes over when it expires): %s", exc)
            return False
        log.info("released the lease")
        return True


class _Watchdog(threading.Thread):
    """Stops a leader that missed its renew deadline even when the event loop is blocked."""

    def __init__(self, elector: LeaderElector, loop: asyncio.AbstractEventLoop,
                 main_task: asyncio.Future[Any], hard_exit: bool) -> None:
        super().__init__(name="agent-operator-leader-watchdog", daemon=True)
        self.elector, self.loop, self.main_task, self.hard_exit = elector, loop, main_task, hard_exit
        self.done = threading.Event()
        self.fired = False  # set when it cancelled main for a missed renew deadline

    def run(self) -> None:
        t = self.elector.timing
        cancelled = False
        while not self.done.wait(min(0.25, t.retry_seconds / 4)):
            age = self.elector.clock() - self.elector.last_renew
            if age > t.renew_seconds and not cancelled:
                cancelled = self.fired = True
                log.error("renew deadline missed (%.1fs): stopping work", age)
                self.loop.call_soon_threadsafe(self.main_task.cancel)
            if age > t.lease_seconds - t.exit_margin and self.hard_exit:
                # main did not stop in time; another replica may take over soon: die now
                log.critical("work did not stop %.1fs after the renew deadline; exiting", age - t.renew_seconds)
                os._exit(LeadershipLost.exit_code)


async def run_with_leader_election(
    main: Callable[[], Awaitable[None]],
    *,
    client: KubeClient | None,
    namespace: str,
    name: str,
    identity: str | None = None,
    lease_seconds: float = 10.0,
    renew_seconds: float = 7.0,
    retry_seconds: float = 1.5,
    hard_exit: bool = True,
    store: LeaseStore | None = None,
) -> None:
    """Wait for the Lease ``namespace/name``, run ``main`` while holding it, release it after.

    Raises :class:`LeadershipLost` (after cancelling ``main``) when the lease cannot be
    renewed in time; exceptions from ``main`` propagate after the lease is released.
    ``hard_exit=False`` disables the watchdog's ``os._exit`` (in-process tests only).
    ``store`` replaces the API-backed Lease store (unit tests; ``client`` may then be None).
    """
    timing = Timing(lease_seconds, renew_seconds, retry_seconds)
    if store is None:
        if client is None:
            raise ValueError("run_with_leader_election: a client or a store is required")
        store = KubeLeaseStore(client, namespace, name)
    elector = LeaderElector(store, identity or default_identity(), timing)
    metrics.set_leader(False)
    STATE.role = "standby"
    log.info("waiting for leader lease %s/%s as %s", namespace, name, elector.identity)
    try:
        await elector.acquire()
    except BaseException:
        STATE.role = "disabled"
        raise
    STATE.role = "leader"
    metrics.set_leader(True)
    main_task: asyncio.Future[None] = asyncio.ensure_future(main())
    renew_task = asyncio.ensure_future(elector.renew_until_lost())
    watchdog = _Watchdog(elector, asyncio.get_running_loop(), main_task, hard_exit)
    watchdog.start()
    try:
        try:
            await asyncio.wait({main_task, renew_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _stop(main_task)  # stop working first, then hand over
            renew_task.cancel()
            await elector.release()
            raise
        if renew_task.done() or watchdog.fired:  # the lease was lost (main may be cancelled already)
            await _stop(main_task)
            renew_task.cancel()
            raise LeadershipLost(f"lost leader lease {namespace}/{name} (identity {elector.identity})")
        renew_task.cancel()
        await _stop(renew_task)
        await elector.release()
        main_task.result()  # re-raise what main raised
    finally:
        watchdog.done.set()
        STATE.role = "disabled"
        metrics.set_leader(False)


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to finish, swallowing its cancellation/exception."""
    task.cancel()
    try:
        await task
    except BaseException as exc:  # noqa: BLE001 - the task's fate is logged, ours continues
        if not task.done():
            raise  # we were cancelled while waiting: propagate
        if not isinstance(exc, asyncio.CancelledError):
            log.warning("work ended with %s: %s", type(exc).__name__, exc)
