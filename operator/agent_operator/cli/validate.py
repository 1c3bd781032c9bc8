"""`agent-operator validate FILE...`: check AgentTask manifests before they reach a cluster.

Three layers, each reported as ``FILE:DOC: FIELD: MESSAGE`` (DOC counts the YAML
documents of the file from 1):

1. admission - what the API server would reject: the CRD schema and CEL rules (through
   the same Python model the CRD is generated from, :mod:`agent_operator.crd.admission`)
   and strict unknown-field checks;
2. decoding - what the operator would fail with ``InvalidSpec``: the template must decode
   to a flyteidl TaskTemplate with a type, the inputs must fit its interface
   (:mod:`agent_operator.serialization`);
3. agents - a task type no loaded agent serves is a warning (the cluster's operator may
   load other agents), an error with ``--agents-strict``.

Documents of other kinds are skipped (so a whole kustomize output can be piped in).
Exit codes: 0 valid (warnings allowed), 1 at least one invalid document, 2 a file could
not be read or parsed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent_operator.crd.admission import admission_check
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.names import GROUP, KIND
from agent_operator.crd.resource import AgentTask
from agent_operator.serialization import SpecError, load_inputs, load_task_template

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


class _KubectlLoader(yaml.SafeLoader):
    """YAML as kubectl reads it: timestamps stay strings (sigs.k8s.io/yaml converts to JSON)."""


_KubectlLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON manifests (multi-document); '-' reads stdin")
    p.add_argument("--agents-strict", action="store_true",
                   help="a task type no loaded agent serves is an error, not a warning")
    p.add_argument("--no-decode", action="store_true",
                   help="only the admission checks (what kubectl apply would reject); skip decoding")
    p.add_argument("--no-agents", action="store_true", help="do not load agents or check task types")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("-q", "--quiet", action="store_true", help="text output: print only problems")
    from agent_operator.cli import agent_sources

    agent_sources.add_arguments(p)
    p.set_defaults(func=run)


def check_decoding(task: AgentTask, result: DocumentResult, options: Options) -> None:
    """Decode template and inputs as the operator will; record what would end in InvalidSpec."""
    spec = task.spec
    assert spec is not None, "admission_check loads the spec strictly"
    try:
        template = load_task_template(spec.template_value, field=spec.template_field)
        load_inputs(spec.inputs_value, template, field=spec.inputs_field)
    except SpecError as e:
        result.error(e)
        return
    known = options.known_task_types
    if known is None:
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
    try:
        task = admission_check(doc)
    except InvalidField as e:
        result.error(e)
        return result
    if isinstance(doc, Mapping) and "status" in doc:
        result.findings.append(Finding("warning", "status", "ignored on create (the operator writes status)"))
    if options.decode:
        check_decoding(task, result, options)
    return result


def iter_documents(text: str) -> Iterator[Any]:
    """The documents of a YAML stream; a ``kind: List`` contributes its items."""
    for doc in yaml.load_all(text, Loader=_KubectlLoader):
        if doc is None:
            continue
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def validate_text(text: str, file: str, options: Options) -> list[DocumentResult]:
    """Check every document of ``text``; a YAML syntax error raises ``yaml.YAMLError``."""
    return [validate_document(doc, file, i, options) for i, doc in enumerate(iter_documents(text), start=1)]


def _read(name: str, stdin: TextIO) -> str:
    return stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")


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
              + (f", {len(problems)} file(s) unreadable" if problems else ""), file=out)


def run(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """Validate every file; print text or JSON; return the exit code (see module docstring)."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    known = None
    if not args.no_agents and not args.no_decode:
        try:
            known = _known_task_types(args)
        except Exception as e:  # noqa: BLE001 - an agent that fails to load is reported, not fatal
            print(f"agent-operator validate: agents not checked: {e}", file=sys.stderr)
            if args.agents_strict:
                return EXIT_UNREADABLE
    options = Options(decode=not args.no_decode, agents_strict=args.agents_strict, known_task_types=known)
    results: list[DocumentResult] = []
    problems: list[str] = []
    for name in args.files:
        label = "<stdin>" if name == "-" else name
        try:
            results.extend(validate_text(_read(name, stdin), label, options))
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{label}: cannot read: {e}")
        except yaml.YAMLError as e:
            problems.append(f"{label}: not valid YAML: {e}".replace("\n", " "))
    if args.output == "json":
        payload = {
            "valid": not problems and all(r.valid for r in results),
            "documents": [{**asdict(r), "valid": r.valid} for r in results],
            "unreadable": problems,
        }
        print(json.dumps(payload, indent=2), file=out)
    else:
        _print_text(results, problems, args.quiet, out)
    if problems:
        return EXIT_UNREADABLE
    return EXIT_OK if all(r.valid for r in results) else EXIT_INVALID
