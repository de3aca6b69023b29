"""Plots of recorded run data: every logged channel of a run against time.

Why here: a run's samples are produced by :mod:`crystalloop.control` (the runner logs every
batch it executes to the experiment store), and control already draws runs
(:meth:`~crystalloop.control.runner.RunResult.plot`). The store itself is a data layer below
every area (``errors, profiles ← store ← hardware ← control``): it reads and writes tables and
never imports matplotlib, so ``crystalloop export --plot`` writes the tables with
:meth:`~crystalloop.store.ExperimentStore.export` and then draws them with :func:`plot_samples`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError

__all__ = ["plot_samples", "plot_stored_run"]


def plot_samples(wide: pd.DataFrame, path: str | os.PathLike, *, title: str = "",
                 max_channels: int = 12) -> Path:
    """Plot a wide samples frame (``time_s`` + one column per channel) as stacked panels; save a PNG.

    Parameters
    ----------
    wide : DataFrame
        As returned by ``ExperimentStore.samples(run_id, wide=True)``: ``time_s`` in seconds
        and one float column per channel (NaN where a channel has no sample).
    path : str or Path
        PNG file to write (parent folders are created).
    title : str
        Figure title.
    max_channels : int
        At most this many channels are drawn (the first ones in column order).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ConfigError
        ``wide`` has no ``time_s`` column.
    """
    from crystalloop._plotting import pyplot, save_figure

    if "time_s" not in wide.columns:
        raise ConfigError(f"plot_samples needs a 'time_s' column, got columns {list(wide.columns)}")
    plt = pyplot()
    chans = [c for c in wide.columns if c != "time_s"][:max_channels]
    n = max(len(chans), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n + 0.8), sharex=True, squeeze=False)
    t_min = wide["time_s"].to_numpy(dtype=float) / 60.0
    for ax, ch in zip(axes[:, 0], chans, strict=False):
        y = wide[ch].to_numpy(dtype=float)
        ok = np.isfinite(y)
        ax.plot(t_min[ok], y[ok], lw=1.0, marker="." if ok.sum() < 50 else None)
        ax.set_ylabel(ch, fontsize=8)
        ax.grid(alpha=0.3)
    if not chans:
        axes[0, 0].text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("time (min)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_stored_run(store, run_id: int, path: str | os.PathLike, *, max_channels: int = 12) -> Path:
    """Plot every channel of a stored run against time (:func:`plot_samples`) and save a PNG.

    Parameters
    ----------
    store : ExperimentStore
        An open store (:class:`crystalloop.store.ExperimentStore`).
    run_id : int
    path : str or Path
        PNG file to write.
    max_channels : int
        At most this many channels are drawn.

    Returns
    -------
    Path
        The file written; the title names the store file, the run and its status.
    """
    status = store.run(run_id)["status"]
    return plot_samples(store.samples(run_id, wide=True), path, max_channels=max_channels,
                        title=f"{store.path.name} run {run_id} ({status})")
