"""What the core needs per task besides the object: its prepared spec and its agent's pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent_operator.core.model import TaskView
from agent_operator.core.prepare import PrepareFailure, Prepared, prepare
from agent_operator.core.reconcile import Context, Settings
from agent_operator.core.signing import Signer
from agent_operator.crd.phases import Reason


class ContextFactory:
    """Core contexts: the spec is prepared once per object uid (cached), signer and settings shared."""

    def __init__(self, signer: Signer, settings: Settings) -> None:
        self.signer = signer
        self.settings = settings
        self._prepared: dict[str, Prepared | PrepareFailure] = {}

    def forget(self, uid: str) -> None:
        """The object ``uid`` is gone."""
        self._prepared.pop(uid, None)

    def __call__(self, view: TaskView, last_call: float | None) -> Context:
        entry = self._prepared.get(view.uid)
        if entry is None:
            try:
                entry = prepare(view)
            except PrepareFailure as e:
                entry = e
            # an agent may still be discovered later (remote bridges): do not cache "not found"
            if not (isinstance(entry, PrepareFailure) and entry.reason == Reason.AGENT_NOT_FOUND):
                self._prepared[view.uid] = entry
        if isinstance(entry, PrepareFailure):
            return Context(signer=self.signer, failure=entry, settings=self.settings, last_call=last_call)
        return Context(signer=self.signer, prepared=entry, settings=self.settings, last_call=last_call)


class AgentPools:
    """One thread pool per task type (one agent per type): a hung agent starves only itself."""

    def __init__(self, per_agent_concurrency: int) -> None:
        self.workers = max(2 * per_agent_concurrency, 4)
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def __call__(self, ctx: Context) -> ThreadPoolExecutor | None:
        if ctx.prepared is None:
            return None
        key = str(ctx.prepared.info.task_type)
        pool = self._pools.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"agent-{key[:20]}")
            self._pools[key] = pool
        return pool

    def shutdown(self) -> None:
        """Stop every pool without waiting for calls in flight (they were bounded already)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
