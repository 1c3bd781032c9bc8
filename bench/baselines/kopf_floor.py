"""The kopf floor: the ceiling's work, with its watch fed through kopf the way the operator's is.

The ceiling (``bench/baselines/ceiling.py``) lists and watches with a bare aiohttp
stream.  The operator must keep kopf as its watch and event framework (the design), so
the least CPU any kopf-based contender can spend per task is the ceiling's work plus
kopf's per-event machinery.  This contender measures exactly that: the operator's own
kopf registry and settings (:mod:`agent_operator.controller.kopf_adapter`: one
``on.event`` handler, no diff-base, no posting, no peering, our login), whose handler hands
each body to the ceiling's driver — no controller logic, no Events, no typed model, the
same three writes.  The distance from the ceiling to this floor is kopf's; the distance
from this floor to the operator is ours.

    python -m bench.baselines.kopf_floor --namespace NS --concurrency 64
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from agent_operator.cli.run import tune_gc
from agent_operator.controller import config, kopf_adapter
from agent_operator.controller.client import KubeClient
from bench.baselines.ceiling import Ceiling, parse_flags
from bench.kube import Kube


async def main(argv: list[str] | None = None) -> None:
    """Parse flags and run until SIGTERM/SIGINT."""
    args = parse_flags(argv, __doc__.splitlines()[0])
    kube = Kube(args.kubeconfig, limit=args.concurrency + 4)
    ceiling = Ceiling(kube, args.namespace, args.concurrency)
    login = KubeClient(config.load(args.kubeconfig), pool_size=2)

    def on_event(event_type: str | None, body: dict[str, Any]) -> None:
        if event_type != "DELETED":
            ceiling.admit(body)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = kopf_adapter.registry(on_event, login, lambda: None)
    settings = kopf_adapter.settings(watch_inactivity_timeout=70.0, api_timeout=30.0)
    tune_gc()  # the operator's garbage-collector settings: the floor is kopf's cost, not the GC's
    print(f"kopf-floor: driving AgentTasks in {args.namespace} with concurrency {args.concurrency}", flush=True)
    try:
        await kopf_adapter.run(registry, settings, (args.namespace,), stop)
    finally:
        await kube.close()
        await login.close()


if __name__ == "__main__":
    asyncio.run(main())
