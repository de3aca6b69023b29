"""Plots of a digital twin: parity (train/test with error bars), α curves, feature importances.

All functions draw on a new matplotlib figure (Agg backend), save a PNG when ``path`` is given
and return the figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop._plotting import pyplot, save_figure
from crystalloop.errors import ModelError

__all__ = ["plot_parity", "plot_alpha_curves", "plot_feature_importance", "feature_importances"]


def _plt():
    return pyplot()


def _save(fig, path):
    if path is not None:
        save_figure(fig, path, dpi=120, bbox_inches="tight", close=False)
    return fig


def _split_data(twin, cqa: str, data: pd.DataFrame | None):
    df = twin.training_data_ if data is None else data
    if df is None:
        raise ModelError("the twin has no training data stored; pass data= (the DoE table)")
    info = twin.info_[cqa]
    ids = df["run_id"].astype(str) if "run_id" in df.columns else pd.Series([f"row{i + 1}" for i in range(len(df))])
    tr = df[ids.isin(info["train_ids"]).to_numpy()]
    te = df[ids.isin(info["test_ids"]).to_numpy()]
    return tr, te


def plot_parity(twin, cqa: str, *, data: pd.DataFrame | None = None, extra: pd.DataFrame | None = None,
                extra_label: str = "hold-out runs", path: str | Path | None = None):
    """Measured vs predicted ``cqa`` for the training and test rows, ±1 std error bars.

    ``extra`` (optional): another table with the feature and ``cqa`` columns (e.g. hold-out runs).
    """
    plt = _plt()
    tr, te = _split_data(twin, cqa, data)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    sets = [(tr, "training rows (in-sample)", "tab:blue", "o"), (te, "test", "tab:red", "s")]
    if extra is not None and cqa in extra.columns:
        sets.append((extra[extra[cqa].notna()], extra_label, "tab:green", "D"))
    allv = []
    for df, lab, col, mk in sets:
        if len(df) == 0:
            continue
        p = twin.predict_frame(df, cqas=[cqa], warn=False)
        y = df[cqa].to_numpy(float)
        ax.errorbar(y, p[f"{cqa}_mean"], yerr=p[f"{cqa}_std"], fmt=mk, color=col, ms=5, capsize=2, alpha=0.85,
                    label=f"{lab} (n={len(df)})")
        allv += [y, p[f"{cqa}_mean"].to_numpy()]
    v = np.concatenate(allv)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
    ax.set_xlabel(f"measured {cqa}")
    ax.set_ylabel(f"predicted {cqa} (mean ± 1 std)")
    i = twin.info_[cqa]
    ax.set_title(f"{cqa}: {i['family']}" + (" + synthetic" if i.get("augmentation", {}).get("used") else ""))
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_alpha_curves(curves: pd.DataFrame, *, cqa: str = "", path: str | Path | None = None):
    """CV MSE on real data vs α, one line per generator × m (seed 003 Fig. 5)."""
    plt = _plt()
    gens = list(dict.fromkeys(curves["generator"]))
    fig, axes = plt.subplots(1, len(gens), figsize=(4.2 * len(gens), 3.6), sharey=True, squeeze=False)
    for ax, g in zip(axes[0], gens, strict=True):
        sub = curves[curves["generator"] == g]
        for m, s in sub.groupby("m"):
            s = s.sort_values("alpha")
            ax.plot(s["alpha"], s["cv_mse"], marker="o", ms=3, label=f"m={m}")
        base = sub.loc[sub["alpha"] == 0, "cv_mse"]
        if len(base):
            ax.axhline(float(base.iloc[0]), color="k", lw=0.8, ls=":")
        ax.set_title(f"{cqa} {g}".strip())
        ax.set_xlabel("α (weight of synthetic data)")
    axes[0][0].set_ylabel("CV MSE on real data")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def feature_importances(twin, cqa: str, *, data: pd.DataFrame | None = None, n_repeats: int = 10,
                        random_state: int = 0) -> pd.Series:
    """Permutation importance (increase in MSE) of each feature on the CQA's training rows.

    Model-agnostic, so RF, GBT, XGBoost and SVR twins are comparable; features that are constant
    in the data get 0.
    """
    from sklearn.inspection import permutation_importance

    tr, _ = _split_data(twin, cqa, data)
    X = tr[twin.feature_names].to_numpy(float)
    y = tr[cqa].to_numpy(float)
    model = twin.models_[cqa]
    r = permutation_importance(model, X, y, scoring="neg_mean_squared_error", n_repeats=n_repeats,
                               random_state=random_state)
    return pd.Series(r.importances_mean, index=twin.feature_names).sort_values(ascending=False)


def plot_feature_importance(imp: pd.Series, *, cqa: str = "", top: int = 12, path: str | Path | None = None):
    """Horizontal bar chart of the ``top`` largest importances."""
    plt = _plt()
    s = imp.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(4.8, 0.28 * len(s) + 1.2))
    ax.barh(s.index, s.values, color="tab:blue")
    ax.set_xlabel("permutation importance (Δ MSE)")
    ax.set_title(f"{cqa} feature importance".strip())
    return _save(fig, path)
