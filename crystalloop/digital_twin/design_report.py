"""A design study end to end, written to a folder (what ``crystalloop design`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crystalloop.digital_twin.design_plots import plot_convergence, plot_fronts
from crystalloop.digital_twin.design_result import DesignResult
from crystalloop.digital_twin.optimize import optimize_design
from crystalloop.digital_twin.selection import export_recipe, knee_point
from crystalloop.errors import ModelError

__all__ = ["write_design", "run_design_study"]


def write_design(result: DesignResult, out_dir: str | Path, *, color: str | None = None) -> dict[str, Path]:
    """Save a design result with its plots and recipes.

    Writes ``front.csv``, ``history.csv``, ``design.json``, ``pareto_fronts.png`` (a third
    CQA as colour, seed 003 Fig. 8), ``convergence.png``, and for the knee point of the
    global front and of each instance a recipe ``recipe_knee*.yaml`` with its
    ``*_setpoints.csv`` (ready for ``crystalloop simulate``).

    Parameters
    ----------
    color : str, optional
        Quantity shown as colour in the front plot; default: the first twin CQA that is
        not an objective.
    """
    out = Path(out_dir)
    paths = result.save(out)
    import matplotlib.pyplot as plt

    if color is None:
        objs = {o.name for o in result.objectives}
        color = next((c for c in result.cqas if c not in objs), None)
    if len(result.objectives) >= 2 or color is not None:
        fig = plot_fronts(result, color=color, path=out / "pareto_fronts.png")
        plt.close(fig)
        paths["fronts_plot"] = out / "pareto_fronts.png"
    fig = plot_convergence(result, path=out / "convergence.png")
    plt.close(fig)
    paths["convergence_plot"] = out / "convergence.png"
    selections = [("recipe_knee", None)] + [
        (f"recipe_knee_{n}cycles", n) for n in sorted(set(result.front["n_cycles"].astype(int)))
    ]
    if len(selections) == 2:  # one number of cycles: the global knee is that one
        selections = selections[:1]
    for stem, n in selections:
        profile, row = knee_point(result, n_cycles=n, return_row=True)
        rec = export_recipe(profile, out, stem=stem, predicted=row)
        paths[stem] = rec["recipe"]
        paths[stem + "_setpoints"] = rec["setpoints"]
    return paths


def _load_twin(twin: Any) -> Any:
    if isinstance(twin, (str, Path)):
        path = Path(twin)
        if not path.exists():
            raise ModelError(f"twin directory {path} does not exist; fit one with 'crystalloop twin fit DOE.csv --out {path}'")
        from crystalloop.digital_twin.twin import DigitalTwin

        return DigitalTwin.load(path)
    return twin


def run_design_study(twin: Any, out_dir: str | Path, *, color: str | None = None,
                     **kwargs: Any) -> tuple[DesignResult, dict[str, Path]]:
    """Load the twin (a folder or a twin object), run :func:`optimize_design` with
    ``kwargs`` and :func:`write_design` into ``out_dir``."""
    result = optimize_design(_load_twin(twin), **kwargs)
    return result, write_design(result, out_dir, color=color)
