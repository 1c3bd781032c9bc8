"""The kopf side of the operator: one event handler, a login from our own credentials, and
settings that keep kopf from writing anything by itself.

Write budget by construction:

* only ``@kopf.on.event`` handlers: kopf stores no progress or diff-base annotations for
  them and adds no finalizer of its own; ``peering.standalone`` (no peering objects) and
  ``posting.enabled = False`` (the operator posts its own Events);
* the handler only updates the object cache and wakes the scheduler: agent calls never run
  inside a kopf handler, so a slow agent never blocks kopf's per-object workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from agent_operator.controller.cache import slim
from agent_operator.controller.client import KubeClient
from agent_operator.crd import names

log = logging.getLogger(__name__)
READY_MARKER = "agent-operator ready"
#: objects per page of the initial listing (kopf lists everything in one answer unless told):
#: 10,000 AgentTasks in one answer took the operator from 284 to 359 MB RSS on a restart, in
#: pages of 500 to 318 MB, and to 256 MB with :func:`deliver` (bench ``scale``, with restart)
LIST_CHUNK = 500


def _no_diffbase_storage() -> Any:
    import kopf

    class NoDiffBase(kopf.DiffBaseStorage):
        """Stores nothing and builds an empty essence: no change-detecting handlers here."""

        def build(self, *, body: Any, extra_fields: Any = None) -> Any:
            return kopf.BodyEssence()

        def fetch(self, *, body: Any) -> Any:
            return None

        def store(self, *, body: Any, patch: Any, essence: Any) -> None:
            return None

    return NoDiffBase()


async def connection_info(client: KubeClient) -> Any:
    """kopf's credentials, from the same config (and current token) as the operator's client."""
    import kopf

    config = client.config
    header = await client.authorization(refresh=True)
    scheme, _, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=config.server, ca_path=config.ca_file, insecure=not config.verify,
        scheme=scheme or None, token=token or None,
        certificate_path=config.cert_file, private_key_path=config.key_file,
        default_namespace=config.namespace,
    )


def deliver(event: Mapping[str, Any], on_event: Callable[[str | None, dict[str, Any]], None]) -> None:
    """Hand a watch event's body to ``on_event`` (a shallow copy: the controller owns it).

    kopf holds the body it decoded until the object's worker is done with the event, so
    ``metadata.managedFields`` (most of an AgentTask, never read) is dropped from kopf's own
    dict, not from the copy: the parsed list is freed now, before the next event is decoded
    beside it (bench, 10,000 in flight: 284 -> 274 MB RSS; after a restart, with
    :data:`LIST_CHUNK`, 318 -> 256 MB)."""
    body = event["object"]
    if isinstance(body, dict):
        slim(body)
    on_event(event.get("type"), dict(body))


def registry(on_event: Callable[[str | None, dict[str, Any]], None], client: KubeClient,
             on_ready: Callable[[], None]) -> Any:
    """A registry with only our event handler, our login and a startup hook."""
    import kopf

    reg = kopf.OperatorRegistry()

    @kopf.on.event(names.GROUP, names.VERSION, names.PLURAL, registry=reg)
    async def agenttask_event(event: Mapping[str, Any], **_: Any) -> None:
        deliver(event, on_event)

    @kopf.on.login(registry=reg)
    async def login(**_: Any) -> Any:
        return await connection_info(client)

    @kopf.on.startup(registry=reg)
    async def started(**_: Any) -> None:
        on_ready()

    return reg


def settings(*, watch_inactivity_timeout: float, api_timeout: float, shard_selector: str = "") -> Any:
    """Settings that keep kopf from writing anything by itself, and bound every wait on
    the API server so a silently dead connection is noticed (no deaf operator)."""
    import kopf

    s = kopf.OperatorSettings()
    s.peering.standalone = True
    s.posting.enabled = False
    s.scanning.disabled = True
    s.watching.server_timeout = 300
    s.watching.client_timeout = 330
    s.networking.error_backoffs = [1, 2, 5, 10]
    # the API server sends a bookmark about every minute on an idle watch (kopf asks for
    # them): silence longer than this means the stream died without FIN/RST
    s.watching.inactivity_timeout = watch_inactivity_timeout
    # only on.event handlers: kopf's diff-base (last-handled-configuration) is never used,
    # yet building it cost ~7% of the operator's CPU per event in the bench profiles
    s.persistence.diffbase_storage = _no_diffbase_storage()
    s.watching.chunk_size = LIST_CHUNK
    s.watching.connect_timeout = api_timeout
    s.networking.request_timeout = api_timeout
    s.networking.connect_timeout = api_timeout
    if shard_selector:
        # kopf passes it as ``shardSelector`` on its list and watch requests (KEP-5866)
        s.watching.shard_selectors[names.GROUP, names.PLURAL] = shard_selector
    return s


async def run(reg: Any, opts: Any, namespaces: tuple[str, ...], stop_flag: asyncio.Event | None) -> None:
    """Run kopf with ``reg`` and ``opts`` over ``namespaces`` (all when empty) until stopped."""
    import kopf

    await kopf.operator(registry=reg, settings=opts, standalone=True, clusterwide=not namespaces,
                        namespaces=list(namespaces), stop_flag=stop_flag)
