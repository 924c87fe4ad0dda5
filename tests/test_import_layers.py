"""The package's imports flow one way and form no cycle (but the layer registry's).

Layers, lowest first: coreml → engine → train → service → commands (and web) → cli.
A module may import its own layer and lower ones, and the shared base modules at the
top of the package (errors, fsutil, logs, paths). Read from the source with ``ast``,
so a function-local import counts as much as one at the top of a file; imports under
``if TYPE_CHECKING:`` count for the direction, not for cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "mlupdated"
LAYERS = {"coreml": 0, "engine": 1, "train": 2, "service": 3, "web": 4, "commands": 4, "cli": 5}
# The package facade re-exports ``predict`` lazily; it sits above every layer.
FACADE = "mlupdated"
# Importing engine/layers/ is what fills the registry, and every converter module
# imports the registry to register itself: the one cycle we mean to have.
INTENDED_CYCLE_PREFIXES = ("mlupdated.engine.layers", "mlupdated.engine.registry")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str) -> Iterator[tuple[str, bool]]:
    """(imported module, type-only) for every import of ``module`` inside the package."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            submodules = [f"{stem}.{alias.name}" for alias in node.names]
            # ``from . import gate`` names a sibling module, not the package around it.
            if node.module is None and all(name in MODULES for name in submodules):
                names = submodules
            else:
                names = [stem, *submodules]
        for name in names:
            if name in MODULES and name != module:
                yield name, node.lineno in typing_only


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_upward_import() -> None:
    upward = []
    for module in MODULES:
        if module == FACADE:
            continue
        mine = _layer(module)
        for target, _ in _imports(module):
            theirs = _layer(target)
            if theirs is None:
                continue  # the shared base (errors, fsutil, logs, paths) or the facade
            if mine is None or theirs > mine:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_but_the_registry() -> None:
    graph = {module: set() for module in MODULES}
    for module in MODULES:
        for target, type_only in _imports(module):
            if not type_only:
                graph[module].add(target)
    unexpected = [
        cycle
        for cycle in _cycles(graph)
        if not all(m.startswith(INTENDED_CYCLE_PREFIXES) for m in cycle)
    ]
    assert not unexpected, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in unexpected)


def test_the_walk_sees_the_layers() -> None:
    # A walk that found nothing would pass the two tests above without looking.
    assert {_layer(m) for m in MODULES} >= set(LAYERS.values())
    registry = "mlupdated.engine.registry"
    assert any(registry == target for m in MODULES for target, _ in _imports(m))


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
