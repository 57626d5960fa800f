"""The shape of the library, checked from its source (AST only, nothing imported): the import graph has no
cycle, helpers never import a stage, and modules and functions stay small enough to read."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "saie_lib"
# A module's size is its statements, not its lines: docstrings and comments that say why never force a split.
MAX_MODULE_STATEMENTS = 250
MAX_FUNCTION_LINES = 50
# Modules allowed to import a stage: the stages themselves and what orchestrates them.
ABOVE_STAGES = {"saie_lib.stages", "saie_lib.experiments", "saie_lib.reproduce", "saie_lib.run_graph"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("saie_lib"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("saie_lib"))
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, stack + [dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 30
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_helpers_do_not_import_stages():
    offenders = {name: sorted(d for d in deps if d.startswith("saie_lib.stages"))
                 for name, deps in _graph().items()
                 if not any(name == a or name.startswith(a + ".") for a in ABOVE_STAGES)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_modules_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        statements = sum(isinstance(node, ast.stmt) for node in ast.walk(tree))
        if statements > MAX_MODULE_STATEMENTS:
            too_long.append(f"{path.relative_to(REPO)}: {statements} statements")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
