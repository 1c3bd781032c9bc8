"""Wait until the AgentTask CRD is served before starting the watch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent_operator.controller.errors import ApiError
from agent_operator.crd import names

log = logging.getLogger(__name__)
CRD_POLL = 5.0


async def wait_for_crd(served: Callable[[], Awaitable[bool]], stop_flag: asyncio.Event | None = None,
                       poll: float = CRD_POLL, name: str = names.CRD_NAME) -> bool:
    """Block until ``served()`` (by default: is the AgentTask CRD served?); False if stopped meanwhile.

    kopf resolves resources once at start (scanning is off: it would need cluster-wide CRD
    watch rights), so an operator started before its CRD would otherwise never serve.
    """
    told = False
    while True:
        try:
            if await served():
                return True
            reason = "not installed"
        except ApiError as e:
            reason = str(e)
        if not told:
            log.warning("waiting for the CRD %s (%s): kubectl apply -f crds/", name, reason)
            told = True
        if stop_flag is not None and stop_flag.is_set():
            return False
        await asyncio.sleep(poll)
