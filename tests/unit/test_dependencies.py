"""pyproject.toml declares what the code imports, with floors that have the APIs it calls.

Every third-party module imported by ``agent_operator`` (outside ``try: ... except
ImportError``) must come from a declared distribution: the package's own dependencies, or
the extra of the part that needs it (``testing/`` → ``dev``, the flytekit bridge →
``flytekit``).  Floors are checked against the first release with each API the code
calls, found in the upstream repositories' history.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "agent_operator"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: (distribution, first release with the API, what the code calls)
FLOORS = [
    ("kopf", "1.45.0", "settings.watching.shard_selectors (--shards auto) and watching.inactivity_timeout "
                       "(1.44; older kopf accepts the attribute and never reopens a silent watch)"),
    ("kubernetes", "37.0.0", "config.load_kube_config(client_configuration=) with Configuration.tls_server_name "
                             "(controller/config.py): the lowest release the unit tests ran on"),
    ("flyteidl", "1.16.0", "TaskExecution.RETRYABLE_FAILED (sdk/resource.py)"),
    ("googleapis-common-protos", "1.56.1", "google.rpc status_pb2 / error_details_pb2 importable with "
                                           "protobuf 4 (1.56.0's generated code is refused)"),
]
#: where each part of the package may take its imports from, besides the dependencies
EXTRA_FOR_PART = {
    "testing": "dev",
    "bridges/flytekit": "flytekit",
    # the Flyte 2 directions (branch interop): optional modules behind the flyte2 extra
    "bridges/flyte2sdk": "flyte2",
    "bridges/flyte2idl.py": "flyte2",
    "bridges/remote/flyte2.py": "flyte2",
    "bridges/serve/flyte2.py": "flyte2",
    "serialization/flyte2.py": "flyte2",
}
#: modules imported where they are needed and only then (remote output prefixes, s3:// ...):
#: declared in an extra of their own
OPTIONAL_EXTRA = {"fsspec": "storage"}


def _requirements(extra: str | None = None) -> dict[str, Requirement]:
    lines = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return {_norm(r.name): r for r in reqs}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside ``try`` whose handlers catch ImportError is optional."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = ast.dump(handler.type) if handler.type else ""
                if "ImportError" in names or "ModuleNotFoundError" in names:
                    return True
    return False


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if _guarded(node, parents):
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "agent_operator":
                continue
            found.add(".".join(module.split(".")[:2]) if top == "google" else top)
    return found


@functools.cache
def _packages() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


@functools.cache
def _distributions(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (``google.rpc`` → googleapis-common-protos)."""
    top = module.split(".")[0]
    candidates = _packages().get(top, [])
    if "." not in module:
        return {_norm(d) for d in candidates}
    prefix = module.replace(".", "/") + "/"
    return {_norm(d) for d in candidates
            if any(str(f).startswith(prefix) for f in (metadata.distribution(d).files or ()))}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).as_posix()
    for part in EXTRA_FOR_PART:
        if rel == part or rel.startswith(part + "/"):
            return part
    return ""


def test_every_imported_distribution_is_declared() -> None:
    base = set(_requirements())
    undeclared: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        allowed = base | (set(_requirements(EXTRA_FOR_PART[part])) if part else set())
        for module in sorted(_imports(path)):
            if module in OPTIONAL_EXTRA:
                assert _distributions(module) & set(_requirements(OPTIONAL_EXTRA[module])), module
                continue
            dists = _distributions(module)
            assert dists, f"{path.relative_to(ROOT)} imports {module}, which no installed distribution provides"
            if not dists & allowed:
                undeclared.append(f"{path.relative_to(ROOT)}: {module} (from {', '.join(sorted(dists))})")
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(undeclared)


@pytest.mark.parametrize(("dist", "first", "why"), FLOORS, ids=[f[0] for f in FLOORS])
def test_floor_is_the_first_release_with_the_api_the_code_calls(dist: str, first: str, why: str) -> None:
    spec = _requirements()[dist].specifier
    floors = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= Version(first), f"{dist}{spec}: needs >= {first} for {why}"


def test_flyteidl_is_capped_below_2() -> None:
    spec: SpecifierSet = _requirements()["flyteidl"].specifier
    assert not spec.contains("2.0.0") and spec.contains("1.16.8"), spec


def test_the_installed_versions_satisfy_the_declared_ranges() -> None:
    for name, req in _requirements().items():
        assert req.specifier.contains(metadata.version(name), prereleases=True), (name, metadata.version(name))


def test_the_apis_behind_the_floors_exist_in_the_installed_versions() -> None:
    import kopf
    from kubernetes import client

    from flyteidl.core.execution_pb2 import TaskExecution
    from google.rpc import error_details_pb2

    assert hasattr(kopf.OperatorSettings().watching, "inactivity_timeout")
    assert hasattr(kopf.OperatorSettings().watching, "shard_selectors")
    assert hasattr(client.Configuration(), "tls_server_name")
    assert TaskExecution.RETRYABLE_FAILED and error_details_pb2.RetryInfo


def test_make_test_floors_pins_exactly_the_floors() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from floors import floor_pins

    pins = floor_pins(PYPROJECT["dependencies"])
    assert "kopf==1.45" in pins and "flyteidl==1.16" in pins and len(pins) == len(PYPROJECT["dependencies"])
    assert all("==" in pin for pin in pins), pins


def test_license_file_matches_the_declared_licence() -> None:
    assert PYPROJECT["license"] == "Apache-2.0" and PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
