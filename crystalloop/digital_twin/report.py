"""Twin report: model card (JSON + Markdown), candidate tables and PNG plots.

Every kind of twin gets a report: the ensemble :class:`~crystalloop.digital_twin.DigitalTwin`
(candidates, α curves, importances, parity of the training/test rows), the
:class:`~crystalloop.digital_twin.FeatureGPTwin` and the :class:`~crystalloop.digital_twin.HybridTwin`
(features kept, kernel, kinetic constants, parity of the leave-one-out predictions). A model card starts with its warnings (a CQA no better than its mean,
intervals that miss their coverage).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError

from .gp import FeatureGPTwin, fit_gp_twin
from .hybrid import HybridTwin, fit_hybrid_twin
from .persist import jsonable
from .plots import feature_importances, plot_alpha_curves, plot_feature_importance, plot_parity
from .uncertainty import calibration_report

__all__ = ["model_card", "write_report", "fit_and_save", "report_twin", "predict_profiles"]


def _holdout_entry(twin, cqa: str, holdout: pd.DataFrame | None) -> dict | None:
    if holdout is None or cqa not in holdout.columns or not holdout[cqa].notna().any():
        return None
    h = holdout[holdout[cqa].notna()]
    p = twin.predict_frame(h, cqas=[cqa], warn=False)
    y = h[cqa].to_numpy(float)
    mu, sd = p[f"{cqa}_mean"].to_numpy(), p[f"{cqa}_std"].to_numpy()
    cal = calibration_report(y, mu, sd)
    return {
        "n": int(len(h)), "mae": float(abs(y - mu).mean()), "mse": float(((y - mu) ** 2).mean()),
        "coverage_68": float(cal.loc[0, "coverage"]), "coverage_95": float(cal.loc[1, "coverage"]),
        "runs": [{"run_id": str(r), "measured": float(a), "mean": float(b), "std": float(c)}
                 for r, a, b, c in zip(h.get("run_id", h.index), y, mu, sd, strict=True)],
    }


def _gp_card(twin: FeatureGPTwin | HybridTwin, holdout: pd.DataFrame | None) -> dict:
    hybrid = isinstance(twin, HybridTwin)
    cards = {}
    for cqa in twin.cqas:
        i = twin.info_[cqa]
        m = twin.models_[cqa]
        entry = {
            "model": "hybrid" if hybrid else "gp", "warnings": i.get("warnings", []), "rows": {"measured": i.get("n_rows")},
            "features": {"strategy": i.get("strategy"), "kept": i.get("features"),
                         "outer_cv_mae": i.get("strategy_mae") or None},
            "kernel": i.get("kernel"), "log_target": bool(getattr(m, "log_target", False)),
            "clip": None if m.clip is None else list(m.clip),
            "cross_validated": {"method": i.get("cv_method"), "r2": i.get("cv_r2"), "mae": i.get("cv_mae"),
                                "calibration": i.get("calibration_cv")},
            "training_range": i.get("target_range"), "n_segments_seen": i.get("n_segments_seen"),
        }
        if hybrid:
            entry["mean"] = i.get("mean")
            entry["noise_feature"] = i.get("noise_feature")
            entry["std_factor"] = i.get("std_factor")
        h = _holdout_entry(twin, cqa, holdout)
        if h is not None:
            entry["holdout"] = h
        cards[cqa] = entry
    md = twin.metadata_
    if hybrid:
        return _hybrid_card(twin, cards)
    return {
        "name": "crystalloop digital twin (Gaussian process on physical profile features)",
        "kind": "feature-gp",
        "warnings": [w for c in twin.cqas for w in twin.info_[c].get("warnings", [])],
        "intended_use": ("Predict end-of-batch CQAs (mean ± std) of thermocycle crystallization recipes inside the "
                         "design space of its DoE, to rank candidate recipes before running them."),
        "not_for": "Extrapolation outside the training ranges or to profile structures (n_segments) never run.",
        "inputs": {"max_cycles": twin.max_cycles, "features": twin.feature_names,
                   "solubility": md.get("settings", {}).get("solubility")},
        "data": {k: md.get(k) for k in ("source", "n_runs", "data_hash")},
        "settings": md.get("settings"),
        "versions": md.get("versions"),
        "cqas": cards,
        "caveats": [
            "Cross-validated scores are the closed-form leave-one-out predictions of each fitted GP: the kernel "
            "hyperparameters (and, with features 'cv'/'auto', the feature set) were chosen on all rows, so they "
            "are somewhat optimistic; 'outer_cv_mae' is the honest figure when the features were chosen by CV.",
            "std is the GP's predictive std including its fitted noise term; check the coverage.",
            "Without a solubility curve the GP sees only the profile features (no saturation, supersaturation "
            "or dissolution features).",
        ],
    }


def _hybrid_card(twin: HybridTwin, cards: dict) -> dict:
    md = twin.metadata_
    kin = md.get("kinetic")
    return {
        "name": "crystalloop digital twin (grey-box: fitted kinetic model under a Gaussian process per CQA)",
        "kind": "hybrid",
        "warnings": ([] if kin else ["no kinetic model (no solubility curve, or the size CQA is not modelled): "
                                     "every CQA is a GP on the profile features only"])
        + [w for c in twin.cqas for w in twin.info_[c].get("warnings", [])],
        "intended_use": ("Predict end-of-batch CQAs (mean ± std) of thermocycle crystallization recipes inside the "
                         "design space of its DoE, to rank candidate recipes before running them."),
        "not_for": "Extrapolation outside the training ranges or to profile structures (n_segments) never run.",
        "inputs": {"max_cycles": twin.max_cycles, "features": twin.feature_names,
                   "solubility": md.get("settings", {}).get("solubility")},
        "kinetic_model": kin,
        "data": {k: md.get(k) for k in ("source", "n_runs", "data_hash")},
        "settings": md.get("settings"),
        "versions": md.get("versions"),
        "cqas": cards,
        "caveats": [
            "Cross-validated scores are the closed-form leave-one-out predictions of each fitted GP; the kinetic "
            "constants, the GP hyperparameters and the std calibration were chosen on all rows, so the scores are "
            "optimistic (the 95 % coverage is at least 0.95 by construction of the calibration). Judge the twin on "
            "runs it never saw (--holdout).",
            "The size CQA is the kinetic model's D50 times exp(GP residual): the median of a log-normal; its std "
            "is set so that mean ± 1.96 std spans that log-normal's 95 % interval.",
            "The kinetic model is a textbook cohort model (power-law growth, secondary nucleation, dissolution) "
            "whose 7 constants are fitted to the size CQA only; it knows nothing of agglomeration or amorphous product.",
        ],
    }


def model_card(twin, *, holdout: pd.DataFrame | None = None) -> dict:
    """A JSON-able model card: warnings, intended use, data, per-CQA model, scores, uncertainty, caveats."""
    if isinstance(twin, (FeatureGPTwin, HybridTwin)):
        return _gp_card(twin, holdout)
    cards = {}
    for cqa in twin.cqas:
        i = twin.info_.get(cqa, {})
        entry = {
            "model": i.get("family"), "params": i.get("params"),
            "warnings": i.get("warnings", []),
            "rows": {"measured": i.get("n_rows"), "train": i.get("n_train"), "test": i.get("n_test")},
            "validation": i.get("validation"),
            "cv_mse": i.get("cv_mse"),
            "cross_validated": {"r2": i.get("cv_r2"), "mae": i.get("cv_mae"), "calibration": i.get("calibration_cv")},
            "test": {"r2": i.get("test_r2"), "mae": i.get("test_mae"), "mse": i.get("test_mse")},
            "calibration_test": i.get("calibration") if i.get("n_test") else None,
            "augmentation": i.get("augmentation"),
            "uncertainty": i.get("uncertainty"),
            "training_range": i.get("target_range"),
            "n_segments_seen": i.get("n_segments_seen"),
        }
        h = _holdout_entry(twin, cqa, holdout)
        if h is not None:
            entry["holdout"] = h
        cards[cqa] = entry
    warns = [w for c in twin.cqas for w in twin.info_.get(c, {}).get("warnings", [])]
    return {
        "name": "crystalloop digital twin",
        "warnings": warns,
        "intended_use": ("Predict end-of-batch CQAs (mean ± std) of thermocycle crystallization recipes inside the "
                         "design space of its DoE, to rank candidate recipes before running them."),
        "not_for": "Extrapolation outside the training ranges or to profile structures (n_segments) never run.",
        "inputs": {"max_cycles": twin.max_cycles, "features": twin.feature_names},
        "data": {k: twin.metadata_.get(k) for k in ("source", "n_runs", "data_hash", "doe_warnings")},
        "settings": twin.metadata_.get("settings"),
        "versions": twin.metadata_.get("versions"),
        "cqas": cards,
        "caveats": [
            "Cross-validated scores come from the ensemble's out-of-fold predictions (each row predicted by the "
            "members that did not train on it); with validation='holdout' the test scores rest on a handful of runs.",
            "Synthetic augmentation is kept only where it lowered the CV error on real rows; the MC-CV members "
            "reuse one synthetic set generated from all training rows, so their residual-based std is slightly optimistic.",
            "std = sqrt(member spread^2 + out-of-sample residual variance) ('predictive'); check the coverage.",
        ],
    }


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gp_markdown(card: dict, twin: FeatureGPTwin | HybridTwin, files: dict) -> str:
    out = [f"# Model card: {card['name']}", ""]
    if card["warnings"]:
        out += ["**Warnings.**", ""] + [f"- {w}" for w in card["warnings"]] + [""]
    sol = card["inputs"].get("solubility")
    out += [f"Data `{card['data']['source']}` ({card['data']['n_runs']} runs"
            + (f", sha256 `{str(card['data']['data_hash'])[:12]}…`" if card["data"].get("data_hash") else "") + ").", "",
            f"**Intended use.** {card['intended_use']}", "", f"**Not for.** {card['not_for']}", "",
            "**Solubility curve.** " + (f"`{json.dumps(sol)}` (mg/g solvent, T in °C)" if sol else
                                        "none: profile features only."), ""]
    kin = card.get("kinetic_model")
    if kin:
        out += [f"**Kinetic model.** {len(kin['thetas'])} constant set(s) fitted to `{kin['size_cqa']}` "
                f"(log D50 RMSE on the DoE {kin['rmse_log_d50']:.3f}); best set "
                f"`{[round(float(v), 4) for v in kin['theta']]}`.", ""]
    out += [
            "## Summary", "", _md_table(twin.summary()), ""]
    for cqa, e in card["cqas"].items():
        f = e["features"]
        cv = e["cross_validated"]
        kind = ("GP on the kinetic model's log residual" if e.get("mean") == "kinetic" else "GP") if "mean" in e else "GP"
        out += [f"## {cqa}", "", f"{kind} on {len(f['kept'])} feature(s) ({f['strategy']}): "
                f"{', '.join(f'`{k}`' for k in f['kept'])}.", "", f"Kernel: `{e['kernel']}`"
                + ("; log target" if e["log_target"] else "") + (f"; clipped to {e['clip']}" if e["clip"] else "") + ".",
                "", f"Leave-one-out on {e['rows']['measured']} rows: MAE {cv['mae']:.4g}, R² "
                + (f"{cv['r2']:.3f}" if cv["r2"] is not None else "n/a") + ", coverage "
                + ", ".join(f"{100 * r['level']:.0f} % {r['coverage']:.2f}" for r in cv["calibration"]) + ".", ""]
        if f.get("outer_cv_mae"):
            out += ["Outer 5-fold CV MAE of the feature strategies: "
                    + ", ".join(f"{k} {v:.4g}" for k, v in f["outer_cv_mae"].items()) + ".", ""]
        if "holdout" in e:
            h = e["holdout"]
            out += [f"Hold-out runs: n={h['n']}, MAE {h['mae']:.4g}, coverage 68 % {h['coverage_68']:.2f}, "
                    f"95 % {h['coverage_95']:.2f}.", ""]
        for k, v in files.get(cqa, {}).items():
            out.append(f"![{cqa} {k}]({v})")
        out.append("")
    out += ["## Caveats", ""] + [f"- {c}" for c in card["caveats"]] + [""]
    return "\n".join(out)


def _plot_loo_parity(twin: FeatureGPTwin | HybridTwin, cqa: str, *, holdout: pd.DataFrame | None, path: Path):
    """Measured vs leave-one-out mean ± 1 std (and hold-out runs), saved as PNG."""
    from crystalloop._plotting import pyplot, save_figure

    plt = pyplot()
    m = twin.models_[cqa]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.errorbar(m.y_train_, m.loo_mean_, yerr=m.loo_std_, fmt="o", color="tab:blue", ms=5, capsize=2, alpha=0.85,
                label=f"training rows, leave-one-out (n={len(m.y_train_)})")
    allv = [m.y_train_, m.loo_mean_]
    if holdout is not None and cqa in holdout.columns and holdout[cqa].notna().any():
        h = holdout[holdout[cqa].notna()]
        p = twin.predict_frame(h, cqas=[cqa], warn=False)
        ax.errorbar(h[cqa], p[f"{cqa}_mean"], yerr=p[f"{cqa}_std"], fmt="D", color="tab:green", ms=5, capsize=2,
                    alpha=0.85, label=f"hold-out runs (n={len(h)})")
        allv += [h[cqa].to_numpy(float), p[f"{cqa}_mean"].to_numpy()]
    v = np.concatenate(allv)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
    ax.set_xlabel(f"measured {cqa}")
    ax.set_ylabel(f"predicted {cqa} (mean ± 1 std)")
    ax.set_title(f"{cqa}: GP on {len(m.features_)} features")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120, bbox_inches="tight", close=False)
    return fig


def _write_gp_report(twin: FeatureGPTwin | HybridTwin, d: Path, holdout: pd.DataFrame | None) -> dict[str, Path]:
    written: dict[str, Path] = {}
    files: dict[str, dict[str, str]] = {}
    for cqa in twin.cqas:
        p = d / f"parity_{cqa}.png"
        _close(_plot_loo_parity(twin, cqa, holdout=holdout, path=p))
        files[cqa] = {"parity (leave-one-out)": p.name}
        written[f"parity_{cqa}"] = p
    card = model_card(twin, holdout=holdout)
    p = d / "model_card.json"
    p.write_text(json.dumps(_clean(card), indent=2) + "\n", encoding="utf-8")
    written["model_card_json"] = p
    p = d / "model_card.md"
    p.write_text(_gp_markdown(card, twin, files), encoding="utf-8")
    written["model_card_md"] = p
    return written


def _markdown(card: dict, twin, files: dict) -> str:
    out = [f"# Model card: {card['name']}", ""]
    if card["warnings"]:
        out += ["**Warnings.**", ""] + [f"- {w}" for w in card["warnings"]] + [""]
    out += [f"Data `{card['data']['source']}` "
           f"({card['data']['n_runs']} runs, sha256 `{str(card['data']['data_hash'])[:12]}…`).", "",
           f"**Intended use.** {card['intended_use']}", "", f"**Not for.** {card['not_for']}", "",
           "## Summary", "", _md_table(twin.summary()), ""]
    for cqa, e in card["cqas"].items():
        out += [f"## {cqa}", "", f"Model: **{e['model']}** `{json.dumps(e['params'])}`; rows measured/train/test "
                f"{e['rows']['measured']}/{e['rows']['train']}/{e['rows']['test']}.", ""]
        sel = pd.DataFrame(twin.info_[cqa]["selection"])[["rank", "family", "cv_mse", "cv_r2", "test_r2", "n_grid"]]
        out += ["Candidates (GridSearchCV; each row is the family's best single model, while the summary scores "
                "the ensemble):", "", _md_table(sel), ""]
        a = e.get("augmentation") or {}
        if a.get("generator"):
            q = ", ".join(f"{k} {v:.3f}" for k, v in (a.get("quality") or {}).items() if v is not None)
            out += [f"Augmentation: best {a['generator']} m={a['m']} α={a['alpha']} CV MSE {a['cv_mse']:.4g} vs "
                    f"{a['baseline_cv_mse']:.4g} real-only ({100 * a['improvement']:.1f} % lower) → "
                    f"{'kept' if a['used'] else 'not kept'}. SDV quality: {q or 'n/a'}.", ""]
        if "holdout" in e:
            h = e["holdout"]
            out += [f"Hold-out runs: n={h['n']}, MAE {h['mae']:.4g}, coverage 68 % {h['coverage_68']:.2f}, "
                    f"95 % {h['coverage_95']:.2f}.", ""]
        for k, v in files.get(cqa, {}).items():
            out.append(f"![{cqa} {k}]({v})")
        out.append("")
    out += ["## Caveats", ""] + [f"- {c}" for c in card["caveats"]] + [""]
    return "\n".join(out)


def write_report(twin, out_dir: str | Path, *, holdout: pd.DataFrame | None = None,
                 importance_repeats: int = 5) -> dict[str, Path]:
    """Write ``model_card.json``, ``model_card.md``, ``candidates.csv`` and the PNG plots.

    Returns a dict of the written paths.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(twin, (FeatureGPTwin, HybridTwin)):
        return _write_gp_report(twin, d, holdout)
    written: dict[str, Path] = {}
    files: dict[str, dict[str, str]] = {}
    cand = []
    for cqa in twin.cqas:
        files[cqa] = {}
        p = d / f"parity_{cqa}.png"
        fig = plot_parity(twin, cqa, extra=holdout, path=p)
        _close(fig)
        files[cqa]["parity"], written[f"parity_{cqa}"] = p.name, p
        if cqa in twin.augmentation_curves_:
            p = d / f"alpha_{cqa}.png"
            _close(plot_alpha_curves(twin.augmentation_curves_[cqa], cqa=cqa, path=p))
            files[cqa]["alpha curve"], written[f"alpha_{cqa}"] = p.name, p
        if twin.training_data_ is not None:
            imp = feature_importances(twin, cqa, n_repeats=importance_repeats)
            p = d / f"importance_{cqa}.png"
            _close(plot_feature_importance(imp, cqa=cqa, path=p))
            files[cqa]["feature importance"], written[f"importance_{cqa}"] = p.name, p
        cand.append(pd.DataFrame(twin.info_[cqa]["selection"]).assign(cqa=cqa))
    if cand:
        p = d / "candidates.csv"
        pd.concat(cand, ignore_index=True).to_csv(p, index=False)
        written["candidates"] = p
    card = model_card(twin, holdout=holdout)
    p = d / "model_card.json"
    p.write_text(json.dumps(_clean(card), indent=2) + "\n", encoding="utf-8")
    written["model_card_json"] = p
    p = d / "model_card.md"
    p.write_text(_markdown(card, twin, files), encoding="utf-8")
    written["model_card_md"] = p
    return written


def _clean(obj):
    return jsonable(obj)


def _close(fig) -> None:
    from crystalloop._plotting import pyplot

    pyplot().close(fig)


def fit_and_save(doe, out_dir: str | Path, *, holdout=None, report: bool = True, progress=None,
                 model: str = "ensemble", **fit_kw):
    """Fit a twin from ``doe``, save it in ``out_dir`` and (optionally) write its report to ``out_dir/report``.

    Parameters
    ----------
    model : {"ensemble", "gp", "hybrid"}
        ``"ensemble"``: :func:`~crystalloop.digital_twin.fit_twin` with ``fit_kw``;
        ``"gp"``: :func:`~crystalloop.digital_twin.gp.fit_gp_twin` with ``fit_kw`` (``cqas``,
        ``solubility``, ``features``, ``random_state``, ...); ``"hybrid"``:
        :func:`~crystalloop.digital_twin.hybrid.fit_hybrid_twin` (``cqas``, ``solubility``,
        ``random_state``, ...).
    holdout : path or DataFrame, optional
        Hold-out runs for the parity plots and the model card.

    Returns ``(twin, written_paths)``.
    """
    from .twin import fit_twin

    if model == "gp":
        twin = fit_gp_twin(doe, **fit_kw)
    elif model == "hybrid":
        twin = fit_hybrid_twin(doe, **fit_kw)
    elif model == "ensemble":
        twin = fit_twin(doe, progress=progress, **fit_kw)
    else:
        raise ConfigError(f"model must be 'ensemble', 'gp' or 'hybrid', got {model!r}")
    out = Path(out_dir)
    twin.save(out)
    written: dict[str, Path] = {"twin": out / "twin.json"}
    if report:
        hold = _holdout_frame(holdout, twin)
        written.update(write_report(twin, out / "report", holdout=hold))
    return twin, written


def _holdout_frame(holdout, twin) -> pd.DataFrame | None:
    if holdout is None:
        return None
    from .doe import read_doe

    t = read_doe(holdout, max_cycles=twin.max_cycles, bounds=None, extra_columns="ignore")
    return t.to_frame()


def report_twin(twin_dir: str | Path, out_dir: str | Path | None = None, *, holdout=None) -> dict[str, Path]:
    """Load the twin in ``twin_dir`` (either kind) and write its report (default ``twin_dir/report``)."""
    from .twin import load_twin

    twin = load_twin(twin_dir)
    hold = _holdout_frame(holdout, twin)
    return write_report(twin, Path(out_dir) if out_dir is not None else Path(twin_dir) / "report", holdout=hold)


def predict_profiles(twin_dir: str | Path, profiles, out: str | Path | None = None) -> pd.DataFrame:
    """Predict every profile of a table (feature columns or a ``recipe`` column) with a saved twin.

    Returns a DataFrame with ``run_id`` (when present) and ``{cqa}_mean``/``{cqa}_std``; writes
    it as CSV when ``out`` is given.
    """
    import warnings

    from .doe import DoEWarning, read_doe
    from .twin import load_twin

    twin = load_twin(twin_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DoEWarning)
        table = read_doe(profiles, max_cycles=twin.max_cycles, bounds=None, extra_columns="ignore")
    pred = twin.predict_frame(table.features)
    pred.insert(0, "run_id", table.features.index.astype(str))
    pred = pred.reset_index(drop=True)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pred.to_csv(out, index=False)
    return pred
