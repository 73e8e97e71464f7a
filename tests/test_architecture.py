"""The tree tells the architecture: model/ in sub-packages by job, no import cycle (function-level imports count), no
private name imported across modules, a bounded import chain between the parts of model/, short functions."""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "viz", "ui", "app_pages")
MAX_PART_DEPTH = 10  # the longest chain of imports between model/'s parts (its top modules and sub-packages)
MAX_FUNCTION_LINES = 80  # in model/


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


@functools.cache
def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the project modules it imports (anywhere in the file), and the private names imported across."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for m, f in mods.items():
        base = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for n in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                up = base[: len(base) - (n.level - 1)] if n.level > 1 else base
                stem = ".".join(up + ([n.module] if n.module else [])) if n.level else (n.module or "")
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in n.names]
                if stem.split(".")[0] in PACKAGES:
                    private += [f"{m} imports {stem}.{a.name}" for a in n.names
                                if a.name.startswith("_") and f"{stem}.{a.name}" not in mods]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m:
                    graph[m].add(t)
    return graph, private


def test_no_private_name_crosses_a_module():
    assert import_graph()[1] == []


def test_no_import_cycle():
    graph, _ = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [t]) if t in path else f"{m} -> {t}")
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def part_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_model_is_parts_in_layers():
    graph, _ = import_graph()
    parts: dict[str, set[str]] = {}
    for m, targets in graph.items():
        if m.startswith("model.") and m.count(".") >= 1:
            parts.setdefault(part_of(m), set()).update(
                part_of(t) for t in targets if t.startswith("model.") and part_of(t) != part_of(m))

    @functools.cache
    def depth(part: str) -> int:
        return 1 + max((depth(t) for t in parts.get(part, ())), default=0)

    deepest = max(parts, key=depth)
    assert depth(deepest) <= MAX_PART_DEPTH, (deepest, depth(deepest))
    top = sorted(p.name for p in (ROOT / "model").glob("*.py") if p.name != "__init__.py")
    assert top == ["api.py", "call.py", "jobs.py", "load.py", "runtime.py", "settings.py", "teaching.py", "train.py"]
    assert parts["model.core"] <= {"model.settings"}, parts["model.core"]  # the bottom layer imports no other part
    assert not parts["model.safe"] - {"model.settings"}


def test_no_long_function_in_model():
    long = []
    for f in (ROOT / "model").rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text())):
            size = n.end_lineno - n.lineno + 1 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) else 0
            if size > MAX_FUNCTION_LINES:
                long.append(f"{f.relative_to(ROOT)}:{n.name} ({size} lines)")
    assert long == [], long
