"""`agent-operator render`: turn pyflyte's output into an AgentTask manifest.

`pyflyte serialize` writes flyteidl.admin.TaskSpec files (0_<name>_1.pb); `pyflyte
package` packs the same files into an archive (flyte-package.tgz).  This command takes such
a file, an archive (--task picks one of its tasks), or a bare TaskTemplate (binary or
JSON/YAML), checks every --input name=value against the template's interface and prints
an AgentTask ready for `kubectl apply -f -`.  Inputs are written back in canonical plain
form, so what is printed is exactly what the operator will parse.

Exit codes: 0 printed, 1 the file or an input does not fit (every problem is listed),
2 usage (a bad flag, a file that cannot be read, an archive with several tasks and no --task).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import yaml
from flyteidl.core import tasks_pb2

from agent_operator.cli import manifests
from agent_operator.cli.manifests import EXIT_INVALID, EXIT_OK, EXIT_USAGE, ManifestError, UsageError
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


#: pyflyte names the files of a package {index}_{name}_{resource type}.pb; 1 is a task
#: (2 a workflow, 3 a launch plan), flyteidl.core.ResourceType
_TASK_MEMBER = re.compile(r"(?:^|/)\d+_(?P<name>.+)_1\.pb$")
#: members of an archive read at most (a package holds a few files per task)
MAX_ARCHIVE_MEMBERS = 10_000


class RenderError(Exception):
    """Everything wrong with one render, each a :class:`SpecError` naming its field."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def _input_pair(text: str) -> str:
    """``--input`` syntax: NAME=VALUE (argparse reports anything else as a usage error)."""
    name, sep, _ = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return text


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``render`` sub-command."""
    p = sub.add_parser(
        "render",
        help="turn pyflyte output (.pb TaskSpec/TaskTemplate, pyflyte package .tgz) into an AgentTask manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="0_<name>_1.pb from `pyflyte serialize`, a `pyflyte package` archive (.tgz), "
                   "or a TaskTemplate (.pb, .json, .yaml)")
    p.add_argument("--task", metavar="NAME",
                   help="the task to render from an archive (its name, e.g. my_module.my_task or my_task)")
    p.add_argument("--name", help="metadata.name (default: derived from the task name)")
    p.add_argument("--namespace", help="metadata.namespace (default: none, kubectl's current namespace)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        type=_input_pair,
        metavar="NAME=VALUE",
        help="an input value (YAML scalar or flow value: 42, 1.5, true, [1,2], {a: 1}); repeatable",
    )
    p.add_argument("--inputs-file", type=Path, metavar="FILE", help="a YAML/JSON mapping of input values")
    p.add_argument("--output-prefix", metavar="PREFIX", help="spec.outputPrefix (where the agent may write outputs)")
    p.add_argument("--base64", action="store_true", help="write spec.taskTemplateBase64 instead of the JSON mapping")
    p.add_argument("--max-bytes", type=int, default=manifests.DEFAULT_MAX_BYTES, metavar="N",
                   help=f"refuse a file (or archive member) larger than N bytes (default {manifests.DEFAULT_MAX_BYTES})")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="manifest format (default yaml)")
    p.set_defaults(func=run)


def read_template(path: Path, max_bytes: int = manifests.DEFAULT_MAX_BYTES, task: str | None = None,
                  ) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate in ``path``: a TaskSpec or TaskTemplate, binary or JSON/YAML, or an archive."""
    try:
        with open(path, "rb") as f:
            data = manifests.read_bounded(f, str(path), max_bytes)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    if data[:2] == b"\x1f\x8b" or tarfile.is_tarfile(path):
        return read_archive(path, task, max_bytes)
    if task is not None:
        raise UsageError(f"--task: {path} is not an archive (pyflyte package .tgz); it holds one task")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return load_task_spec_file(data, field=str(path))
    parsed = manifests.load_documents(text, str(path)) if text.strip() else []
    if len(parsed) == 1 and isinstance(parsed[0], dict):
        doc = parsed[0]
        if doc.get("kind") == KIND or str(doc.get("apiVersion", "")).startswith("flyteagents.dev/"):
            raise SpecError(str(path), "this is an AgentTask manifest already: render takes what pyflyte writes "
                            "(a .pb file or a pyflyte package archive); check a manifest with "
                            f"`agent-operator validate {path}`")
        if flyte2.is_flyte2_task_spec_json(doc):
            return flyte2.task_template_of_spec_json(doc, str(path))
        if "template" in doc and "type" not in doc:
            return load_task_template(doc["template"], field=f"{path}: template")
        return load_task_template(doc, field=str(path))
    return load_task_spec_file(data, field=str(path))


def read_archive(path: Path, task: str | None, max_bytes: int) -> tasks_pb2.TaskTemplate:
    """One task of a ``pyflyte package`` archive; ``task`` names it unless there is only one.

    Members are read in memory, never extracted; each is bounded by ``max_bytes``.
    """
    found: dict[str, tuple[str, tasks_pb2.TaskTemplate]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_ARCHIVE_MEMBERS:
                    raise ManifestError(f"{path}: more than {MAX_ARCHIVE_MEMBERS} files: not a pyflyte package")
                match = _TASK_MEMBER.search(member.name)
                if not member.isfile() or not match:
                    continue
                if member.size > max_bytes:
                    raise ManifestError(f"{path}:{member.name}: larger than {max_bytes} bytes (--max-bytes)")
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file
                template = load_task_spec_file(stream.read(), field=f"{path}:{member.name}")
                found[template.id.name or match.group("name")] = (member.name, template)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ManifestError(f"{path}: not a readable archive: {e}") from None
    if not found:
        raise ManifestError(f"{path}: no task in this archive (pyflyte package writes tasks as <n>_<name>_1.pb)")
    names = sorted(found)
    if task is None:
        if len(found) == 1:
            return found[names[0]][1]
        raise UsageError(f"{path} holds {len(found)} tasks: pick one with --task ({', '.join(names)})")
    chosen = [n for n in names if task in (n, n.rsplit(".", 1)[-1])]
    if len(chosen) != 1:
        what = "no" if not chosen else "more than one"
        raise UsageError(f"--task {task}: {what} task of that name in {path} (tasks: {', '.join(names)})")
    return found[chosen[0]][1]


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


def _read_inputs_file(path: Path, max_bytes: int) -> dict[str, Any]:
    docs = manifests.load_documents(manifests.read_source(manifests.Source(str(path)), None, max_bytes), str(path))
    if not docs:
        return {}
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise SpecError(str(path), "expected one mapping of input names to values")
    return docs[0]


def build_manifest(template: tasks_pb2.TaskTemplate, args: argparse.Namespace) -> dict[str, Any]:
    """The AgentTask as a plain dict; :class:`RenderError` lists every problem."""
    from agent_operator.cli.validate import input_errors

    errors: list[SpecError] = []
    name = args.name or default_name(template)
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append(SpecError("--name", f"{name!r} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')"))
    if args.namespace is not None and (len(args.namespace) > 63 or not _DNS_LABEL.match(args.namespace)):
        errors.append(SpecError("--namespace", f"{args.namespace!r} is not a valid namespace name"))

    given: dict[str, Any] = {}
    if args.inputs_file:
        given.update(_read_inputs_file(args.inputs_file, getattr(args, "max_bytes", manifests.DEFAULT_MAX_BYTES)))
    given.update(parse_input_args(args.input, template))
    errors.extend(input_errors(given, template, "inputs"))
    if errors:
        raise RenderError(errors)
    plain = literal_map_to_plain(load_inputs(given, template))
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
    """Print the manifest; see the module docstring for the exit codes."""
    try:
        template = read_template(Path(args.file), args.max_bytes, args.task)
        manifest = build_manifest(template, args)
    except UsageError as e:
        return manifests.fail("render", [e], EXIT_USAGE)
    except (ManifestError, SpecError) as e:
        return manifests.fail("render", [e], EXIT_INVALID)
    except RenderError as e:
        return manifests.fail("render", e.errors, EXIT_INVALID)
    if args.output == "json":
        print(json.dumps(manifest, indent=2))
    else:
        print(yaml.safe_dump(manifest, sort_keys=False), end="")
    return EXIT_OK
