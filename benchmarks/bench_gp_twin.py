"""FeatureGPTwin as a CLI twin (issue 16): fit cost, scores, save/load and prediction throughput.

In one run, on the shipped 31-run DoE (``examples/doe/doe.csv``) and the 200 fresh plant recipes
(``benchmarks/results/plant_truth/fresh_recipes.csv``):

1. **fit** with the defaults of ``crystalloop twin fit --model gp`` (``fit_gp_twin``: every physical
   feature, seed 0) with the default compound's solubility curve (``--solubility 8.0,0.283,0.00917``),
   the same without a solubility curve (profile features only), and with ``--features cv`` (all vs a
   forward selection, chosen by outer 5-fold CV): wall and CPU seconds, leave-one-out CV scores
   (what the model card shows) and the scores on the fresh recipes (MAE, R², 95 % coverage);
2. **save/load**: folder size, load time, largest prediction difference after the round trip;
3. **predict** 10,000 profiles (the fresh recipes tiled), mean + std of the three CQAs:
   ``FeatureGPTwin.predict_frame`` (physical features computed once for all CQAs, the GP's mean and
   std in a few matrix products) against the path before (each CQA computes its own features and
   calls scikit-learn's ``GaussianProcessRegressor.predict``) and, as the anchor, the ensemble
   twin's ``predict_frame`` (``fit_twin`` with the campaign's fast settings); best of 3, wall and
   CPU seconds.

Run:  python benchmarks/bench_gp_twin.py [--no-ensemble] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score

from crystalloop.digital_twin import fit_gp_twin, fit_twin, load_twin
from crystalloop.digital_twin.features import profile_features
from crystalloop.digital_twin.gp import solubility_curve
from crystalloop.profiles import feature_names

ROOT = Path(__file__).resolve().parents[1]
DOE = ROOT / "examples" / "doe" / "doe.csv"
FRESH = ROOT / "benchmarks" / "results" / "plant_truth" / "fresh_recipes.csv"
OUT = ROOT / "benchmarks" / "results" / "gp_twin"
CQAS = ["D50_um", "DoA_pct", "crystallinity_pct"]
SOLUBILITY = "8.0,0.283,0.00917"  # the default kinetic set's c*(T), mg/g solvent, T in °C


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _fresh_scores(twin, fresh: pd.DataFrame) -> dict:
    pred = twin.predict_frame(fresh[feature_names(4)], warn=False)
    out = {}
    for c in CQAS:
        m = fresh[c].notna().to_numpy()
        y, mu, sd = fresh[c].to_numpy(float)[m], pred[f"{c}_mean"].to_numpy()[m], pred[f"{c}_std"].to_numpy()[m]
        out[c] = {"mae": float(mean_absolute_error(y, mu)), "r2": float(r2_score(y, mu)),
                  "cov95": float(np.mean(np.abs(y - mu) <= 1.96 * sd)), "n": int(m.sum())}
    return out


def _sklearn_path(tw, X: np.ndarray) -> list:
    """The prediction path before issue 16: each CQA computes its own physical features and calls
    ``GaussianProcessRegressor.predict`` (no clip needed for the timing)."""
    out = []
    for q in tw.cqas:
        m = tw.models_[q]
        F = profile_features(X, solubility=tw.solubility, max_cycles=tw.max_cycles)
        out.append(m.gp_.predict((F[m.features_].to_numpy(float) - m.mean_) / m.scale_, return_std=True))
    return out


def _best_of(fn, repeats: int = 3) -> tuple[float, float]:
    best = (np.inf, np.inf)
    for _ in range(repeats):
        _, w, c = _timed(fn)
        best = min(best, (w, c))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-ensemble", action="store_true", help="skip the ensemble twin's throughput anchor")
    ap.add_argument("--n", type=int, default=10_000, help="profiles to predict")
    ap.add_argument("--repeats", type=int, default=3, help="timings per path (the best is kept)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    fresh = pd.read_csv(FRESH)
    sol = solubility_curve(SOLUBILITY)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "load_before": os.getloadavg(), "fits": {}}
    fit_gp_twin(DOE, solubility=sol)  # imports and first-call costs out of the timings
    twins = {}
    for name, kw in (("gp (CLI default)", dict(solubility=sol)), ("gp, no solubility curve", {}),
                     ("gp --features cv", dict(solubility=sol, features="cv"))):
        tw, w, c = _timed(lambda kw=kw: fit_gp_twin(DOE, random_state=0, **kw))
        twins[name] = tw
        res["fits"][name] = {
            "wall_s": w, "cpu_s": c,
            "loo": {q: {"mae": tw.info_[q]["cv_mae"], "r2": tw.info_[q]["cv_r2"], "cov95": tw.info_[q]["coverage_95"],
                        "n": tw.info_[q]["n_rows"], "strategy": tw.info_[q]["strategy"],
                        "n_features": len(tw.info_[q]["features"])} for q in tw.cqas},
            "fresh": _fresh_scores(tw, fresh)}
    print(f"fit on {DOE.name} (31 runs), scores per CQA: MAE / R² / 95 % coverage")
    print(f"{'twin':28s} {'wall s':>7s} {'CPU s':>7s}  " + "  ".join(f"{'LOO ' + q:>26s}  {'fresh ' + q:>26s}" for q in CQAS))
    for name, r in res["fits"].items():
        cells = []
        for q in CQAS:
            a, b = r["loo"][q], r["fresh"][q]
            cells.append(f"{a['mae']:8.2f} {a['r2']:6.2f} {a['cov95']:5.2f}      {b['mae']:8.2f} {b['r2']:6.2f} {b['cov95']:5.2f}  ")
        print(f"{name:28s} {r['wall_s']:7.2f} {r['cpu_s']:7.2f}  " + "  ".join(cells))

    tw = twins["gp (CLI default)"]
    with tempfile.TemporaryDirectory() as d:
        tw.save(Path(d) / "tw")
        size = sum(p.stat().st_size for p in (Path(d) / "tw").rglob("*") if p.is_file())
        back, lw, lc = _timed(lambda: load_twin(Path(d) / "tw"))
    Xf = fresh[feature_names(4)].to_numpy(float)
    X = np.tile(Xf, (int(np.ceil(args.n / len(Xf))), 1))[: args.n]
    diff = float(np.max(np.abs(np.hstack(back.predict(X, return_std=True)) - np.hstack(tw.predict(X, return_std=True)))))
    res["save_load"] = {"folder_bytes": size, "load_wall_s": lw, "load_cpu_s": lc, "max_abs_diff": diff}
    print(f"\nsave/load: folder {size / 1024:.0f} KiB, load {lw:.2f} s wall ({lc:.2f} CPU-s), largest prediction "
          f"difference after the round trip {diff:.1e}")

    rows = {"FeatureGPTwin.predict_frame (features once)": lambda: tw.predict_frame(X, warn=False),
            "per-CQA features + scikit-learn GP predict (the path before; baseline)": lambda: _sklearn_path(tw, X)}
    if not args.no_ensemble:
        ens, w, c = _timed(lambda: fit_twin(DOE, grid="fast", n_splits=20, augment=False, n_jobs=1, random_state=0))
        res["ensemble_fit"] = {"wall_s": w, "cpu_s": c}
        rows["ensemble twin predict_frame (fit_twin, campaign settings; anchor)"] = lambda: ens.predict_frame(X, warn=False)
    res["predict"] = {}
    print(f"\npredict {len(X):,} profiles, mean + std of {len(tw.cqas)} CQAs (best of {args.repeats})")
    print(f"{'path':70s} {'wall s':>8s} {'CPU s':>8s} {'profiles/s':>12s}")
    for name, fn in rows.items():
        fn()
        w, c = _best_of(fn, args.repeats)
        res["predict"][name] = {"wall_s": w, "cpu_s": c, "profiles_per_s": len(X) / w, "n": len(X)}
        print(f"{name:70s} {w:8.3f} {c:8.3f} {len(X) / w:12,.0f}")
    res["load_after"] = os.getloadavg()
    (OUT / "bench_gp_twin.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nload average before/after {res['load_before'][0]:.1f}/{res['load_after'][0]:.1f}; "
          f"results in {OUT / 'bench_gp_twin.json'}")


if __name__ == "__main__":
    main()
