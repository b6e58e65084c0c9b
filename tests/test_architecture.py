"""The shape of the code, checked: no import cycle among wqbot's packages, nothing imported inside
a `try` (no "capability not built yet" guards), and no import tucked into a function to dodge a
cycle. Imports under `if TYPE_CHECKING:` are for annotations only and are left out."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("bot", "store", "sim", "settings")

# Function-level imports of project modules that stay, each with its reason.
ALLOWED_LOCAL_IMPORTS = {
    # the emulator's web app is imported on first use, so the directory generator that
    # bench/sim_bench.py times stays light
    ("sim/__init__.py", "sim.app"),
}


def _files() -> list[Path]:
    return sorted(p for d in ("bot", "store", "sim") for p in (ROOT / d).rglob("*.py")) + [ROOT / "settings.py"]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imports(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported project module, the statement, whether it sits inside a function) for each import."""
    module, tree = _module(path), ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    skip = _type_checking_nodes(tree)
    local = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from bot import queue` imports the module bot.queue
            targets = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
        for target in targets:
            if target.split(".")[0] in PROJECT:
                out.append((target, node, id(node) in local))
    return out


def package(module: str) -> str:
    """The unit the cycle check works on: bot's capabilities (bot.sync, bot.callback, …) and the
    top-level store, sim and settings."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 1 else parts[0]


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(trail[trail.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        source = package(_module(path))
        for target, _, _ in imports(path):
            if package(target) not in (source, "bot"):  # `bot` itself is an empty namespace
                graph[source].add(package(target))
    return graph


def test_no_import_cycle_among_the_packages():
    cycles = find_cycles(package_graph())
    assert not cycles, "import cycles among packages:\n" + "\n".join(cycles)


def test_the_check_finds_cycles_and_real_edges():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a → b → c → a"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = package_graph()
    # relative imports and `from bot import queue` resolve to the modules they name
    assert {"bot.queue", "bot.handlers", "bot.registry", "store"} <= graph["bot.app"]
    assert "bot.observability" in graph["bot.callback"] and "bot.ops" not in graph["bot.callback"]


def test_nothing_is_imported_inside_a_try():
    found = []
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                for inner in (n for part in node.body for n in ast.walk(part)):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not found, f"imports inside try: {found}"


def test_no_function_level_import_of_the_project_but_the_listed_ones():
    local = {
        (str(path.relative_to(ROOT)), target) for path in _files() for target, _, inside in imports(path) if inside
    }
    assert local == ALLOWED_LOCAL_IMPORTS
