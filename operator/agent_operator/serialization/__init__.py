"""What users put into an AgentTask, turned into flyteidl messages and back.

``load_task_template`` / ``load_inputs`` accept the JSON/YAML/base64 forms an AgentTask
spec may carry and raise :class:`SpecError` naming the field; ``literal_map_to_plain``
renders outputs for the AgentTask status.  This package imports flyteidl only, so the SDK
can use it without an import cycle.
"""

from agent_operator.serialization.errors import SpecError
from agent_operator.serialization.inputs import load_inputs
from agent_operator.serialization.literals import (
    describe_type,
    guess_literal_type,
    literal_map_to_plain,
    literal_to_plain,
    plain_map_to_literal_map,
    plain_to_literal,
    walk_literal,
)
from agent_operator.serialization.templates import load_task_spec_file, load_task_template

__all__ = [
    "SpecError",
    "describe_type",
    "guess_literal_type",
    "literal_map_to_plain",
    "literal_to_plain",
    "load_inputs",
    "load_task_spec_file",
    "load_task_template",
    "plain_map_to_literal_map",
    "plain_to_literal",
    "walk_literal",
]
