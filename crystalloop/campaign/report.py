"""Per-round figures and plots of a closed-loop campaign (:func:`~crystalloop.campaign.run_campaign`).

* :func:`round_summary` — hypervolume of the measured runs, best first objective under a
  limit, the twin's error and interval coverage on the round's new runs (predicted before
  they ran vs measured), and the image-based D50 error against the plant (``sim://``);
* :func:`plot_campaign` — ``parity.png`` (measured vs predicted per round),
  ``fronts.png`` (measured front growth across rounds), ``hypervolume.png`` and
  ``d50_image_vs_plant.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.campaign._labels import round_of
from crystalloop.profiles import ThermocycleProfile, feature_names

__all__ = ["round_summary", "plot_campaign", "measured_front", "objective_values"]


def objective_values(frame: pd.DataFrame, objs, max_cycles: int) -> pd.DataFrame:
    """Measured objective values of every DoE row (``batch_time_min`` from the recipe itself)."""
    out = pd.DataFrame(index=frame.index)
    for o in objs:
        if o.name == "batch_time_min":
            X = frame[feature_names(max_cycles)].to_numpy(float)
            out[o.name] = [ThermocycleProfile.from_features(x, max_cycles).batch_time_min for x in X]
        else:
            out[o.name] = frame[o.name].to_numpy(float) if o.name in frame else np.nan
    return out


_values = objective_values


def measured_front(V: np.ndarray, objs) -> np.ndarray:
    """Boolean mask of the non-dominated rows of measured objective values (natural units)."""
    from crystalloop.digital_twin.design import nondominated as _nondominated

    sign = np.array([o.sign for o in objs])
    ok = np.all(np.isfinite(V), axis=1)
    mask = np.zeros(len(V), dtype=bool)
    if ok.any():
        mask[np.flatnonzero(ok)] = _nondominated(V[ok] * sign)
    return mask


def _best_under(frame: pd.DataFrame, vals: pd.DataFrame, obj, limits) -> float:
    ok = np.isfinite(vals[obj.name].to_numpy(float))
    for c in limits:
        v = frame[c.name].to_numpy(float) if c.name in frame else vals[c.name].to_numpy(float)
        ok &= np.isfinite(v) & ((v >= c.value) if c.op == ">=" else (v <= c.value))
    if not ok.any():
        return float("nan")
    v = vals[obj.name].to_numpy(float)[ok]
    return float(v.max() if obj.direction == "max" else v.min())


def round_summary(r: int, frame: pd.DataFrame, new: pd.DataFrame, objs, limits, reference, max_cycles: int,
                  *, twin_cqas: list[str]) -> dict[str, Any]:
    """Figures of round ``r`` (see the module docstring); ``frame`` is the DoE after the round,
    ``new`` the round's rows of the campaign history."""
    from crystalloop.digital_twin.design import hypervolume

    vals = _values(frame, objs, max_cycles)
    rnd = round_of(frame["run_id"])
    out: dict[str, Any] = {"round": int(r), "n_runs": int(len(frame)), "n_new": int(len(new)),
                           "n_completed": int((new["status"] == "completed").sum())}
    V = vals.to_numpy(float)
    full = np.all(np.isfinite(V), axis=1)
    out["hypervolume"] = hypervolume(V[full], objs, reference)
    prev = full & (rnd < r)
    out["hypervolume_before"] = hypervolume(V[prev], objs, reference)
    o0 = objs[0]
    lim = " and ".join(str(c) for c in limits) if limits else "no limit"
    out["limit"] = lim
    out[f"best_{o0.name}"] = _best_under(frame, vals, o0, limits)
    this = rnd == r
    out[f"best_{o0.name}_this_round"] = _best_under(frame[this], vals[this], o0, limits) if this.any() else np.nan
    for o in objs:
        c = o.name
        if c not in twin_cqas or f"{c}_pred" not in new or c not in new:
            continue
        y, mu, sd = (new[c].to_numpy(float), new[f"{c}_pred"].to_numpy(float), new[f"{c}_std"].to_numpy(float))
        ok = np.isfinite(y) & np.isfinite(mu)
        if not ok.any():
            continue
        err = y[ok] - mu[ok]
        z = np.abs(err) / np.where(sd[ok] > 0, sd[ok], np.nan)
        out[f"{c}_mae"] = float(np.mean(np.abs(err)))
        out[f"{c}_bias"] = float(np.mean(err))
        out[f"{c}_coverage68"] = float(np.mean(z <= 1.0))
        out[f"{c}_coverage95"] = float(np.mean(z <= 1.96))
    if "plant_D50_um" in new and "D50_image_um" in new:
        a, b = new["D50_image_um"].to_numpy(float), new["plant_D50_um"].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
        if ok.any():
            out["D50_image_error_pct"] = float(np.mean(np.abs(a[ok] - b[ok]) / b[ok]) * 100.0)
            out["D50_image_bias_pct"] = float(np.mean((a[ok] - b[ok]) / b[ok]) * 100.0)
    return out


def plot_campaign(out_dir: str | Path, frame: pd.DataFrame, history: pd.DataFrame, rounds: pd.DataFrame, objs,
                  reference, max_cycles: int, limits=()) -> dict[str, Path]:
    """Write the campaign's PNG plots into ``out_dir``; return their paths."""
    from crystalloop._plotting import pyplot, save_figure

    plt = pyplot()

    from crystalloop.digital_twin.design import hypervolume

    out = Path(out_dir)
    files: dict[str, Path] = {}
    rnd_h = history["round"].to_numpy(int) if len(history) else np.zeros(0, int)
    n_r = int(rnd_h.max()) if len(rnd_h) else 0
    cmap = plt.get_cmap("viridis")

    def col(r: int):
        return cmap((r - 1) / max(n_r - 1, 1)) if n_r > 1 else "C3"

    # --- measured vs predicted per round
    pred_cqas = [o.name for o in objs if f"{o.name}_pred" in history and o.name in history]
    if pred_cqas:
        fig, axes = plt.subplots(1, len(pred_cqas), figsize=(4.6 * len(pred_cqas), 4.2), squeeze=False)
        for ax, c in zip(axes[0], pred_cqas, strict=True):
            y, mu, sd = (history[c].to_numpy(float), history[f"{c}_pred"].to_numpy(float),
                         history[f"{c}_std"].to_numpy(float))
            for r in sorted(set(rnd_h)):
                m = (rnd_h == r) & np.isfinite(y) & np.isfinite(mu)
                if m.any():
                    ax.errorbar(mu[m], y[m], xerr=sd[m], fmt="o", color=col(r), ms=5, capsize=2, label=f"round {r}")
            fin = np.r_[y[np.isfinite(y)], mu[np.isfinite(mu)]]
            if fin.size:
                lo, hi = fin.min(), fin.max()
                pad = 0.05 * (hi - lo if hi > lo else 1.0)
                ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
            ax.set_xlabel(f"{c} predicted before the run (±1 std)")
            ax.set_ylabel(f"{c} measured")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.suptitle("twin predictions vs measurements of the campaign runs")
        fig.tight_layout()
        files["parity"] = out / "parity.png"
        save_figure(fig, files["parity"], dpi=110)

    # --- front growth
    vals = _values(frame, objs, max_cycles)
    V = vals.to_numpy(float)
    rnd = round_of(frame["run_id"])
    sign = np.array([o.sign for o in objs])
    if len(objs) >= 2:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        base = rnd == 0
        ax.scatter(V[base, 0], V[base, 1], c="0.7", s=18, label="starting DoE")
        for r in range(1, int(rnd.max()) + 1):
            m = rnd == r
            ax.scatter(V[m, 0], V[m, 1], color=col(r), s=40, edgecolor="k", lw=0.5, label=f"round {r}")
        for r in range(0, int(rnd.max()) + 1):
            m = (rnd <= r) & np.all(np.isfinite(V[:, :2]), axis=1)
            if not m.any():
                continue
            P = V[m][:, :2]
            f = measured_front(P, objs[:2])
            P = P[f][np.argsort(P[f][:, 0] * sign[0])]
            ax.step(P[:, 0], P[:, 1], where="post", color="0.5" if r == 0 else col(r), lw=1.2, alpha=0.9)
        ax.scatter([reference[0]], [reference[1]], marker="x", c="k", label="HV reference")
        ax.set_xlabel(f"{objs[0].name} ({objs[0].direction})")
        ax.set_ylabel(f"{objs[1].name} ({objs[1].direction})")
        ax.set_title("measured runs and measured Pareto front after each round")
        ax.legend(fontsize=7)
        fig.tight_layout()
        files["fronts"] = out / "fronts.png"
        save_figure(fig, files["fronts"], dpi=110)

    # --- hypervolume per round
    full = np.all(np.isfinite(V), axis=1)
    rs = list(range(0, int(rnd.max()) + 1))
    hv = [hypervolume(V[full & (rnd <= r)], objs, reference) for r in rs]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(rs, hv, "o-")
    ax.set_xlabel("round (0 = starting DoE)")
    ax.set_ylabel("hypervolume of measured runs")
    ax.set_xticks(rs)
    fig.tight_layout()
    files["hypervolume"] = out / "hypervolume.png"
    save_figure(fig, files["hypervolume"], dpi=110)

    # --- image vs plant D50
    if "plant_D50_um" in history and "D50_image_um" in history:
        a, b = history["D50_image_um"].to_numpy(float), history["plant_D50_um"].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.any():
            fig, ax = plt.subplots(figsize=(4.6, 4.2))
            ax.scatter(b[ok], a[ok], c=[col(r) for r in rnd_h[ok]], edgecolor="k", lw=0.5)
            lo, hi = min(a[ok].min(), b[ok].min()), max(a[ok].max(), b[ok].max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            err = np.mean(np.abs(a[ok] - b[ok]) / b[ok]) * 100
            ax.set_xlabel("plant D50 (µm, ground truth)")
            ax.set_ylabel("image-based D50 x50,3 (µm)")
            ax.set_title(f"image measurement: mean |error| {err:.1f} %")
            fig.tight_layout()
            files["d50_image"] = out / "d50_image_vs_plant.png"
            save_figure(fig, files["d50_image"], dpi=110)
    return files
