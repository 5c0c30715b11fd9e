"""Dependencies point one way: no sparsecnn module imports another inside a function, and the
graph of module-level imports between sparsecnn's modules has no cycle.

Read with ``ast`` from the source files (nothing is imported).  Imports under ``if TYPE_CHECKING:``
are for annotations only and are not edges.  Heavy optional dependencies (torch, dask,
matplotlib) may still be imported lazily: only imports of sparsecnn's own modules are checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sparsecnn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The sparsecnn modules an import statement names (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "sparsecnn"]
    if node.level:
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "sparsecnn":
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in MODULES else target)
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def scan(name: str, path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(modules imported at module level, [(line, module) imported inside a function or class body])."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    inner: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = _resolve(name, is_package, child)
                if in_function:
                    inner.extend((child.lineno, t) for t in targets)
                else:
                    top.update(targets)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            else:
                visit(child, in_function)

    visit(tree, False)
    return top, inner


def import_graph() -> tuple[nx.DiGraph, dict[str, list[tuple[int, str]]]]:
    G = nx.DiGraph()
    inner: dict[str, list[tuple[int, str]]] = {}
    for name, path in MODULES.items():
        G.add_node(name)
        top, lazy = scan(name, path)
        for target in top:
            if target != name:
                G.add_edge(name, target)
        if lazy:
            inner[name] = lazy
    return G, inner


def test_the_scanner_sees_module_level_and_function_level_imports():
    G, inner = import_graph()
    assert G.has_edge("sparsecnn.network", "sparsecnn.engine")           # from . import engine
    assert G.has_edge("sparsecnn.engine.passes", "sparsecnn.engine.store")
    assert not G.has_edge("sparsecnn.second_order", "sparsecnn.network")  # TYPE_CHECKING only
    assert len(MODULES) > 40


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_sparsecnn_import_inside_a_function(name):
    """One case per module, so that a failure names the module."""
    _, inner = scan(name, MODULES[name])
    lines = sorted({f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}" for line, target in inner})
    assert not lines, "sparsecnn imports inside functions:\n  " + "\n  ".join(lines)


def test_the_module_import_graph_has_no_cycle():
    G, _ = import_graph()
    cycles = list(nx.simple_cycles(G))
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join([*c, c[0]]) for c in cycles[:20])
