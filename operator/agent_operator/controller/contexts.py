"""Per-agent thread pools for the core runner (contexts come from :class:`agent_operator.core.context.ContextFactory`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent_operator.core.reconcile import Context


class AgentPools:
    """One thread pool per task type (one agent per type): a hung agent starves only itself."""

    def __init__(self, per_agent_concurrency: int) -> None:
        self.workers = max(2 * per_agent_concurrency, 4)
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def __call__(self, ctx: Context) -> ThreadPoolExecutor | None:
        if ctx.prepared is None:
            return None
        key = str(ctx.prepared.info.task_type or "")
        pool = self._pools.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"agent-{key[:20]}")
            self._pools[key] = pool
        return pool

    def shutdown(self) -> None:
        """Stop every pool without waiting for calls in flight (they were bounded already)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
