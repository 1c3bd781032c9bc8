"""flyteidl 1 <-> flyteidl2 messages, for the Flyte 2 bridges (needs the ``[flyte2]`` extra).

Checked field by field against both packages' descriptors (flyteidl 1.16, flyteidl2 2.0.51;
``tests/unit/test_flyte2_idl.py`` keeps checking it): the connector messages of Flyte 2 keep
flyteidl 1's field numbers and wire types and only add fields (``TaskTemplate.reuse_policy``,
``TaskLog.icon_uri``, ``Literal.artifact_id``, ...) or drop deprecated ones
(``Resource.state``, ``Resource.agent_error``).  Two differences are only in name and
spelling, not on the wire: flyteidl 1's ``LiteralMap`` (a ``map<string, Literal>``) is
Flyte 2's ``Inputs`` / ``Outputs`` (a repeated ``NamedLiteral{name, value}``), and a map's
entries are exactly such messages.  So every conversion is a serialize/parse, which keeps
fields the other side does not know as unknown fields instead of dropping them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.core import execution_pb2 as execution2
from flyteidl2.core import literals_pb2 as literals2
from flyteidl2.task import common_pb2
from google.protobuf import message

M = TypeVar("M", bound=message.Message)


def convert(msg: message.Message, cls: type[M]) -> M:
    """``msg`` re-read as ``cls`` (the same bytes: the two IDLs share the layout)."""
    return cls.FromString(msg.SerializeToString())


def outputs_to_flyte2(lm: literals_pb2.LiteralMap) -> common_pb2.Outputs:
    """flyteidl 1 LiteralMap -> Flyte 2 Outputs, entries in name order."""
    return common_pb2.Outputs(literals=[common_pb2.NamedLiteral(name=k, value=convert(lm.literals[k], literals2.Literal))
                                        for k in sorted(lm.literals)])


def inputs_to_flyte2(lm: literals_pb2.LiteralMap) -> common_pb2.Inputs:
    """flyteidl 1 LiteralMap -> Flyte 2 Inputs, entries in name order."""
    return common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name=k, value=convert(lm.literals[k], literals2.Literal))
                                       for k in sorted(lm.literals)])


def named_to_literal_map(named: Any) -> literals_pb2.LiteralMap:
    """Flyte 2 Inputs/Outputs -> flyteidl 1 LiteralMap (a repeated name keeps its last value, as a map does)."""
    lm = literals_pb2.LiteralMap()
    for entry in named.literals:
        lm.literals[entry.name].CopyFrom(convert(entry.value, literals_pb2.Literal))
    return lm


def resource_to_flyte2(resource: agent_pb2.Resource) -> c2.Resource:
    """flyteidl 1 ``admin.Resource`` -> Flyte 2 ``connector.Resource`` (``state`` / ``agent_error``
    have no Flyte 2 field and are left out)."""
    out = c2.Resource(phase=resource.phase, message=resource.message)  # type: ignore[arg-type]
    out.log_links.extend(convert(link, execution2.TaskLog) for link in resource.log_links)
    if resource.HasField("outputs"):
        out.outputs.CopyFrom(outputs_to_flyte2(resource.outputs))
    if resource.HasField("custom_info"):
        out.custom_info.CopyFrom(resource.custom_info)
    return out


def resource_from_flyte2(resource: c2.Resource) -> agent_pb2.Resource:
    """Flyte 2 ``connector.Resource`` -> flyteidl 1 ``admin.Resource``."""
    out = agent_pb2.Resource(phase=resource.phase, message=resource.message)  # type: ignore[arg-type]
    out.log_links.extend(convert(link, execution_pb2.TaskLog) for link in resource.log_links)
    if resource.HasField("outputs"):
        out.outputs.CopyFrom(named_to_literal_map(resource.outputs))
    if resource.HasField("custom_info"):
        out.custom_info.CopyFrom(resource.custom_info)
    return out

