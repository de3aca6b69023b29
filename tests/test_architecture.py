"""The package's architecture rules, checked on the source with :mod:`ast` (docs/architecture.md).

- **Private names stay private.** ``from crystalloop.x import _name`` is refused across modules,
  and so is ``from ._module import _name`` inside a package: what another module needs is public
  (no leading underscore) and listed in the providing module's ``__all__``. A *private module*
  (``crystalloop/vision/_geometry.py``) may be imported by the modules of its own package and its
  subpackages only (``crystalloop._plotting`` by every module), and only its public names.
- **No import cycles** between crystalloop modules; an import inside a function counts (a lazy
  import that only hides a cycle still is one).
- **No stale lazy imports:** an import inside a function of a crystalloop module that the file
  already imports at the top, or of a name the function never uses. Imports under
  ``if TYPE_CHECKING:`` never run and are not counted anywhere.
- **Orchestrators use protocols:** no ``getattr(obj, "name", default)``/``hasattr(obj, "name")``
  probing in ``control/`` and ``campaign/``, and no branching on the ``sim`` backend scheme
  outside ``hardware/``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import networkx as nx
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "architecture_graph.py"
_spec = importlib.util.spec_from_file_location("architecture_graph", _SCRIPT)
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)  # the import graph that docs/architecture.png is drawn from
PKG = graph.PKG
modules, tree, imports, _resolve = graph.modules, graph.tree, graph.imports, graph.resolve


def _where(name: str, node: ast.AST) -> str:
    return f"{modules()[name].relative_to(PKG.parent)}:{node.lineno}"


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def test_the_package_is_parsed():
    assert {"crystalloop.cli", "crystalloop.errors", "crystalloop.store", "crystalloop.campaign",
            "crystalloop.digital_twin.design", "crystalloop.vision.render", "crystalloop.dashboard"} <= set(modules())
    edges = {(a, t, lazy) for a in modules() for t, _, _, lazy in imports(a)}
    assert ("crystalloop.cli", "crystalloop.errors", False) in edges  # module level
    assert ("crystalloop.commands.psd", "crystalloop.vision.report", True) in edges  # inside the command function


def test_no_private_names_imported_across_modules():
    bad = [f"{_where(m, node)}: {name} from {src}" for m in modules() for src, name, node, _ in imports(m)
           if name is not None and _private(name) and src != m]
    assert not bad, "private names imported from another module (make them public or move them):\n" + "\n".join(bad)


def test_private_modules_are_imported_only_inside_their_package():
    bad = []
    for m in modules():
        for target, _, node, _ in imports(m):
            parts = target.split(".")
            for i, part in enumerate(parts):
                if _private(part):
                    owner = ".".join(parts[:i])  # the package holding the private module
                    if not (m == owner or m.startswith(owner + ".")):
                        bad.append(f"{_where(m, node)}: {target} (private to {owner})")
                    break
    assert not bad, "private modules imported from outside their package:\n" + "\n".join(bad)


def test_no_import_cycles_lazy_imports_included():
    g = graph.module_graph()
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)
    text = [" <-> ".join(c) + "\n" + "\n".join(f"    {u} -> {v}{' (lazy)' if g.edges[u, v]['lazy'] else ''}"
                                              for u in c for v in sorted(g.successors(u)) if v in c)
            for c in cycles]
    assert not cycles, "import cycles between crystalloop modules:\n" + "\n".join(text)


def _names_used(fn: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {
        n.value.id for n in ast.walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}


def test_no_stale_lazy_imports():
    bad = []
    for m in modules():
        top = {t for t, _, node, lazy in imports(m) if not lazy}
        for fn in ast.walk(tree(m)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            direct = [n for n in ast.iter_child_nodes(fn)] + [n for b in ast.walk(fn) for n in ast.iter_child_nodes(b)]
            used = _names_used(fn)
            for node in {id(n): n for n in direct if isinstance(n, (ast.Import, ast.ImportFrom))}.values():
                if isinstance(node, ast.ImportFrom) and _resolve(m, node).split(".")[0] == "crystalloop":
                    src = _resolve(m, node)
                    if src in top and src != "crystalloop":
                        bad.append(f"{_where(m, node)}: {src} is already imported at the top of the module")
                for a in node.names:
                    bound = a.asname or a.name.split(".")[0]
                    if bound != "*" and bound not in used:
                        bad.append(f"{_where(m, node)}: {a.name} is imported but not used in {fn.name}()")
    assert not bad, "stale lazy imports:\n" + "\n".join(sorted(set(bad)))


# Calls that look like probing but are not (reviewed): (module, object expression) -> why.
_NOT_PROBING = {
    ("crystalloop.control.controller", "controller"): "names what a non-Controller lacks, after isinstance failed",
    ("crystalloop.control.nmpc", "params"): "names what a non-ThermalParams lacks in the error message",
    ("crystalloop.control._signals", "signal"): "the signal module (SIGHUP does not exist on Windows)",
}


def test_no_attribute_probing_in_orchestrators():
    bad = []
    for m in modules():
        if not m.startswith(("crystalloop.control", "crystalloop.campaign")):
            continue
        for node in ast.walk(tree(m)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            probing = ((node.func.id == "getattr" and len(node.args) == 3) or node.func.id == "hasattr")
            if probing and (m, ast.unparse(node.args[0])) not in _NOT_PROBING:
                bad.append(f"{_where(m, node)}: {ast.unparse(node)}")
    assert not bad, "probing instead of a protocol (isinstance on a runtime-checkable Protocol):\n" + "\n".join(bad)


def _mentions_sim_scheme(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        parts = [node.left, *node.comparators]
        consts = [p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)]
        if any(c in ("sim", "sim://") for c in consts):
            return True
        for p in parts:  # scheme in ("sim", ...)
            if isinstance(p, (ast.Tuple, ast.List, ast.Set)) and any(
                    isinstance(e, ast.Constant) and e.value in ("sim", "sim://") for e in p.elts):
                return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
        return any(isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("sim")
                   for a in node.args)
    return False


def test_no_sim_scheme_branches_outside_hardware():
    bad = [f"{_where(m, node)}: {ast.unparse(node)}" for m in modules() if not m.startswith("crystalloop.hardware")
           for node in ast.walk(tree(m)) if _mentions_sim_scheme(node)]
    assert not bad, "branching on the sim:// scheme outside hardware/ (use is_simulated/GroundTruth):\n" + "\n".join(bad)


@pytest.mark.parametrize("source", ['scheme == "sim"', 'url.startswith("sim://")', 'scheme in ("sim", "x")'])
def test_sim_scheme_detector(source):
    assert any(_mentions_sim_scheme(n) for n in ast.walk(ast.parse(source)))


def test_every_warning_is_a_crystalloop_warning():
    """``warnings.warn(msg, Category)`` or ``warnings.warn(Category(msg))`` with a class of errors.py."""
    from crystalloop import errors

    ours = {n for n in errors.__all__ if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), Warning)}
    bad = []
    for m in modules():
        for node in ast.walk(tree(m)):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ("warnings.warn", "warn")) or not node.args:
                continue
            cat = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "category"),
                                                               None)
            if cat is None and isinstance(node.args[0], ast.Call):  # warn(CapabilityWarning("..."))
                cat = node.args[0].func
            if cat is None or ast.unparse(cat).split(".")[-1] not in ours:
                bad.append(f"{_where(m, node)}: {ast.unparse(node)[:90]}")
    assert not bad, "warnings without a CrystalloopWarning category (add one to errors.py):\n" + "\n".join(bad)


def test_architecture_picture_is_drawn_from_the_import_graph(tmp_path):
    a = graph.area_graph()
    assert a.has_edge("campaign", "control") and a.has_edge("control", "hardware")
    assert not a.has_edge("vision", "hardware") and not a.has_edge("digital_twin", "vision")  # leaves stay leaves
    png = graph.draw(tmp_path / "architecture.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert graph.draw(tmp_path / "again.png").read_bytes() == png.read_bytes()  # regenerates byte for byte


def test_type_checking_imports_are_not_runtime_imports():
    targets = {t for t, _, _, _ in imports("crystalloop.control.controller")}
    tree_text = (PKG / "control" / "controller.py").read_text()
    assert "if TYPE_CHECKING:\n    from crystalloop.control.pid import Observation" in tree_text
    assert "crystalloop.control.pid" not in targets  # the TYPE_CHECKING import is no runtime edge
    factory = {t for t, _, _, _ in imports("crystalloop.control.factory")}
    assert "crystalloop.control.pid" in factory  # the factory builds the controllers, the protocol does not
