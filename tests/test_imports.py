"""The modules of the gateway import each other one way: no module imports another that
imports it back, directly or around a longer cycle (also imports made inside functions
or only for type checking), and only the store and the migrations reach SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in GATEWAY.glob("*.py") if path.stem != "__init__"}


def imports(path: Path, known: set[str]) -> set[str]:
    """The gateway modules a module imports, wherever in it the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and (node.module or "").startswith("gateway."):
                found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("gateway."))
    return found & known


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with the path that does."""
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph[node]):
                if dep == start:
                    found.append([*path, dep])
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = _modules()
    graph = {name: imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert graph["outbox"] and graph["runner"]  # the walk sees imports at all
    assert cycles(graph) == []


def test_intake_adapters_do_not_import_the_runner() -> None:
    modules = _modules()
    for adapter in ("smtp", "imap"):
        assert "runner" not in imports(modules[adapter], set(modules))
