"""The load generator (creates AgentTasks) and the observer (watches them reach a phase).

Both run in the harness process, never in a contender.  Times are wall-clock
(``time.time()``) so that they compare with the agents' call log written by another process
on the same machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from .kube import ApiError, Kube

TERMINAL = frozenset({"Succeeded", "Failed", "Aborted", "TimedOut"})


def task_manifest(name: str, task_type: str, *, poll: str = "1s", run_seconds: float | None = None,
                  create_latency: float | None = None, get_latency: float | None = None) -> dict[str, Any]:
    """An AgentTask whose template tells the bench agent its name and latencies."""
    custom: dict[str, Any] = {"name": name}
    if run_seconds is not None:
        custom["runSeconds"] = run_seconds
    if create_latency is not None:
        custom["createLatency"] = create_latency
    if get_latency is not None:
        custom["getLatency"] = get_latency
    return {
        "apiVersion": "flyteagents.dev/v1alpha1",
        "kind": "AgentTask",
        "metadata": {"name": name, "labels": {"bench": "1"}},
        "spec": {"taskTemplate": {"type": task_type, "custom": custom}, "pollInterval": poll},
    }


async def create_namespace(kube: Kube, name: str) -> None:
    """Create a namespace (no error when it exists)."""
    try:
        await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    except ApiError as e:
        if e.status != 409:
            raise


async def _create(kube: Kube, namespace: str, body: dict[str, Any], applied: dict[str, float]) -> None:
    """POST with a few retries on overload (429, 5xx, time-outs); 409 means an earlier try landed."""
    for attempt in range(5):
        try:
            await kube.create(namespace, body)
            break
        except ApiError as e:
            if e.status == 409:
                break
            if e.status < 500 and e.status != 429 or attempt == 4:
                raise
        except (asyncio.TimeoutError, aiohttp.ClientError):
            if attempt == 4:
                raise
        await asyncio.sleep(0.2 * (attempt + 1))
    applied[body["metadata"]["name"]] = time.time()


async def create_all(kube: Kube, namespace: str, bodies: Iterable[dict[str, Any]],
                     concurrency: int = 50) -> dict[str, float]:
    """Create every object as fast as ``concurrency`` parallel POSTs allow; name -> applied time."""
    applied: dict[str, float] = {}
    queue = list(bodies)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            body = queue[position]
            position += 1
            await _create(kube, namespace, body, applied)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return applied


async def create_at_rate(kube: Kube, namespace: str, bodies: list[dict[str, Any]],
                         rate: float) -> tuple[dict[str, float], float]:
    """Open-loop load: object ``i`` is sent at ``start + i / rate`` whatever the answers.

    Returns name -> applied time (when the API server answered) and the achieved rate.
    """
    applied: dict[str, float] = {}
    start = time.time()
    pending: set[asyncio.Task[None]] = set()
    for i, body in enumerate(bodies):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_create(kube, namespace, body, applied))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_seconds = max(time.time() - start, 1e-9)
    if pending:
        await asyncio.gather(*pending)
    return applied, len(bodies) / sent_seconds if len(bodies) > 1 else 0.0


async def _retrying(call: Callable[[], Awaitable[Any]], attempts: int = 10) -> Any:
    """A read that the API server may refuse while overloaded or just after a CRD was installed."""
    for attempt in range(attempts):
        try:
            return await call()
        except (ApiError, asyncio.TimeoutError, aiohttp.ClientError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)


class Observer:
    """Watches one namespace and records when each AgentTask first started and ended.

    "Started" means ``status.resourceMeta`` is set (every contender writes it after
    ``create``); "ended" means a terminal ``status.phase``.
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.phases: dict[str, str] = {}
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        now = time.time()
        phase = status.get("phase") or ""
        self.phases[name] = phase
        if status.get("resourceMeta") or phase in TERMINAL:
            self.started.setdefault(name, now)
        if phase in TERMINAL:
            self.ended.setdefault(name, now)

    async def _run(self) -> None:
        while True:
            listing = await _retrying(lambda: self.kube.list(self.namespace))
            for item in listing["items"]:
                self._see(item)
            self._ready.set()
            async for event in self.kube.watch(self.namespace, listing["metadata"]["resourceVersion"]):
                if event["type"] == "RELIST":
                    break
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._see(event["object"])

    async def start(self) -> "Observer":
        """Begin watching; returns once the initial list was seen (raises what stopped the watcher)."""
        self._runner = asyncio.create_task(self._run())
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            self._runner.result()  # raises the watcher's error
        return self

    async def stop(self) -> None:
        """Stop watching."""
        if self._runner:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, Exception):
                pass

    async def wait_for(self, names: Iterable[str], what: str, timeout: float,
                       alive: Any = None) -> bool:
        """Wait until every name is ``what`` ("started" or "ended"); False on timeout.

        ``alive`` (a callable raising when the contender died) is checked while waiting.
        """
        wanted = set(names)
        seen = self.started if what == "started" else self.ended
        deadline = time.time() + timeout
        while time.time() < deadline:
            if wanted.issubset(seen.keys()):
                return True
            if alive is not None:
                alive()
            await asyncio.sleep(0.2)
        return wanted.issubset(seen.keys())
