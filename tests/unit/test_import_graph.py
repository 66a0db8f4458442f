"""The package's modules import each other without a cycle (a layered architecture, readable bottom up).

Every ``import`` counts, at module level or inside a function (a lazy import hides a cycle, it does
not remove it); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
A module's import of ``iopcare.a.b`` counts as an import of the module ``iopcare.a.b`` if there is
one, else of the package ``iopcare.a`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import iopcare

PACKAGE = Path(iopcare.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            names = []
        for name in names:
            target = _resolve(name) if name.startswith("iopcare") else None
            if target is not None and target != module:
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_package_has_no_import_cycle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    assert sum(len(targets) for targets in graph.values()) > 100, "the walk found the imports"
    assert _cycles(graph) == []


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Layers: each may import only from the ones below it.
FORBIDDEN = {
    "iopcare.contract": (
        "iopcare.domain",
        "iopcare.store",
        "iopcare.api",
        "iopcare.processor",
        "iopcare.dispatcher",
    ),
    "iopcare.domain": (
        "iopcare.rulepacks",  # the domain is given a parsed pack; reading files is the loader's
        "iopcare.simulation",
        "iopcare.store",
        "iopcare.api",
        "iopcare.processor",
        "iopcare.dispatcher",
        "iopcare.embedded",
    ),
}


def test_the_contract_and_the_domain_import_nothing_that_builds_on_them() -> None:
    crossing = [
        (module, target)
        for module in sorted(MODULES)
        for layer, above in FORBIDDEN.items()
        if module == layer or module.startswith(layer + ".")
        for target in sorted(_imports(module))
        if target.startswith(above)
    ]
    assert crossing == []
