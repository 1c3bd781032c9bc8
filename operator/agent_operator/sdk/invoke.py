"""Call an agent method that may be ``async def`` or plain, without blocking the loop.

flytekit's ``mirror_async_methods`` does the same; this one also accepts a plain function
that happens to return an awaitable.  The reconcile core, ``run-local`` and the executor
mixins all go through here so that every caller treats agents the same way.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable


async def invoke(func: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Await ``func(**kwargs)``; plain functions run in the loop's default executor."""
    if inspect.iscoroutinefunction(func):
        return await func(**kwargs)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, functools.partial(func, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result


def mirror_async_methods(func: Callable[..., Any], **kwargs: Any) -> Any:
    """flytekit-compatible spelling of :func:`invoke` (returns an awaitable)."""
    return invoke(func, **kwargs)
