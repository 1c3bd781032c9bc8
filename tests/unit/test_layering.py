"""The layering in .importlinter cannot be dodged: no production module loads another
``agent_operator`` room by name (``importlib.import_module``/``__import__``), which
import-linter cannot see.  Loading the user's own modules by name (agent plugins, entry
points) is what importlib is for and stays allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "agent_operator"
#: the test harness may do as it likes; it is not production code
EXEMPT = ("testing",)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _dynamic_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, target) of every importlib.import_module / __import__ call with a constant
    string argument, and of every string in a tuple or list literal (names such a call could be
    fed from, as cli/main.py keeps its sub-command modules)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
        elif isinstance(node, (ast.Tuple, ast.List)):
            found += [(e.lineno, e.value) for e in node.elts
                      if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return found


def _is_module(name: str) -> bool:
    """True when ``name`` is a module of the package (not a logger name or entry-point group)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_production_module_imports_another_room_by_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if _room(module) in EXEMPT:
            continue
        for line, target in _dynamic_imports(ast.parse(path.read_text(), str(path))):
            if _is_module(target) and _room(target) != _room(module):
                offenders.append(f"{rel}.py:{line}: {target}")
    assert not offenders, "import these directly (import-linter must see the edge):\n" + "\n".join(offenders)


def test_the_scan_sees_an_indirect_import() -> None:
    """The check above can fail: a by-name import of another room is found."""
    tree = ast.parse("import importlib\nm = importlib.import_module('agent_operator.testing.agents')\n")
    assert (2, "agent_operator.testing.agents") in _dynamic_imports(tree)
