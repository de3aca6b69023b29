"""Plots of a design study: Pareto fronts per number of cycles (seed 003 Figs. 7/8) and convergence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crystalloop._plotting import pyplot, save_figure
from crystalloop.errors import OptimizationError

from .result import DesignResult
from .selection import knee_point
from .spec import BATCH_TIME, resolve_quantity

__all__ = ["plot_fronts", "plot_convergence"]

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def _column(result: DesignResult, name: str) -> tuple[str, str | None]:
    q = resolve_quantity(name, result.cqas, what="plot axis")
    if q == BATCH_TIME:
        return BATCH_TIME, None
    return q + "_mean", q + "_std"


def plot_fronts(
    result: DesignResult,
    *,
    x: str | None = None,
    y: str | None = None,
    color: str | None = None,
    error_bars: bool | None = None,
    mark_knee: bool = True,
    path: str | Path | None = None,
    ax: Any = None,
) -> Any:
    """Pareto fronts of all instances on one axes, a marker per number of cycles.

    Parameters
    ----------
    result : DesignResult
    x, y : str, optional
        Quantities on the axes (default: the first two objectives; with one objective,
        that objective against the batch time).
    color : str, optional
        A third quantity shown as colour with a colour bar (e.g. ``"crystallinity"``,
        the paper's Fig. 8); default: one colour per instance (Fig. 7).
    error_bars : bool, optional
        Draw ± one predicted standard deviation (default: when the fronts hold at most
        150 points, beyond which the bars hide the fronts).
    mark_knee : bool
        Circle the knee point of the global front (as the validated point in seed 003 Fig. 7).
    path : path, optional
        Save the figure as PNG here.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()

    names = [o.name for o in result.objectives]
    x = x or names[0]
    y = y or (names[1] if len(names) > 1 else BATCH_TIME)
    (xc, xs), (yc, ys) = _column(result, x), _column(result, y)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    else:
        fig = ax.figure
    tab = result.front
    if error_bars is None:
        error_bars = len(tab) <= 150
    cvals = None
    if color is not None:
        cc, _ = _column(result, color)
        cvals = tab[cc].to_numpy(dtype=float)
        norm = plt.Normalize(np.nanmin(cvals), np.nanmax(cvals))
    sc = None
    for j, inst in enumerate(result.instances):
        m = (tab["instance"] == inst).to_numpy()
        xv, yv = tab.loc[m, xc].to_numpy(float), tab.loc[m, yc].to_numpy(float)
        o = np.argsort(xv)
        xv, yv = xv[o], yv[o]
        if error_bars:
            ax.errorbar(xv, yv, xerr=tab.loc[m, xs].to_numpy(float)[o] if xs else None,
                        yerr=tab.loc[m, ys].to_numpy(float)[o] if ys else None,
                        fmt="none", ecolor="0.75", elinewidth=0.6, zorder=1)
        mk = _MARKERS[j % len(_MARKERS)]
        if cvals is None:
            ax.plot(xv, yv, marker=mk, ms=5, lw=0.8, label=inst, zorder=2)
        else:
            ax.plot(xv, yv, lw=0.6, color="0.6", zorder=1)
            sc = ax.scatter(xv, yv, c=cvals[m][o], cmap="viridis", norm=norm, marker=mk,
                            s=28, edgecolors="k", linewidths=0.3, label=inst, zorder=2)
    if mark_knee and len(result.objectives) >= 2:
        _, row = knee_point(result, return_row=True)
        ax.scatter([row[xc]], [row[yc]], s=220, facecolors="none", edgecolors="red", linewidths=1.5,
                   zorder=3, label="knee point")
    ax.set_xlabel(xc.removesuffix("_mean"))
    ax.set_ylabel(yc.removesuffix("_mean"))
    k = float(result.settings.get("pessimistic", 0.0))
    ax.set_title("Pareto fronts per number of cycles" + (f" (pessimistic k={k:g})" if k else ""))
    if sc is not None:
        fig.colorbar(sc, ax=ax, label=f"predicted {cc.removesuffix('_mean')}")
    handles, labels = ax.get_legend_handles_labels()
    if cvals is not None:  # marker shapes in neutral grey: the colour encodes the third quantity
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker=_MARKERS[j % len(_MARKERS)], ls="none", mfc="0.7", mec="k", ms=6)
                   if j < len(result.instances) else h for j, h in enumerate(handles)]
    ax.legend(handles, labels, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, close=False)
    return fig


def plot_convergence(result: DesignResult, *, path: str | Path | None = None, ax: Any = None) -> Any:
    """Hypervolume per generation for every instance (shared reference point)."""
    plt = pyplot()

    if result.history.empty:
        raise OptimizationError("the result has no convergence history to plot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    else:
        fig = ax.figure
    for inst, h in result.history.groupby("instance", sort=False):
        ax.plot(h["generation"], h["hypervolume"], label=inst)
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.set_title("NSGA-II convergence on the twin")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, close=False)
    return fig
