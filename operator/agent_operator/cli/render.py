"""`agent-operator render`: turn a ``pyflyte serialize`` file into an AgentTask manifest.

``pyflyte serialize`` / ``pyflyte package`` write ``flyteidl.admin.TaskSpec`` files
(``0_<name>_1.pb``).  This command takes such a file (or a bare TaskTemplate, binary or
JSON/YAML), checks ``--input name=value`` against the template's interface and prints an
AgentTask ready for ``kubectl apply -f -``.  Inputs are written back in canonical plain
form, so what is printed is exactly what the operator will parse.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from flyteidl.core import tasks_pb2

from agent_operator.serialization import (
    SpecError,
    flyte2,
    literal_map_to_plain,
    load_inputs,
    load_task_spec_file,
    load_task_template,
)

API_VERSION = "flyteagents.dev/v1alpha1"
KIND = "AgentTask"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``render`` sub-command."""
    p = sub.add_parser(
        "render",
        help="turn a pyflyte-serialized task (.pb TaskSpec/TaskTemplate) into an AgentTask manifest",
    )
    p.add_argument("file", help="0_<name>_1.pb from `pyflyte serialize`, or a TaskTemplate (.pb, .json, .yaml)")
    p.add_argument("--name", help="metadata.name (default: derived from the task name)")
    p.add_argument("--namespace", help="metadata.namespace (default: none, kubectl's current namespace)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input value (YAML scalar or flow value: 42, 1.5, true, [1,2], {a: 1}); repeatable",
    )
    p.add_argument("--inputs-file", type=Path, help="a YAML/JSON mapping of input values")
    p.add_argument("--output-prefix", help="spec.outputPrefix")
    p.add_argument("--base64", action="store_true", help="write spec.taskTemplateBase64 instead of the JSON mapping")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=run)


def read_template(path: Path) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate in ``path``: a TaskSpec or TaskTemplate, binary or JSON/YAML."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return load_task_spec_file(data, field=str(path))
    parsed = yaml.safe_load(text) if text.strip() else None
    if isinstance(parsed, dict) and flyte2.is_flyte2_task_spec_json(parsed):
        return flyte2.task_template_of_spec_json(parsed, str(path))
    if isinstance(parsed, dict) and "template" in parsed and "type" not in parsed:
        return load_task_template(parsed["template"], field=f"{path}: template")
    if isinstance(parsed, dict):
        return load_task_template(parsed, field=str(path))
    return load_task_spec_file(data, field=str(path))


def default_name(template: tasks_pb2.TaskTemplate) -> str:
    """A DNS-1123 name from the task's name (``pkg.module.my_task`` → ``my-task``)."""
    base = template.id.name.rsplit(".", 1)[-1] or template.type
    name = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:63].strip("-")
    return name or "agent-task"


def parse_input_args(pairs: list[str], template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    """``name=value`` pairs → values, each value read as YAML, falling back to the raw text.

    The fallback lets ``--input tag=007`` set a string input although YAML reads an int.
    """
    values: dict[str, Any] = {}
    declared = template.interface.inputs.variables
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise SpecError(f"--input {pair}", "expected NAME=VALUE")
        try:
            parsed = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            parsed = raw
        if name in declared and parsed != raw:
            probe = tasks_pb2.TaskTemplate()
            probe.interface.inputs.variables[name].CopyFrom(declared[name])
            try:
                load_inputs({name: parsed}, probe)
            except SpecError:
                parsed = raw
        values[name] = parsed
    return values


def build_manifest(template: tasks_pb2.TaskTemplate, args: argparse.Namespace) -> dict[str, Any]:
    """The AgentTask as a plain dict."""
    name = args.name or default_name(template)
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise SpecError("--name", f"{name!r} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')")
    if args.namespace is not None and (len(args.namespace) > 63 or not _DNS_LABEL.match(args.namespace)):
        raise SpecError("--namespace", f"{args.namespace!r} is not a valid namespace name")

    given: dict[str, Any] = {}
    if args.inputs_file:
        loaded = yaml.safe_load(args.inputs_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SpecError(str(args.inputs_file), "expected a mapping of input names to values")
        given.update(loaded)
    given.update(parse_input_args(args.input, template))
    lm = load_inputs(given, template)
    plain = literal_map_to_plain(lm)
    inputs = {k: plain[k] for k in sorted(given)}

    metadata: dict[str, Any] = {"name": name}
    if args.namespace:
        metadata["namespace"] = args.namespace
    spec: dict[str, Any] = {}
    if args.base64:
        spec["taskTemplateBase64"] = base64.b64encode(template.SerializeToString(deterministic=True)).decode()
    else:
        spec["taskTemplate"] = flyte2.template_json(template)
    if inputs:
        spec["inputs"] = inputs
    if args.output_prefix:
        spec["outputPrefix"] = args.output_prefix
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def run(args: argparse.Namespace) -> int:
    """Print the manifest; a bad file or input exits 1 with the field named."""
    path = Path(args.file)
    try:
        template = read_template(path)
        manifest = build_manifest(template, args)
    except OSError as e:
        print(f"agent-operator render: {e}", file=sys.stderr)
        return 1
    except SpecError as e:
        print(f"agent-operator render: {e}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(manifest, indent=2))
    else:
        print(yaml.safe_dump(manifest, sort_keys=False), end="")
    return 0
