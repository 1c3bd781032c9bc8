"""A Flyte 2 ``flyte.connectors.AsyncConnector`` as an SDK agent, called in this process.

Each call does what the SDK's own connector server does around the connector (read from
``flyte.connectors._server`` 2.12), with public SDK API only:

* the template is handed over as a ``flyteidl2.core.TaskTemplate`` (the same bytes,
  :mod:`agent_operator.bridges.flyte2idl`);
* inputs become Python values with ``flyte.types.TypeEngine``, typed by the template's
  declared inputs (``TypeEngine.guess_python_type``), as the server does;
* the AgentTask's Secrets become keyword arguments (key -> value), exactly what the server
  passes from a ``Connection``;
* the connector's ``ResourceMeta`` is stored as its own ``encode()`` bytes and decoded with
  its ``metadata_type``; outputs given as Python values become literals with
  ``TypeEngine``, typed from the values as the server does (``get`` has no template; when a
  caller passes ``task_template``, its declared output types are used instead), and the
  reconcile core then checks them against the task's interface.

Connection failures anywhere in an exception's cause chain are transient, as for flytekit
connectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.core import literals_pb2 as literals2
from flyteidl2.core import tasks_pb2 as tasks2
from flyteidl2.core import types_pb2 as types2
from flyte.types import TypeEngine

from agent_operator.bridges.flyte2idl import convert
from agent_operator.bridges.opaque import OpaqueResourceMeta
from agent_operator.bridges.remote.flyte2 import connection
from agent_operator.sdk import (
    AsyncAgentBase,
    LiteralMap,
    Resource,
    ResourceMeta,
    TaskExecutionMetadata,
    TaskTemplate,
    TransientAgentError,
)
from agent_operator.sdk.errors import cause_chain


def _kwargs(task_type: str, secrets: Mapping[str, Mapping[str, str]] | None) -> dict[str, str]:
    """The keyword arguments the SDK's server would pass for a Connection carrying these Secrets."""
    return dict(connection(task_type, secrets).secrets)


async def _native_inputs(template: TaskTemplate, inputs: LiteralMap | None) -> dict[str, Any]:
    """Inputs as Python values, typed by the template's declared inputs (undeclared ones are
    not passed, as the SDK's server does)."""
    if inputs is None or not inputs.literals:
        return {}
    declared = template.interface.inputs.variables
    types: dict[str, type] = {name: TypeEngine.guess_python_type(convert(declared[name].type, types2.LiteralType))
             for name in inputs.literals if name in declared}
    if not types:
        return {}
    values: dict[str, Any] = await TypeEngine.literal_map_to_kwargs(convert(inputs, literals2.LiteralMap), types)
    return values


async def _outputs(values: Mapping[str, Any], template: TaskTemplate | None) -> literals_pb2.LiteralMap:
    hints: dict[str, type] = {}
    if template is not None:
        for name, var in template.interface.outputs.variables.items():
            if name in values:
                hints[name] = TypeEngine.guess_python_type(convert(var.type, types2.LiteralType))
    lm = await TypeEngine.dict_to_literal_map(dict(values), hints)
    return convert(lm, literals_pb2.LiteralMap)


class Flyte2AsyncAgent(AsyncAgentBase):
    """One registered Flyte 2 connector serving one task category."""

    def __init__(self, connector: Any, task_type: str, version: int) -> None:
        super().__init__(task_type_name=task_type, task_type_version=version, metadata_type=OpaqueResourceMeta)
        self.connector = connector
        self.name = f"{connector.name} (flyte2)"  # type: ignore[misc]  # per object, as flytekit's wrappers

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self.connector, method)(**kwargs)
        except Exception as e:
            cause = next((c for c in cause_chain(e) if isinstance(c, (ConnectionError, TimeoutError))), None)
            if cause is None:
                raise
            raise TransientAgentError(f"Flyte 2 connector {self.connector.name!r} {method}: {type(e).__name__}: {e}") \
                from e

    async def create(  # type: ignore[override]
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> OpaqueResourceMeta:
        """``connector.create`` with a flyteidl2 template, native inputs and the secrets as keywords."""
        meta = await self._call(
            "create",
            task_template=convert(task_template, tasks2.TaskTemplate),
            output_prefix=output_prefix,
            inputs=await _native_inputs(task_template, inputs),
            task_execution_metadata=(convert(task_execution_metadata, c2.TaskExecutionMetadata)
                                     if task_execution_metadata is not None else None),
            **_kwargs(task_template.type, kwargs.get("secrets")),
        )
        return OpaqueResourceMeta(data=meta.encode())

    def _decode(self, resource_meta: ResourceMeta) -> Any:
        return self.connector.metadata_type.decode(resource_meta.encode())

    async def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """``connector.get``; Python outputs typed by the template's declared outputs."""
        res = await self._call("get", resource_meta=self._decode(resource_meta),
                               **_kwargs(self.task_category.name, kwargs.get("secrets")))
        pb = agent_pb2.Resource(phase=res.phase, message=res.message or "")
        if res.log_links:
            pb.log_links.extend(convert(link, execution_pb2.TaskLog) for link in res.log_links)
        if res.outputs:
            pb.outputs.CopyFrom(await _outputs(res.outputs, kwargs.get("task_template")))
        if res.custom_info:
            pb.custom_info.update(res.custom_info)
        return Resource.from_flyte_idl(pb)

    async def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:  # type: ignore[override]
        """``connector.delete``."""
        await self._call("delete", resource_meta=self._decode(resource_meta),
                         **_kwargs(self.task_category.name, kwargs.get("secrets")))
