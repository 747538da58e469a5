"""The core's imports point one way: errors/models → pruning → evaluate → {analysis, explain, recover} →
io → plots → cli. Read from the source with ast, imports inside functions included, so a lazy
import cannot hide an upward dependency or a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
# Rank of each part of the core; a module may import only its own rank or lower.
RANKS = {
    "errors": 0,
    "progress": 0,
    "models": 0,
    "pruning": 1,
    "evaluate": 2,
    "inspect": 2,
    "analysis": 3,
    "explain": 3,
    "recover": 3,
    "ship": 3,
    "track": 3,
    "io": 4,
    "scale": 4,  # Ray workers build their workbench from files (io)
    "plots": 5,
    "learn": 5,
    "cli": 6,
    "__main__": 7,
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("workbench")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "workbench":
                found |= {f"workbench.{a.name}" for a in node.names}
            elif node.module.startswith("workbench."):
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{module}: relative import")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p, m) if i in modules} - {m} for m, p in modules.items()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself, above everything


def test_no_import_points_upward() -> None:
    upward = []
    for module, imports in _graph().items():
        part = _part(module)
        if part is None:
            continue
        assert part in RANKS, f"{module}: give its part a rank in RANKS"
        for target in imports:
            other = _part(target)
            if other is None or RANKS[other] > RANKS[part]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            # A package importing its own submodules is how Python packages work, not a cycle.
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_check_sees_lazy_imports(tmp_path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from workbench.explain import importance\n")
    assert _imports(source, "lazy") == {"workbench.explain"}
