"""The import graph of crystalloop, read from the source with :mod:`ast`, and its picture.

``python scripts/architecture_graph.py`` writes ``docs/architecture.png`` (areas as boxes, an
arrow from each area to the areas it imports; dashed: only inside functions) and prints the
area-to-area edges. Nothing of crystalloop is imported, so a broken module still shows.
``tests/test_architecture.py`` checks its rules on the same graph.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "crystalloop"

#: Areas of the package, most specific first: a module belongs to the first prefix it starts with.
AREAS: tuple[tuple[str, str], ...] = (
    ("crystalloop.cli", "cli + commands"),
    ("crystalloop.commands", "cli + commands"),
    ("crystalloop.dashboard", "dashboard"),
    ("crystalloop.campaign", "campaign"),
    ("crystalloop.control", "control"),
    ("crystalloop.digital_twin.design", "digital_twin.design"),
    ("crystalloop.digital_twin", "digital_twin"),
    ("crystalloop.vision.render", "vision.render"),
    ("crystalloop.vision.learn", "vision.learn"),
    ("crystalloop.vision", "vision"),
    ("crystalloop.hardware.sim", "hardware.sim"),
    ("crystalloop.hardware", "hardware"),
    ("crystalloop.store", "store"),
    ("crystalloop.scale", "scale"),
    ("crystalloop.profiles", "profiles · limits · cqa"),
    ("crystalloop.limits", "profiles · limits · cqa"),
    ("crystalloop.cqa", "profiles · limits · cqa"),
    ("crystalloop.errors", "errors"),
    ("crystalloop._plotting", "_plotting"),
    ("crystalloop", "crystalloop (package)"),
)


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` = the package)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


@cache
def tree(name: str) -> ast.Module:
    """The parsed source of module ``name``."""
    return ast.parse(modules()[name].read_text(encoding="utf-8"), filename=str(modules()[name]))


def resolve(name: str, node: ast.ImportFrom) -> str:
    """Absolute module named by ``from X import ...`` in module ``name``."""
    if not node.level:
        return node.module or ""
    base = name.split(".")
    if modules()[name].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports(name: str) -> tuple[tuple[str, str | None, ast.stmt, bool], ...]:
    """Every crystalloop import in module ``name`` as (target module, imported name or None, node, lazy).

    ``lazy`` is True for an import inside a function. ``from pkg import sub`` with ``pkg.sub`` a
    module yields the submodule as target (and no name). Imports under ``if TYPE_CHECKING:`` never
    run and are left out.
    """
    return tuple(_imports(name))


def _imports(name: str) -> Iterator[tuple[str, str | None, ast.stmt, bool]]:
    mods = modules()
    lazy_nodes = {id(n) for f in ast.walk(tree(name)) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    typing_only = {id(n) for f in ast.walk(tree(name))
                   if isinstance(f, ast.If) and ast.unparse(f.test).split(".")[-1] == "TYPE_CHECKING"
                   for b in f.body for n in ast.walk(b)}
    for node in ast.walk(tree(name)):
        if id(node) in typing_only:
            continue
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "crystalloop":
                    yield a.name, None, node, lazy
        elif isinstance(node, ast.ImportFrom):
            src = resolve(name, node)
            if src.split(".")[0] != "crystalloop":
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                yield (sub, None, node, lazy) if sub in mods else (src, a.name, node, lazy)


@cache
def module_graph() -> nx.DiGraph:
    """Module -> imported module; edge attribute ``lazy`` when every such import is inside a function."""
    g = nx.DiGraph()
    g.add_nodes_from(modules())
    for m in modules():
        for target, _, _, lazy in imports(m):
            if target == m or target not in g:
                continue
            if g.has_edge(m, target):
                g.edges[m, target]["lazy"] &= lazy
            else:
                g.add_edge(m, target, lazy=lazy)
    return g


def area_of(module: str) -> str:
    """The area a module belongs to (see :data:`AREAS`)."""
    return next(label for prefix, label in AREAS if module == prefix or module.startswith(prefix + "."))


def area_graph() -> nx.DiGraph:
    """Area -> imported area, with the number of module edges and ``lazy`` if all are lazy."""
    a = nx.DiGraph()
    for m in modules():
        a.add_node(area_of(m))
        a.nodes[area_of(m)]["modules"] = a.nodes[area_of(m)].get("modules", 0) + 1
    for u, v, d in module_graph().edges(data=True):
        au, av = area_of(u), area_of(v)
        if au == av or au == "crystalloop (package)":
            continue
        if a.has_edge(au, av):
            a.edges[au, av]["n"] += 1
            a.edges[au, av]["lazy"] &= d["lazy"]
        else:
            a.add_edge(au, av, n=1, lazy=d["lazy"])
    return a


def layers(a: nx.DiGraph) -> dict[str, int]:
    """Layer of each area: 0 for areas that import no other area, else one above what they import."""
    c = nx.condensation(a)
    level: dict[int, int] = {}
    for n in reversed(list(nx.topological_sort(c))):
        level[n] = 1 + max((level[s] for s in c.successors(n)), default=-1)
    return {area: level[c.graph["mapping"][area]] for area in a}


def reduced(a: nx.DiGraph) -> nx.DiGraph:
    """``a`` without the edges implied by a longer path (what the picture draws)."""
    r = a.copy()
    for u, v in sorted(a.edges):
        r.remove_edge(u, v)
        if not nx.has_path(r, u, v):
            r.add_edge(u, v, **a.edges[u, v])
    return r


def draw(path: Path) -> Path:
    """Draw the area graph bottom-up (foundations at the bottom) and save it as PNG.

    Only edges not implied by a longer path are drawn (e.g. every area imports ``errors``,
    most through ``profiles``), so the picture shows the layering, not every import.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    full = area_graph()
    full.remove_node("crystalloop (package)")
    lev = layers(full)
    a = reduced(full)
    rows: dict[int, list[str]] = {}
    for area in sorted(a, key=lambda n: (lev[n], n)):
        rows.setdefault(lev[area], []).append(area)
    width = max(len(r) for r in rows.values())
    group = {n: i for i, comp in enumerate(sorted(nx.strongly_connected_components(full), key=min)) for n in comp}
    pos: dict[str, tuple[float, float]] = {}

    def bary(n: str) -> float:
        xs = [pos[s][0] for s in a.successors(n) if s in pos]
        return sum(xs) / len(xs) if xs else 0.0

    for y in sorted(rows):  # bottom-up; areas that import each other side by side, then by what they import
        row = rows[y]
        if y:
            gbary = {g: sum(bary(n) for n in row if group[n] == g) / sum(1 for n in row if group[n] == g)
                     for g in {group[n] for n in row}}
            row.sort(key=lambda n: (gbary[group[n]], group[n], n))
        for i, area in enumerate(row):  # a crowded row is staggered so that its own edges are not flat
            pos[area] = ((i + 0.5) * width / len(row), 1.6 * y + (0.55 if len(row) > 3 and i % 2 else 0.0))
    fig, ax = plt.subplots(figsize=(2.3 * width + 1, 1.35 * len(rows) + 1.2), dpi=110)
    boxes = {}
    for area, (x, y) in pos.items():
        boxes[area] = ax.text(x, y, f"{area}\n{a.nodes[area]['modules']} modules", ha="center", va="center",
                              fontsize=9, zorder=3,
                              bbox={"boxstyle": "round,pad=0.4", "fc": "#eef3fb" if area != "errors" else "#f6efe3",
                                    "ec": "#34527a"})
    for u, v, d in a.edges(data=True):
        ax.add_patch(FancyArrowPatch(pos[u], pos[v], arrowstyle="-|>", mutation_scale=11, shrinkA=26, shrinkB=26,
                                     lw=0.6 + 0.25 * min(d["n"], 8), color="#7a8899" if d["lazy"] else "#34527a",
                                     ls="--" if d["lazy"] else "-", zorder=2,
                                     connectionstyle="arc3,rad=0.08"))
    ax.set_xlim(-0.3, width + 0.3)
    ax.set_ylim(-0.9, 1.6 * max(rows) + 1.3)
    ax.axis("off")
    ax.set_title("crystalloop: arrows point from an area to what it imports (dashed: only inside functions;\n"
                 "an import implied by a longer path is not drawn)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png", help="PNG to write")
    args = p.parse_args()
    a = area_graph()
    lev = layers(a)
    for area in sorted(a, key=lambda n: (-lev[n], n)):
        deps = ", ".join(f"{v}{' (lazy)' if a.edges[area, v]['lazy'] else ''}" for v in sorted(a.successors(area)))
        print(f"L{lev[area]} {area:24s} -> {deps or '-'}")
    cycles = [sorted(c) for c in nx.strongly_connected_components(a) if len(c) > 1]
    if cycles:
        print("area cycles:", cycles)
    print(f"wrote {draw(args.out)}")


if __name__ == "__main__":
    main()
