"""The stages of :meth:`DigitalTwin.fit <crystalloop.digital_twin.DigitalTwin.fit>`, per CQA.

1. model selection (:func:`~crystalloop.digital_twin.models.select_model`);
2. augmentation search, the (fold, generator) tasks of every CQA in one joblib pool
   (:func:`~crystalloop.digital_twin.augment.search_augmentation_many`);
3. uncertainty ensembles and their cross-validated scores: with ``validation="repeated"`` the
   ensemble is fitted on every row and scored on its out-of-fold predictions (each row predicted
   by the members that did not see it); with ``validation="holdout"`` on the held-out rows.

Scores and calibration decide the twin's honesty warnings: a cross-validated R² <= 0 (no
better than predicting the mean) or interval coverage far from nominal.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from crystalloop.errors import ConfigError, ModelError, TwinWarning

from .augment import WeightedERMRegressor, search_augmentation_many
from .doe import DoETable, resolve_cqa
from .models import MIN_ROWS, MODEL_FAMILIES, make_estimator, select_model, with_features
from .uncertainty import BootstrapRegressor, MonteCarloCVRegressor, calibration_report

__all__ = ["check_settings", "fit_cqa_models", "FitResult", "honesty_warnings", "COVERAGE_TOLERANCE"]

#: How far the out-of-fold coverage of the 95 % (68 %) intervals may fall below (stray from) nominal
#: before the twin warns: below 0.85 for 95 %, outside [0.48, 0.88] for 68 %.
COVERAGE_TOLERANCE = {0.95: (0.85, 1.0), 0.68: (0.48, 0.88)}


@dataclass
class FitResult:
    cqas: list[str]
    models: dict[str, Any]
    info: dict[str, dict]
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)


def check_settings(twin: Any) -> None:
    """Raise :class:`ConfigError` for settings of ``twin`` that cannot work."""
    if twin.uncertainty not in ("mc", "bootstrap"):
        raise ConfigError(f"uncertainty must be 'mc' or 'bootstrap', got {twin.uncertainty!r}")
    if int(twin.n_splits) != twin.n_splits or twin.n_splits < 2:
        raise ConfigError(f"n_splits must be a whole number >= 2, got {twin.n_splits!r}")
    if twin.validation not in ("repeated", "holdout"):
        raise ConfigError(f"validation must be 'repeated' or 'holdout', got {twin.validation!r}")
    unknown = [f for f in twin.families if f not in MODEL_FAMILIES]
    if unknown or not list(twin.families):
        raise ConfigError(f"families: unknown {unknown or list(twin.families)}; expected some of {list(MODEL_FAMILIES)}")
    for a in twin.alphas:
        try:
            ok = 0.0 <= float(a) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"alpha {a!r} lies outside [0, 1]; the α grid must be inside [0, 1] (0 = real data only)")


def honesty_warnings(cqa: str, y: np.ndarray, r2: float | None, calibration: pd.DataFrame | list, *,
                     unit: str = "") -> list[str]:
    """One-line warnings when a CQA's model is no better than its mean or its intervals are off."""
    out = []
    if r2 is not None and np.isfinite(r2) and r2 <= 0:
        out.append(f"{cqa}: cross-validated R² {r2:.2f} <= 0 - the model is no better than predicting the mean "
                   f"{np.mean(y):.4g}{unit}; measure more runs before designing on it")
    rows = calibration.to_dict("records") if isinstance(calibration, pd.DataFrame) else list(calibration)
    for r in rows:
        lo, hi = COVERAGE_TOLERANCE.get(round(float(r["level"]), 2), (0.0, 1.0))
        cov = r.get("coverage")
        if cov is not None and np.isfinite(cov) and r.get("n", 0) >= 8 and not lo <= cov <= hi:
            side = "too narrow" if cov < lo else "too wide"
            out.append(f"{cqa}: {100 * r['level']:.0f} % intervals cover {100 * cov:.0f} % of {r['n']} "
                       f"cross-validated rows ({side}; expected {100 * lo:.0f}-{100 * hi:.0f} %)")
    return out


def _chosen(twin: Any, table: DoETable) -> list[str]:
    counts = table.n_measured()
    if twin.targets is None:
        chosen = []
        for c in table.cqa_names:
            if counts[c] >= MIN_ROWS:
                chosen.append(c)
            else:
                warnings.warn(
                    f"{table.source}: CQA {c!r} has {int(counts[c])} measured row(s) (< {MIN_ROWS}); it is "
                    f"left out of the twin. Measure it in more runs to model it", TwinWarning, stacklevel=4)
    else:
        chosen = [resolve_cqa(c, table.cqa_names) for c in twin.targets]
        for c in chosen:
            if counts[c] < MIN_ROWS:
                raise ModelError(
                    f"{table.source}: CQA {c!r} has {int(counts[c])} measured row(s); a model needs at least "
                    f"{MIN_ROWS}. Measure it in more runs or drop it from the targets"
                )
    if not chosen:
        raise ModelError(f"{table.source}: no CQA column has at least {MIN_ROWS} measured rows; nothing to model "
                         f"(CQA columns: {table.cqa_names})")
    return chosen


def fit_cqa_models(twin: Any, table: DoETable, *, progress: Callable[[str, str], None]) -> FitResult:
    """Run the three stages for every CQA with the settings of ``twin`` (a :class:`DigitalTwin`)."""
    rs = int(twin.random_state)
    chosen = _chosen(twin, table)
    t_all = time.perf_counter()
    stage_s: dict[str, float] = {}
    plan: dict[str, dict] = {}
    # stage 1: model selection
    t_stage = time.perf_counter()
    for k, cqa in enumerate(chosen):
        X, y, ids = table.xy(cqa)
        t0 = time.perf_counter()
        sel = select_model(X, y, families=tuple(twin.families), grid=twin.grid, cv=twin.cv,
                           validation=twin.validation, n_repeats=twin.n_repeats, test_size=twin.test_size,
                           features=twin.features, n_jobs=twin.n_jobs, random_state=rs + k,
                           progress=lambda fam, cqa=cqa: progress("select", f"{cqa}: {fam} tuned"))
        base = with_features(make_estimator(sel.best_family, random_state=rs + k, **sel.best_params), twin.features)
        plan[cqa] = {"k": k, "X": X, "y": y, "ids": ids, "sel": sel, "base": base, "member": base,
                     "times": {"selection_s": time.perf_counter() - t0}, "aug": {"used": False}}
    stage_s["selection_s"] = time.perf_counter() - t_stage
    # stage 2: augmentation search
    t_stage = time.perf_counter()
    curves: dict[str, pd.DataFrame] = {}
    cv_aug = 3 if isinstance(twin.cv, str) else int(twin.cv)
    if twin.augment:
        todo = []
        for cqa in chosen:
            tr = plan[cqa]["sel"].train_index
            if len(tr) < 2 * cv_aug:
                warnings.warn(f"{cqa}: {len(tr)} training rows are too few for the {cv_aug}-fold augmentation "
                              f"search; skipped", TwinWarning, stacklevel=4)
                plan[cqa]["aug"]["skipped"] = f"too few rows ({len(tr)})"
            else:
                todo.append(cqa)
        if todo:
            problems = [(plan[c]["X"][plan[c]["sel"].train_index], plan[c]["y"][plan[c]["sel"].train_index],
                         plan[c]["base"], rs + plan[c]["k"]) for c in todo]
            results = search_augmentation_many(
                problems, max_cycles=table.max_cycles, generators=list(twin.generators),
                n_synthetic=list(twin.n_synthetic), alphas=list(twin.alphas), cv=cv_aug, epochs=twin.epochs,
                min_improvement=twin.min_improvement, prune=twin.prune, n_jobs=twin.n_jobs)
            for cqa, res in zip(todo, results, strict=True):
                curves[cqa] = res.curves
                plan[cqa]["aug"] = {"used": res.use_augmentation, "baseline_cv_mse": res.baseline_mse, **res.best,
                                    "quality": res.quality, "min_improvement": twin.min_improvement,
                                    "epochs": twin.epochs, "prune": twin.prune,
                                    "n_pruned": int(res.curves["n_pruned"].sum())}
                plan[cqa]["times"]["augmentation_s"] = res.timings["task_s"] + res.timings["final_generators_s"]
                if res.use_augmentation:
                    Xs, ys = res.synthetic[res.best["generator"]]
                    m = res.best["m"]
                    plan[cqa]["member"] = WeightedERMRegressor(plan[cqa]["base"], alpha=res.best["alpha"],
                                                               X_synthetic=Xs[:m], y_synthetic=ys[:m])
    for cqa in chosen:
        plan[cqa]["times"].setdefault("augmentation_s", 0.0)
        a = plan[cqa]["aug"]
        progress("augment", f"{cqa}: {'kept ' + a.get('generator', '') if a.get('used') else 'no augmentation'}")
    stage_s["augmentation_s"] = time.perf_counter() - t_stage
    # stage 3: uncertainty ensembles and scores
    t_stage = time.perf_counter()
    models, info = {}, {}
    for cqa in chosen:
        p = plan[cqa]
        k, X, y, ids, sel = p["k"], p["X"], p["y"], p["ids"], p["sel"]
        tr, te = sel.train_index, sel.test_index
        t0 = time.perf_counter()
        if twin.uncertainty == "mc":
            ens = MonteCarloCVRegressor(p["member"], n_splits=int(twin.n_splits), n_jobs=twin.n_jobs, random_state=rs + k)
        else:
            ens = BootstrapRegressor(p["member"], n_estimators=int(twin.n_splits), n_jobs=twin.n_jobs, random_state=rs + k)
        ens.fit(X[tr], y[tr])
        p["times"]["uncertainty_s"] = time.perf_counter() - t0
        progress("uncertainty", f"{cqa}: {twin.n_splits}-member {twin.uncertainty} ensemble")
        mu_tr, sd_tr = ens.predict(X[tr], return_std=True)
        oof = ens.oof_prediction_
        seen = np.isfinite(oof)
        cv_r2 = float(r2_score(y[tr][seen], oof[seen])) if seen.sum() > 1 else None
        cal_cv = calibration_report(y[tr][seen], oof[seen], sd_tr[seen])
        entry: dict[str, Any] = {
            "family": sel.best_family,
            "params": sel.best_params,
            "validation": twin.validation,
            "cv_mse": float(sel.table.iloc[0]["cv_mse"]),
            "n_rows": int(len(y)), "n_train": int(len(tr)), "n_test": int(len(te)),
            "train_ids": [str(i) for i in ids[tr]], "test_ids": [str(i) for i in ids[te]],
            "train_r2": float(r2_score(y[tr], mu_tr)),
            "cv_r2": cv_r2,
            "cv_mae": float(mean_absolute_error(y[tr][seen], oof[seen])) if seen.any() else None,
            "calibration_cv": cal_cv.to_dict("records"),
            "test_r2": None, "test_mae": None, "test_mse": None,
        }
        calibration = cal_cv
        if len(te):
            mu_te, sd_te = ens.predict(X[te], return_std=True)
            calibration = calibration_report(y[te], mu_te, sd_te)
            entry.update(test_r2=float(r2_score(y[te], mu_te)) if len(te) > 1 else None,
                         test_mae=float(mean_absolute_error(y[te], mu_te)),
                         test_mse=float(mean_squared_error(y[te], mu_te)))
        unit = {"_um": " µm", "_pct": " %", "_min": " min"}.get(cqa[cqa.rfind("_"):], "")
        entry.update({
            "calibration": calibration.to_dict("records"),
            "warnings": honesty_warnings(cqa, y[tr], cv_r2, cal_cv, unit=unit),
            "residual_std": float(np.sqrt(ens.residual_var_)),
            "selection": sel.table.drop(columns=["fit_time_s"]).assign(
                best_params=sel.table["best_params"].map(lambda d: json.dumps(d, sort_keys=True))).to_dict("records"),
            "augmentation": p["aug"],
            "uncertainty": {"kind": twin.uncertainty, "n_members": int(twin.n_splits), "std_mode": ens.std_mode},
            "n_segments_seen": sorted({int(v) for v in np.rint(X[:, 3])}),
            "feature_min": X.min(axis=0).tolist(), "feature_max": X.max(axis=0).tolist(),
            "target_range": [float(y.min()), float(y.max())],
        })
        p["times"]["selection_table_s"] = {r["family"]: float(r["fit_time_s"]) for _, r in sel.table.iterrows()}
        info[cqa], models[cqa] = entry, ens
    stage_s["uncertainty_s"] = time.perf_counter() - t_stage
    times = {"stage_s": stage_s, "fit_time_s": time.perf_counter() - t_all, "cqa": {c: plan[c]["times"] for c in chosen}}
    return FitResult(chosen, models, info, curves, times)
