"""flytekit agents/connectors wrapped as SDK agents (imports flytekit: the optional extra).

The wrappers do exactly what flytekit's own connector service
(``flytekit.extend.backend.connector_service``) does around a connector, so a connector
behaves here as it does under ``pyflyte serve connector``:

* the flyteidl ``TaskTemplate`` / ``LiteralMap`` / ``TaskExecutionMetadata`` messages
  become flytekit model objects (``from_flyte_idl``);
* the connector's ``ResourceMeta`` is stored as the bytes its own ``encode()`` gives and
  decoded with its own ``metadata_type`` before ``get``/``delete``
  (:class:`~agent_operator.bridges.opaque.OpaqueResourceMeta`);
* its ``Resource`` comes back through flytekit's ``Resource.to_flyte_idl`` (the
  TypeEngine turns outputs given as Python values into literals), typed by the task's
  declared outputs when the template has them.

The AgentTask's Secrets (keyword ``secrets``) are visible to the connector through flytekit's
own secret lookup for the duration of the call (:mod:`.secrets`).

One deliberate difference: connection failures and timeouts raised by a connector
(``ConnectionError``, ``TimeoutError``, httpx network/timeout errors, anywhere along the
exception's cause chain; not an illegal header, which is a bad request) become
:class:`~agent_operator.sdk.TransientAgentError`, so the operator retries the call
instead of failing the task.  flytekit's service would report them as INTERNAL.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from flyteidl.admin import agent_pb2
from google.protobuf import json_format
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.extend.backend.base_connector import AsyncConnectorBase as FkAsyncBase
from flytekit.extend.backend.base_connector import Resource as FkResource
from flytekit.extend.backend.base_connector import SyncConnectorBase as FkSyncBase
from flytekit.models.literals import LiteralMap as FkLiteralMap
from flytekit.models.task import TaskExecutionMetadata as FkTaskExecutionMetadata
from flytekit.models.task import TaskTemplate as FkTaskTemplate
from flytekit.sensor.sensor_engine import SensorEngine

from agent_operator.bridges.flytekit.guard import check_sensor
from agent_operator.bridges.flytekit.secrets import TASK_SECRETS
from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.sdk import (
    AsyncAgentBase,
    LiteralMap,
    Resource,
    ResourceMeta,
    SyncAgentBase,
    TaskExecutionMetadata,
    TaskTemplate,
    TransientAgentError,
    invoke,
)
from agent_operator.sdk.errors import cause_chain
from agent_operator.sdk.invoke import accepts_keyword

log = logging.getLogger(__name__)


def _transient_types() -> tuple[type[BaseException], ...]:
    """Errors that mean the connector's service was unreachable or cut the connection.

    httpx's ``TransportError`` also covers ``LocalProtocolError`` (an illegal header value:
    the request itself is bad) and ``UnsupportedProtocol``; those stay permanent.
    """
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    # httpx2 is the httpx fork openai >= 3 is built on; same exception names
    for name in ("httpx", "httpx2"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        types += [getattr(mod, attr) for attr in ("NetworkError", "TimeoutException", "RemoteProtocolError", "ProxyError")
                  if isinstance(getattr(mod, attr, None), type)]
    return tuple(types)


_TRANSIENT = _transient_types()


def transient_cause(error: BaseException) -> BaseException | None:
    """The link of ``error``'s cause chain that makes it worth retrying, or None.

    Client libraries wrap transport errors in their own types (openai's
    ``APIConnectionError`` from ``httpx.RemoteProtocolError``), so the whole chain is read,
    as the operator's error classification reads it.
    """
    return next((link for link in cause_chain(error) if isinstance(link, _TRANSIENT)), None)


async def _call(connector: Any, method: str, secrets: Mapping[str, Mapping[str, str]] | None, **kwargs: Any) -> Any:
    """Call a connector method (plain or async) with the task's secrets visible to flytekit.

    Plain methods run in a worker thread: they get a copy of this context, so the secrets
    travel with them.  Connection trouble (anywhere in the cause chain) becomes
    TransientAgentError.
    """
    func = getattr(connector, method)
    token = TASK_SECRETS.set(secrets or None)
    try:
        if not inspect.iscoroutinefunction(func):
            func = functools.partial(contextvars.copy_context().run, func)
        return await invoke(func, **kwargs)
    except Exception as e:
        cause = transient_cause(e)
        if cause is None:
            raise
        detail = f"{type(e).__name__}: {e}" + ("" if cause is e else f" (caused by {type(cause).__name__}: {cause})")
        raise TransientAgentError(f"flytekit connector {connector.name!r} {method}: {detail}") from e
    finally:
        TASK_SECRETS.reset(token)


def to_flytekit_template(template: TaskTemplate) -> FkTaskTemplate:
    """flyteidl TaskTemplate -> flytekit's model (what the connector service hands a connector)."""
    return FkTaskTemplate.from_flyte_idl(template)


def to_flytekit_inputs(inputs: LiteralMap | None) -> FkLiteralMap | None:
    """flyteidl LiteralMap -> flytekit's model (None stays None)."""
    return None if inputs is None else FkLiteralMap.from_flyte_idl(inputs)


def to_flytekit_metadata(metadata: TaskExecutionMetadata | None) -> FkTaskExecutionMetadata:
    """flyteidl TaskExecutionMetadata -> flytekit's model; an absent one is empty (as in the service)."""
    return FkTaskExecutionMetadata.from_flyte_idl(metadata if metadata is not None else TaskExecutionMetadata())


def _output_python_types(template: TaskTemplate | None) -> dict[str, type] | None:
    """Python types for the template's declared outputs (TypeEngine's guess), or None."""
    if template is None or not template.interface.outputs.variables:
        return None
    try:
        return {
            name: TypeEngine.guess_python_type(FkTaskTemplate.from_flyte_idl(template).interface.outputs[name].type)
            for name in template.interface.outputs.variables
        }
    except Exception as e:  # noqa: BLE001 - fall back to flytekit's untyped conversion
        log.debug("cannot guess output types of %s: %s", template.id.name, e)
        return None


async def from_flytekit_resource(resource: Any, template: TaskTemplate | None = None) -> Resource:
    """flytekit Resource -> SDK Resource with outputs as a flyteidl LiteralMap.

    Python-valued outputs go through flytekit's TypeEngine, typed by the template's
    declared outputs when known (so an ``Optional[int]`` output is a union literal, as
    the task's interface says), otherwise - or when the values do not fit the declared
    types - guessed from the values exactly as flytekit's connector service does.
    """
    if not isinstance(resource, FkResource):
        if isinstance(resource, Resource):
            return resource
        raise TypeError(f"a flytekit connector returned {type(resource).__name__}, expected a flytekit Resource")
    outputs = resource.outputs
    if isinstance(outputs, dict):
        hints = _output_python_types(template)
        if hints and set(outputs) <= set(hints):
            ctx = FlyteContextManager.current_context()
            try:
                lm = await TypeEngine.dict_to_literal_map_pb(ctx, outputs, hints)
            except Exception as e:  # noqa: BLE001 - e.g. an int for a declared float: convert as flytekit's service does
                log.debug("typed output conversion of %s failed (%s); guessing types from the values", list(outputs), e)
            else:
                return Resource(
                    phase=resource.phase,
                    message=resource.message,
                    log_links=list(resource.log_links) if resource.log_links else None,
                    outputs=lm,
                    custom_info=resource.custom_info,
                )
    pb: agent_pb2.Resource = await resource.to_flyte_idl()
    return Resource.from_flyte_idl(pb)


class _FlytekitMixin:
    """Shared by both wrappers: the wrapped connector and a name saying where it comes from."""

    connector: Any

    def _setup(self, connector: Any) -> None:
        self.connector = connector
        self.name = f"{connector.name} (flytekit)"


class FlytekitAsyncAgent(_FlytekitMixin, AsyncAgentBase):
    """A flytekit ``AsyncConnectorBase`` (or deprecated ``AsyncAgentBase``) as an SDK agent."""

    def __init__(self, connector: FkAsyncBase) -> None:
        category = connector.task_category
        super().__init__(
            task_type_name=category.name, task_type_version=category.version, metadata_type=OpaqueResourceMeta
        )
        self._setup(connector)

    def _decode(self, resource_meta: ResourceMeta) -> Any:
        return self.connector.metadata_type.decode(resource_meta.encode())

    async def create(  # type: ignore[override]
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> OpaqueResourceMeta:
        """``connector.create`` on flytekit models; its metadata's own bytes are the handle."""
        if isinstance(self.connector, SensorEngine):
            check_sensor(dict(json_format.MessageToDict(task_template.custom)))
        meta = await _call(
            self.connector,
            "create",
            kwargs.get("secrets"),
            task_template=to_flytekit_template(task_template),
            inputs=to_flytekit_inputs(inputs),
            output_prefix=output_prefix,
            task_execution_metadata=to_flytekit_metadata(task_execution_metadata),
        )
        return OpaqueResourceMeta(data=meta.encode())

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """``connector.get`` with the metadata decoded by the connector's ``metadata_type``."""
        resource = await _call(self.connector, "get", kwargs.get("secrets"), resource_meta=self._decode(resource_meta))
        return await from_flytekit_resource(resource, kwargs.get("task_template"))

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """``connector.delete`` (idempotency is the connector's business, as under flytekit)."""
        await _call(self.connector, "delete", kwargs.get("secrets"), resource_meta=self._decode(resource_meta))

    async def get_logs(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskLogsResponse:  # type: ignore[override]
        """``connector.get_logs`` when the connector implements it."""
        result: agent_pb2.GetTaskLogsResponse = await _call(
            self.connector, "get_logs", kwargs.get("secrets"), resource_meta=self._decode(resource_meta)
        )
        return result


class FlytekitSyncAgent(_FlytekitMixin, SyncAgentBase):
    """A flytekit ``SyncConnectorBase`` (or deprecated ``SyncAgentBase``) as an SDK agent."""

    def __init__(self, connector: FkSyncBase) -> None:
        category = connector.task_category
        super().__init__(task_type_name=category.name, task_type_version=category.version)
        self._setup(connector)

    async def do(  # type: ignore[override]
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        **kwargs: Any,
    ) -> Resource:
        """``connector.do`` on flytekit models; Python-valued outputs typed by the template."""
        extra: dict[str, Any] = {}
        metadata = kwargs.get("task_execution_metadata")
        if metadata is not None and accepts_keyword(self.connector.do, "task_execution_metadata"):
            extra["task_execution_metadata"] = to_flytekit_metadata(metadata)
        resource = await _call(
            self.connector,
            "do",
            kwargs.get("secrets"),
            task_template=to_flytekit_template(task_template),
            inputs=to_flytekit_inputs(inputs),
            output_prefix=output_prefix,
            **extra,
        )
        return await from_flytekit_resource(resource, task_template)
