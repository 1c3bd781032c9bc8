"""The ceiling: the minimum any controller must do per task, with no controller logic.

A plain asyncio program (aiohttp, no kopf, no kubernetes client): list + watch the
namespace, and for every new AgentTask make the design's write budget and nothing more —
add the finalizer (1 write), call ``create``, write status with the job handle (1 write),
poll ``get`` on an in-memory timer, write the terminal status (1 write) — with at most
``--concurrency`` tasks inside an agent call or API write at a time.  No retries, no
idempotency, no error handling: what a controller could reach if it had no overhead.

    python -m bench.baselines.ceiling --namespace NS --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from agent_operator.sdk import invoke
from agent_operator.sdk.resource import is_terminal_phase
from bench.baselines.common import FINALIZER, phase_word, prepare
from bench.kube import Kube, tasks_path

TERMINAL = {"Succeeded", "Failed", "Aborted", "TimedOut"}


class Ceiling:
    """Drives every AgentTask of one namespace to a terminal phase."""

    def __init__(self, kube: Kube, namespace: str, concurrency: int) -> None:
        self.kube = kube
        self.namespace = namespace
        self.slots = asyncio.Semaphore(concurrency)
        self.started: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def admit(self, obj: dict[str, Any]) -> None:
        """Start driving ``obj`` unless it is already driven or finished."""
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        if name in self.started or status.get("phase") in TERMINAL:
            return
        self.started.add(name)
        task = asyncio.create_task(self.drive(name, obj["spec"], status))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drive(self, name: str, spec: dict[str, Any], status: dict[str, Any]) -> None:
        """The three writes and the agent calls of one task."""
        agent, template, poll = prepare(spec)
        encoded = status.get("resourceMeta")
        if encoded:
            meta = agent.metadata_type.decode(str(encoded).encode())
        else:
            async with self.slots:
                await self.kube.merge_patch(tasks_path(self.namespace, name),
                                            {"metadata": {"finalizers": [FINALIZER]}})
                meta = await invoke(agent.create, task_template=template, output_prefix="")
                await self.kube.merge_patch(tasks_path(self.namespace, name, "status"),
                                            {"status": {"phase": "Running", "resourceMeta": meta.encode().decode()}})
        while True:
            async with self.slots:
                resource = await invoke(agent.get, resource_meta=meta)
                if is_terminal_phase(resource.phase):
                    await self.kube.merge_patch(
                        tasks_path(self.namespace, name, "status"),
                        {"status": {"phase": phase_word(resource.phase), "message": resource.message or ""}})
                    return
            await asyncio.sleep(poll)

    async def run(self) -> None:
        """List, then watch for new objects, forever."""
        while True:
            listing = await self.kube.list(self.namespace)
            for item in listing["items"]:
                self.admit(item)
            async for event in self.kube.watch(self.namespace, listing["metadata"]["resourceVersion"]):
                if event["type"] == "RELIST":
                    break
                if event["type"] in ("ADDED", "MODIFIED"):
                    self.admit(event["object"])


def parse_flags(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The flags every plain-asyncio contender takes (this one and the kopf floor)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> None:
    """Parse flags and run until SIGTERM/SIGINT."""
    args = parse_flags(argv, __doc__.splitlines()[0])
    kube = Kube(args.kubeconfig, limit=args.concurrency + 4)
    ceiling = Ceiling(kube, args.namespace, args.concurrency)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(ceiling.run())
    print(f"ceiling: driving AgentTasks in {args.namespace} with concurrency {args.concurrency}", flush=True)
    await stop.wait()
    runner.cancel()
    await kube.close()


if __name__ == "__main__":
    asyncio.run(main())
