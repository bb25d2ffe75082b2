"""No import cycle among ``hpatches_kit`` modules, counting imports placed inside functions.

The graph is built from the source with :mod:`ast` (nothing is imported), so an import hidden in a function
body counts as much as one at the top of a module. Relative imports are resolved against the importing
module's package; ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = "hpatches_kit"
ROOT = Path(__file__).resolve().parent.parent / PKG

# TODO(lead, at merge): cycles owned by other helpers of issue 12 (cli/, training/, losses/, models/). Each entry
# is one edge (importer, imported) left out of the graph; empty this list when their branches are merged.
KNOWN_EDGES: set[tuple[str, str]] = {}

# The layering, lowest first: a subpackage (or root module) may import only those before it in this list.
LAYERS = [
    "hpatches_kit.layout",
    "hpatches_kit.io",
    "hpatches_kit.errors",
    "hpatches_kit.checks",
    "hpatches_kit.log",
    "hpatches_kit.plugins",
    "hpatches_kit.registry",
    "hpatches_kit.data",
    "hpatches_kit.models",
    "hpatches_kit.losses",
    "hpatches_kit.evaluation",
    "hpatches_kit.plots",
    "hpatches_kit.training",
    "hpatches_kit.benchmarks",
    "hpatches_kit.cli",
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _resolve(importer: str, is_pkg: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_pkg else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {imported hpatches_kit modules}}`` over every module of the package."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                # "import a.b.c" imports a, a.b and a.b.c; the deepest package module is the edge that matters.
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and (mod, t) not in KNOWN_EDGES:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or ``None`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_find_cycle_reports_the_path():
    # Hand-made graphs: the checker itself must see a cycle through a function-level edge and name its path.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_imports_inside_functions():
    g = import_graph()
    # data/hpatches.py imports the embedded dataset only inside load_dataset/index_dataset.
    assert "hpatches_kit.data.embedded" in g["hpatches_kit.data.hpatches"]
    assert "hpatches_kit.layout" in g["hpatches_kit.data.splits"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_known_edges_still_exist():
    # A known edge that has been fixed must leave the list, so the list cannot hide a new cycle for long.
    saved = set(KNOWN_EDGES)
    KNOWN_EDGES.clear()
    try:
        g = import_graph()
    finally:
        KNOWN_EDGES.update(saved)
    stale = sorted(e for e in saved if e[1] not in g.get(e[0], ()))
    assert not stale, f"fixed cycles still listed in KNOWN_EDGES (remove them): {stale}"


def test_data_package_has_no_import_cycle():
    g = import_graph()
    sub = {m: {t for t in ts if t.startswith(f"{PKG}.data")} for m, ts in g.items() if m.startswith(f"{PKG}.data")}
    cycle = find_cycle(sub)
    assert cycle is None, "import cycle in data/: " + " -> ".join(cycle)


def _subpackage(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def subpackage_graph() -> dict[str, set[str]]:
    """``{subpackage: {subpackages it imports}}`` (``hpatches_kit.evaluation``, ...; root modules count as
    their own), compatibility shims left out."""
    g: dict[str, set[str]] = {}
    for mod, targets in import_graph().items():
        a = _subpackage(mod)
        g.setdefault(a, set())
        g[a] |= {_subpackage(t) for t in targets if _subpackage(t) != a}
    return g


def test_no_subpackage_cycle():
    # e.g. evaluation -> plots -> evaluation (evaluation.compare drew the comparison figure) is a cycle here
    assert find_cycle({"e": {"p"}, "p": {"e"}}) == ["e", "p", "e"]
    cycle = find_cycle(subpackage_graph())
    assert cycle is None, "subpackage import cycle: " + " -> ".join(cycle)


def test_layering():
    # evaluation never imports plots (plots draw evaluation results; the benchmarks and CLIs call both)
    g = subpackage_graph()
    assert f"{PKG}.plots" not in g[f"{PKG}.evaluation"]
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = sorted((a, b) for a, bs in g.items() for b in bs if a in rank and b in rank and rank[b] > rank[a])
    assert not wrong, f"imports against the layering {LAYERS}: {wrong}"
    assert set(g) - {PKG} <= set(rank), f"place new subpackages in LAYERS: {sorted(set(g) - set(rank) - {PKG})}"
