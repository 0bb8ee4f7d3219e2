"""No import circle in ``herl`` nor in the operator (``operator/``, imported as ``herl_operator``).

The graph is read from the source with ``ast`` (nothing is imported), and it counts imports at module
level **and inside functions**: a function-level import is how a circle usually gets hidden (each
side imports the other "lazily"), and it still runs, in whatever order the callers happen to choose.
Imports under ``if TYPE_CHECKING:`` are left out: they never execute, so they cannot leave a module
half-initialised, and type checkers resolve circular annotations on their own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "herl"
PACKAGE = "herl"
#: Every package of ours with its folder: herl and the operator (which imports herl, so one graph).
PACKAGES = {PACKAGE: PACKAGE_DIR, "herl_operator": REPO / "operator"}

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path = PACKAGE_DIR, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the body of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch does run
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(sources: dict[str, tuple[str, bool]]) -> Graph:
    """``{module: {modules of ours it imports}}`` from ``{module: (source, is_package)}``.

    ``from pkg import name`` points at ``pkg.name`` when that is a module of ours, else at ``pkg``.
    """
    graph: Graph = {m: set() for m in sources}
    for mod, (text, is_package) in sources.items():
        for node in _import_nodes(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, mod, is_package)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base
                    for alias in node.names
                ]
            for target in targets:
                # `import herl.a.b` names a module; keep the longest prefix that is one of ours.
                while target and target not in sources:
                    target = target.rpartition(".")[0]
                if target and target != mod:  # only modules in ``sources`` survive the loop above
                    graph[mod].add(target)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def package_sources(root: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, tuple[str, bool]]:
    return {
        module_name(p, root, package): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
        for p in sorted(root.rglob("*.py"))
    }


def test_herl_has_no_import_cycle() -> None:
    sources: dict[str, tuple[str, bool]] = {}
    for package, root in PACKAGES.items():
        sources.update(package_sources(root, package))
    graph = import_graph(sources)
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the walk really saw the package
    found = cycles(graph)
    assert found == [], "import circles (module-level and function-level imports):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        # a circle hidden in a function body is still a circle
        (
            {
                "herl.a": ("from herl.b import x\n", False),
                "herl.b": ("def f():\n    from herl import a\n", False),
            },
            [["herl.a", "herl.b"]],
        ),
        # three modules, relative imports, one of them from a package __init__
        (
            {
                "herl.p": ("from . import q\n", True),
                "herl.p.q": ("from .r import y\n", False),
                "herl.p.r": ("import herl.p\n", False),
            },
            [["herl.p", "herl.p.q", "herl.p.r"]],
        ),
        # a TYPE_CHECKING import does not run, so it closes no circle; its else branch does run
        (
            {
                "herl.a": ("from herl.b import x\n", False),
                "herl.b": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from herl.a import A\n",
                    False,
                ),
            },
            [],
        ),
        (
            {
                "herl.a": ("from herl.b import x\n", False),
                "herl.b": (
                    "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import herl.a\n",
                    False,
                ),
            },
            [["herl.a", "herl.b"]],
        ),
        # imports of other packages and of the module itself are not edges
        ({"herl.a": ("import os\nimport herl.a\nfrom verl import x\n", False)}, []),
    ],
)
def test_cycle_detection(sources: dict[str, tuple[str, bool]], expected: list[list[str]]) -> None:
    assert cycles(import_graph(sources)) == expected
