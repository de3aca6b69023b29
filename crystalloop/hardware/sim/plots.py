"""Plots of a virtual-crystallizer run (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_result"]


def plot_result(result, path: str | Path | None = None, *, title: str | None = None):
    """Four-panel summary of a :class:`~crystalloop.hardware.sim.SimResult`.

    Panels: setpoint/jacket/reactor temperatures; concentration vs crystalline (and amorphous)
    solubility; particle counts and transmissivity; final PSD (volume density q3 with the
    agglomerate share, cumulative Q3 with D10/D50/D90).

    Parameters
    ----------
    result : SimResult
    path : str or Path, optional
        Where to save the PNG (folders are created). Without it the figure is returned unsaved.
    title : str, optional

    Returns
    -------
    Path or matplotlib.figure.Figure
        The PNG path if ``path`` was given, else the figure.
    """
    from crystalloop._plotting import pyplot

    plt = pyplot()

    ts = result.timeseries
    t_h = ts["time_s"].to_numpy() / 3600.0
    fig, ax = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained")

    a = ax[0, 0]
    a.plot(t_h, ts["T_set_c"], "k--", lw=1.2, label="setpoint")
    a.plot(t_h, ts["T_jacket_c"], color="tab:blue", lw=1.0, label="jacket")
    a.plot(t_h, ts["T_reactor_c"], color="tab:red", lw=1.5, label="reactor")
    a.set_xlabel("time (h)")
    a.set_ylabel("temperature (°C)")
    a.legend(loc="best", fontsize=8)
    a.set_title("Temperatures")

    a = ax[0, 1]
    a.plot(t_h, ts["conc_kg_kg"] * 1e3, color="tab:green", lw=1.5, label="concentration")
    a.plot(t_h, ts["csat_kg_kg"] * 1e3, color="tab:gray", lw=1.2, label="solubility (crystal)")
    am = result.kinetics.amorphous
    if am is not None:
        a.plot(t_h, ts["csat_kg_kg"] * 1e3 * am.solubility_ratio, color="tab:gray", ls=":", lw=1.0,
               label="solubility (amorphous)")
    a.set_xlabel("time (h)")
    a.set_ylabel("mg solute / g solvent")
    a.legend(loc="best", fontsize=8)
    a.set_title("Concentration and solubility")

    a = ax[1, 0]
    a.plot(t_h, ts["counts"], color="tab:purple", lw=1.0, label="counts")
    a.set_xlabel("time (h)")
    a.set_ylabel("counts per reading", color="tab:purple")
    b = a.twinx()
    b.plot(t_h, ts["transmissivity_pct"], color="tab:orange", lw=1.0, label="transmissivity")
    b.set_ylabel("transmissivity (%)", color="tab:orange")
    b.set_ylim(0, 105)
    a.set_title("Particle counts and transmissivity")

    a = ax[1, 1]
    psd = result.psd
    L = psd["size_um"].to_numpy()
    dL = (psd["size_upper_um"] - psd["size_lower_um"]).to_numpy()
    vol = (psd["number_per_m3"] * L**3).to_numpy()
    vol_a = (psd["agglomerate_per_m3"] * L**3).to_numpy()
    tot = vol.sum()
    if tot > 0:
        a.fill_between(L, vol / tot / dL, step="mid", alpha=0.35, color="tab:blue", label="q3 all crystals")
        a.plot(L, vol_a / tot / dL, drawstyle="steps-mid", color="tab:red", lw=1.0, label="q3 agglomerates")
        last = int(np.flatnonzero(psd["Q3"].to_numpy() < 0.9999)[-1]) + 2 if (psd["Q3"] < 0.9999).any() else len(L)
        a.set_xlim(0, float(psd["size_upper_um"].iloc[min(last, len(L) - 1)]) * 1.1)
    a.set_xlabel("size (µm)")
    a.set_ylabel("q3 (1/µm)")
    c = a.twinx()
    c.plot(psd["size_upper_um"], psd["Q3"], color="k", lw=1.0)
    c.set_ylabel("Q3")
    c.set_ylim(0, 1.02)
    q = result.cqas
    for key in ("D10_um", "D50_um", "D90_um"):
        if np.isfinite(q[key]):
            c.axvline(q[key], color="k", ls=":", lw=0.8)
    a.legend(loc="upper left", fontsize=8)
    a.set_title(f"Final PSD: D50 {q['D50_um']:.1f} µm, DoA {q['DoA_pct']:.1f} %, "
                f"crystallinity {q['crystallinity_pct']:.1f} %", fontsize=10)

    if title is None:
        import textwrap

        title = "\n".join(textwrap.wrap(
            f"Virtual crystallizer — {result.kinetics.name}, seed {result.seed}: {result.profile}", width=140))
    fig.suptitle(title, fontsize=10)
    if path is None:
        return fig
    from crystalloop._plotting import save_figure

    return save_figure(fig, path, dpi=100)
