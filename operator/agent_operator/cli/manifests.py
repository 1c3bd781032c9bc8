"""Reading manifests from the command line, the same way for every command.

``validate`` and ``run-local`` (and ``render`` for its inputs) take files, directories and
``-`` (standard input).  Whatever they read goes through here:

* a directory stands for its ``*.yaml``, ``*.yml`` and ``*.json`` files (sorted; with
  ``recursive``, those of its subdirectories too), as ``kubectl apply -f DIR`` reads it;
* input larger than ``max_bytes`` is refused after reading ``max_bytes + 1`` bytes, before
  any parsing (a 60 MB YAML file took a minute and 341 MB of memory to parse);
* YAML is parsed with libyaml's C parser when PyYAML was built with it, strictly: a key
  given twice in one mapping is an error (YAML would keep the last value silently, and
  ``kubectl`` rejects it), and so are two manifests pasted together without ``---``;
  timestamps stay strings, as ``kubectl`` (sigs.k8s.io/yaml, through JSON) reads them.

Exit codes shared by the commands: :data:`EXIT_OK`, :data:`EXIT_INVALID` (the input is
wrong), :data:`EXIT_USAGE` (the command line is: a bad flag, a file that cannot be opened).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.nodes import MappingNode, Node

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

#: default input cap: an AgentTask is at most ~1.5 MiB (etcd's object limit), and a
#: kustomize build of a few hundred tasks fits easily
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: keys that start an object: a second one at the top of a document means two manifests
#: were concatenated without the ``---`` separator
_OBJECT_KEYS = frozenset({"apiVersion", "kind"})

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def fail(command: str, problems: Iterable[object], code: int) -> int:
    """Print each problem as ``agent-operator COMMAND: PROBLEM`` on stderr; return ``code``."""
    for problem in problems:
        print(f"agent-operator {command}: {problem}", file=sys.stderr)
    return code


class UsageError(Exception):
    """The command line names something that cannot be used (exit code 2)."""


class ManifestError(Exception):
    """The input itself is wrong: too large, not YAML, duplicate keys (exit code 1)."""


@dataclass(frozen=True)
class Source:
    """One input: a file path or ``-`` for standard input; ``label`` is what messages show."""

    path: str

    @property
    def label(self) -> str:
        """``<stdin>`` for ``-``, else the path as given."""
        return "<stdin>" if self.path == "-" else self.path


def expand(paths: list[str], recursive: bool = False) -> list[Source]:
    """Files and ``-`` as given; each directory replaced by its manifest files.

    A directory without manifests, or a path that does not exist, is a :class:`UsageError`.
    """
    sources: list[Source] = []
    for name in paths:
        path = Path(name)
        if name == "-" or not path.is_dir():
            if name != "-" and not path.exists():
                raise UsageError(f"{name}: no such file or directory")
            sources.append(Source(name))
            continue
        pattern = "**/*" if recursive else "*"
        found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if not found:
            deeper = "" if recursive else " (-R/--recursive reads subdirectories)"
            raise UsageError(f"{name}: no {', '.join(MANIFEST_SUFFIXES)} files in this directory{deeper}")
        sources.extend(Source(str(p)) for p in found)
    return sources


def read_bounded(stream: BinaryIO, label: str, max_bytes: int) -> bytes:
    """At most ``max_bytes`` from ``stream``; more is a :class:`ManifestError`, found without reading it all."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ManifestError(f"{label}: larger than {max_bytes} bytes (--max-bytes); an AgentTask is at most "
                            f"about 1.5 MiB, large data belongs in blob storage, passed by reference")
    return data


def read_source(source: Source, stdin: BinaryIO | None, max_bytes: int) -> str:
    """The text of ``source`` (UTF-8), bounded by ``max_bytes``; ``stdin`` is read for ``-``."""
    if source.path == "-":
        if stdin is None:
            raise UsageError("'-' (standard input) given, but standard input is not available")
        data = read_bounded(stdin, source.label, max_bytes)
    else:
        try:
            with open(source.path, "rb") as f:
                data = read_bounded(f, source.label, max_bytes)
        except OSError as e:
            raise UsageError(f"{source.label}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{source.label}: not UTF-8 text (byte {e.start})") from None


class StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader (C parser when available) that refuses duplicate mapping keys."""

    _root: Node | None = None

    def construct_document(self, node: Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, _duplicate_message(key, first, node is self._root), key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _duplicate_message(key: Any, first: Node, at_root: bool) -> str:
    line = first.start_mark.line + 1
    if at_root and key in _OBJECT_KEYS:
        return (f"a second {key!r} (the first is on line {line}): two manifests concatenated without "
                f"'---'? Put a line '---' between them")
    return f"duplicate key {key!r} (first on line {line}); YAML would keep only the last value, kubectl rejects it"


# timestamps stay strings (kubectl reads YAML through JSON, where a date is a string)
StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def iter_documents(text: str, label: str) -> Iterator[Any]:
    """The documents of a YAML stream; a ``kind: List`` contributes its items.

    Syntax errors and duplicate keys raise :class:`ManifestError` with the line.
    """
    try:
        for doc in yaml.load_all(text, Loader=StrictLoader):
            if doc is None:
                continue
            if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                yield from doc["items"]
            else:
                yield doc
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{label}:line {mark.line + 1}" if mark is not None else label
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ManifestError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{label}: not valid YAML: {e}".replace("\n", " ")) from None


def load_documents(text: str, label: str) -> list[Any]:
    """All documents of ``text`` (see :func:`iter_documents`)."""
    return list(iter_documents(text, label))
