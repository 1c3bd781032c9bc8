"""Call an agent method that may be ``async def`` or plain, without blocking the loop.

flytekit's ``mirror_async_methods`` does the same; this one also accepts a plain function
that happens to return an awaitable.  The reconcile core, ``run-local`` and the executor
mixins all go through here so that every caller treats agents the same way.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import Executor
from typing import Any, Callable


async def invoke(func: Callable[..., Any], executor: Executor | None = None, /, **kwargs: Any) -> Any:
    """Await ``func(**kwargs)``; plain functions run on ``executor`` (default: the loop's).

    The operator gives each agent its own pool: a plain method that hangs keeps its thread
    after the call's time bound, and with one pool per agent a hung agent can only use up
    its own threads, never the other agents'.
    """
    if inspect.iscoroutinefunction(func):
        return await func(**kwargs)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(executor, functools.partial(func, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result


def accepts_keyword(func: Any, name: str) -> bool:
    """Whether ``func`` takes keyword ``name`` (directly or through ``**kwargs``): agents
    written for older flytekit releases may not take ``task_execution_metadata``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def mirror_async_methods(func: Callable[..., Any], **kwargs: Any) -> Any:
    """flytekit-compatible spelling of :func:`invoke` (returns an awaitable)."""
    return invoke(func, **kwargs)
