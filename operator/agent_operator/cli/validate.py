"""`agent-operator validate FILE|DIR|- ...`: check AgentTask manifests before they reach a cluster.

Three layers, each reported as FILE:DOC: FIELD: MESSAGE (DOC counts the YAML
documents of the file from 1), every problem of a document in one run:

1. admission - what the API server would reject: the CRD schema and CEL rules (through
   the same Python model the CRD is generated from) and strict unknown-field checks;
2. decoding - what the operator would fail with InvalidSpec: the template must decode
   to a flyteidl TaskTemplate with a type, the inputs must fit its interface;
3. agents - a task type no loaded agent serves is a warning (the cluster's operator may
   load other agents), an error with --agents-strict.

A directory stands for its *.yaml, *.yml and *.json files (-R: subdirectories too).
Documents of other kinds are skipped (so a whole kustomize output can be piped in).
Duplicate mapping keys and manifests concatenated without '---' are errors.

Exit codes: 0 valid (warnings allowed), 1 at least one invalid document or file (not
YAML, too large), 2 usage (a bad flag, a file that cannot be read).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, TextIO

from agent_operator.crd.admission import admission_check
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.names import GROUP, KIND
from agent_operator.crd.resource import AgentTask
from agent_operator.cli import manifests
from agent_operator.cli.manifests import EXIT_INVALID, EXIT_OK, EXIT_USAGE, ManifestError, UsageError
from agent_operator.crd.names import API_VERSION
from agent_operator.serialization import SpecError, load_inputs, load_task_template

#: findings per document at most (a hostile file cannot make the report unbounded)
MAX_FINDINGS = 50


@dataclass
class Finding:
    """One problem: ``severity`` is ``error`` or ``warning``; ``field`` a dotted path."""

    severity: str
    field: str
    message: str


@dataclass
class DocumentResult:
    """The verdict on one YAML document."""

    file: str
    index: int
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    skipped: bool = False
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """No error (warnings allowed)."""
        return not any(f.severity == "error" for f in self.findings)

    def error(self, exc: InvalidField | SpecError) -> None:
        """Record an error from the model or the decoder."""
        self.findings.append(Finding("error", exc.field, exc.message))


@dataclass(frozen=True)
class Options:
    """What to check beyond admission."""

    decode: bool = True
    agents_strict: bool = False
    #: (taskType, version) pairs served by the loaded agents; None: do not check agents
    known_task_types: frozenset[tuple[str, int]] | None = None


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``validate`` sub-command."""
    p = sub.add_parser(
        "validate",
        help="check AgentTask manifests offline: admission rules, template/inputs decoding, known agents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="YAML/JSON manifests (multi-document) or directories of them; '-' reads stdin")
    p.add_argument("-R", "--recursive", action="store_true", help="also read the subdirectories of a directory")
    p.add_argument("--max-bytes", type=int, default=manifests.DEFAULT_MAX_BYTES, metavar="N",
                   help=f"refuse a file larger than N bytes before parsing it (default {manifests.DEFAULT_MAX_BYTES})")
    p.add_argument("--agents-strict", action="store_true",
                   help="a task type no loaded agent serves is an error, not a warning")
    p.add_argument("--no-decode", action="store_true",
                   help="only the admission checks (what kubectl apply would reject); skip decoding")
    p.add_argument("--no-agents", action="store_true", help="do not load agents or check task types")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text: one line per problem (FILE:DOC: FIELD: MESSAGE); json: one report for CI")
    p.add_argument("-q", "--quiet", action="store_true", help="text output: print only problems")
    from agent_operator.cli import agent_sources

    agent_sources.add_arguments(p)
    p.set_defaults(func=run)


# -- admission: every error of a document -------------------------------------------------
#
# The model (crd/) stops at the first bad field, which is what the operator and the API
# server need.  To report every error, the document is repaired after each one and checked
# again: the bad field is removed, or replaced by a harmless stand-in where removing it
# would only cause a second, derived error (a required field, one of a required pair).
# An error on a field already reported is such a derived error and is not reported again.

_PLACEHOLDER_NAME = "validate-placeholder"
#: stand-ins for fields whose absence is an error of its own
_STAND_INS: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {"name": _PLACEHOLDER_NAME},
    "metadata.name": _PLACEHOLDER_NAME,
    "spec": {"taskTemplate": {"type": _PLACEHOLDER_NAME}},
    "spec.taskTemplate": {"type": _PLACEHOLDER_NAME},
    "spec.taskTemplateBase64": "",
}
_STEP = re.compile(r"\[(\d+)\]")
_SECRET_REF = re.compile(r"^spec\.secretRefs\[\d+\]")


def _locate(doc: Any, path: str) -> tuple[Any, Any] | None:
    """(container, key) of the dotted ``path`` in ``doc``: keys may contain dots (labels)."""
    node, rest = doc, path
    parent: tuple[Any, Any] | None = None
    while rest:
        m = _STEP.match(rest)
        if m and isinstance(node, list):
            index = int(m.group(1))
            if index >= len(node):
                return None
            parent, node, rest = (node, index), node[index], rest[m.end():].lstrip(".")
            continue
        if not isinstance(node, dict):
            return None
        # the longest key that the path continues with ('example.com/x' holds a dot)
        keys = [k for k in node if isinstance(k, str) and (rest == k or rest.startswith((k + ".", k + "[")))]
        if not keys:
            return None
        key = max(keys, key=len)
        parent, node, rest = (node, key), node[key], rest[len(key):].lstrip(".")
    return parent


def _repair(doc: dict[str, Any], path: str) -> bool:
    """Remove or replace the field at ``path``; False when nothing could be changed."""
    ref = _SECRET_REF.match(path)
    if ref:  # any problem inside one entry: a unique stand-in entry (keeps the other indexes)
        found = _locate(doc, ref.group(0))
        if found is None:
            return False
        container, key = found
        stand_in: Any = {"name": f"{_PLACEHOLDER_NAME}-{key}"}
        if container[key] == stand_in:
            return False
        container[key] = stand_in
        return True
    found = _locate(doc, path)
    stand_in = _STAND_INS.get(path)
    if stand_in is not None:
        container, key = found if found else (_parent_for(doc, path), path.rsplit(".", 1)[-1])
        if container is None or (found and container[key] == stand_in):
            if found:  # the stand-in itself is refused (e.g. a pair set twice): drop the field
                del container[key]
                return True
            return False
        container[key] = copy.deepcopy(stand_in)
        return True
    if found is None:
        return False
    container, key = found
    del container[key]
    return True


def _parent_for(doc: dict[str, Any], path: str) -> Any:
    """The mapping that should hold the missing field ``path`` (created for ``metadata``/``spec``)."""
    if "." not in path:
        return doc
    head = path.rsplit(".", 1)[0]
    found = _locate(doc, head)
    if found is None:
        return None
    container, key = found
    return container[key] if isinstance(container[key], dict) else None


def admission_findings(doc: Any) -> tuple[AgentTask | None, list[InvalidField]]:
    """Every admission error of ``doc``, and the typed task when there is none."""
    try:
        return admission_check(doc), []
    except InvalidField as e:
        first: InvalidField = e
    if not isinstance(doc, Mapping):
        return None, [first]
    errors = [first]
    work = copy.deepcopy(dict(doc))
    reported = {first.field}
    last = first
    for _ in range(4 * MAX_FINDINGS):
        if len(errors) >= MAX_FINDINGS or not _repair(work, last.field):
            break
        try:
            admission_check(work)
            break
        except InvalidField as e:
            last = e
            if e.field not in reported:
                reported.add(e.field)
                errors.append(e)
    return None, errors


# -- decoding: the template, then each input on its own ------------------------------------

def input_errors(value: Any, template: Any, where: str) -> list[SpecError]:
    """Every problem of plain inputs (unknown names, bad values, missing ones), not just the first."""
    try:
        load_inputs(value, template, field=where)
        return []
    except SpecError as e:
        whole: SpecError = e
    if not isinstance(value, Mapping) or "literals" in value:
        return [whole]  # one LiteralMap, one verdict
    from flyteidl.core import tasks_pb2

    declared = template.interface.inputs.variables
    errors: list[SpecError] = []
    for name in sorted(set(value) | set(declared), key=str):
        if name in declared:
            probe = tasks_pb2.TaskTemplate(type=template.type)
            probe.interface.inputs.variables[name].CopyFrom(declared[name])
            given = {name: value[name]} if name in value else {}
        else:
            probe, given = template, {name: value[name]}
        try:
            load_inputs(given, probe, field=where)
        except SpecError as problem:
            errors.append(problem)
    return errors[:MAX_FINDINGS]


def check_decoding(task: AgentTask, result: DocumentResult, options: Options) -> None:
    """Decode template and inputs as the operator will; record what would end in InvalidSpec."""
    spec = task.spec
    assert spec is not None, "admission_check loads the spec strictly"
    try:
        template = load_task_template(spec.template_value, field=spec.template_field)
    except SpecError as e:
        result.error(e)
        return
    problems = input_errors(spec.inputs_value, template, spec.inputs_field)
    for problem in problems:
        result.error(problem)
    known = options.known_task_types
    if known is None or problems:
        return
    wanted = (template.type, template.task_type_version)
    if wanted not in known:
        served = ", ".join(sorted(f"{n}" + (f" (v{v})" if v else "") for n, v in known)) or "none"
        result.findings.append(Finding(
            "error" if options.agents_strict else "warning",
            f"{spec.template_field}.type",
            f"no loaded agent serves task type {template.type!r} version {template.task_type_version} "
            f"(loaded: {served}); the operator would fail it with AgentNotFound",
        ))


def validate_document(doc: Any, file: str, index: int, options: Options) -> DocumentResult:
    """Check one parsed document; non-AgentTask kinds are skipped."""
    result = DocumentResult(file=file, index=index)
    if isinstance(doc, Mapping):
        meta = doc.get("metadata")
        result.kind = doc.get("kind") if isinstance(doc.get("kind"), str) else None
        if isinstance(meta, Mapping):
            result.name = meta.get("name") if isinstance(meta.get("name"), str) else None
            result.namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
        api_version = doc.get("apiVersion")
        ours = isinstance(api_version, str) and api_version.split("/")[0] == GROUP
        if result.kind != KIND and not ours:
            result.skipped = True
            return result
    task, errors = admission_findings(doc)
    for e in errors:
        result.error(e)
    if task is None:
        return result
    if isinstance(doc, Mapping) and "status" in doc:
        result.findings.append(Finding("warning", "status", "ignored on create (the operator writes status)"))
    if options.decode:
        check_decoding(task, result, options)
    return result


def validate_text(text: str, file: str, options: Options) -> list[DocumentResult]:
    """Check every document of ``text``; bad YAML raises :class:`~agent_operator.cli.manifests.ManifestError`."""
    docs = manifests.iter_documents(text, file)  # one document in memory at a time
    return [validate_document(doc, file, i, options) for i, doc in enumerate(docs, start=1)]


def _known_task_types(args: argparse.Namespace) -> frozenset[tuple[str, int]]:
    from agent_operator.cli import agent_sources
    from agent_operator.sdk import AgentRegistry

    agent_sources.load(args)
    try:
        return frozenset((a.task_category.name, a.task_category.version) for a in AgentRegistry.agents())
    finally:
        agent_sources.close()


def _print_text(results: list[DocumentResult], problems: list[str], quiet: bool, out: TextIO) -> None:
    for r in results:
        where = f"{r.file}:{r.index}"
        if r.skipped:
            if not quiet:
                print(f"{where}: skipped ({r.kind or 'not a Kubernetes object'})", file=out)
            continue
        for f in r.findings:
            prefix = "" if f.severity == "error" else "warning: "
            print(f"{where}: {prefix}{f.field}: {f.message}", file=out)
        if r.valid and not quiet:
            print(f"{where}: AgentTask {r.name or '(generated name)'} is valid", file=out)
    for p in problems:
        print(p, file=out)
    checked = [r for r in results if not r.skipped]
    invalid = sum(not r.valid for r in checked)
    if not quiet or invalid or problems:
        print(f"{len(checked)} AgentTask(s) checked, {invalid} invalid"
              + (f", {len(problems)} file(s) refused" if problems else ""), file=out)


def run(args: argparse.Namespace, stdin: TextIO | BinaryIO | None = None, out: TextIO | None = None) -> int:
    """Validate every file; print text or JSON; return the exit code (see module docstring)."""
    out = out or sys.stdout
    raw_stdin: Any = stdin if stdin is not None else sys.stdin
    try:
        sources = manifests.expand(args.files, recursive=args.recursive)
    except UsageError as e:
        return manifests.fail("validate", [e], EXIT_USAGE)
    known = None
    if not args.no_agents and not args.no_decode:
        try:
            known = _known_task_types(args)
        except Exception as e:  # noqa: BLE001 - an agent that fails to load is reported, not fatal
            print(f"agent-operator validate: agents not checked: {e}", file=sys.stderr)
            if args.agents_strict:
                return EXIT_USAGE
    options = Options(decode=not args.no_decode, agents_strict=args.agents_strict, known_task_types=known)
    results: list[DocumentResult] = []
    problems: list[str] = []
    for source in sources:
        try:
            text = manifests.read_source(source, _binary(raw_stdin) if source.path == "-" else None, args.max_bytes)
            results.extend(validate_text(text, source.label, options))
        except UsageError as e:
            return manifests.fail("validate", [e], EXIT_USAGE)
        except ManifestError as e:
            problems.append(str(e))
    if args.output == "json":
        payload = {
            "valid": not problems and all(r.valid for r in results),
            "documents": [{**asdict(r), "valid": r.valid} for r in results],
            "refused": problems,
        }
        print(json.dumps(payload, indent=2), file=out)
    else:
        _print_text(results, problems, args.quiet, out)
    return EXIT_OK if not problems and all(r.valid for r in results) else EXIT_INVALID


def _binary(stream: Any) -> BinaryIO:
    """Standard input as bytes (tests pass a StringIO)."""
    if hasattr(stream, "buffer"):
        return stream.buffer  # type: ignore[no-any-return]
    if isinstance(stream.read(0), str):
        import io

        return io.BytesIO(stream.read().encode("utf-8"))
    return stream  # type: ignore[no-any-return]
