"""Twins judged on fresh recipes from the plant (issue 16).

Every twin is fitted on the shipped 31-run DoE (``examples/doe/doe.csv``, noisy measurements,
DoA in 21 runs and crystallinity in 15) and judged on ``benchmarks/results/plant_truth/
fresh_recipes.csv`` (200 recipes from the DoE's own generator, 40 per number of cycles 0–4, run on
the plant with batch-to-batch variability; ``python benchmarks/plant_truth.py --only fresh``).
Side by side, in one run:

(a) **seed-003 pipeline**: ``fit_twin`` with the settings the README tour uses
    (``twin fit --grid fast``: RF/GBT/XGBoost/SVR grid search, MC-CV ensemble, SDV augmentation);
(b) **Gaussian process** (scikit-learn, Matern 5/2 with ARD length scales + white noise, on the
    standardised recipe vector): the usual small-data baseline;
(c) **physical features**: the same ``fit_twin`` pipeline with
    :class:`crystalloop.digital_twin.features.ProfileFeatures` in front (profile features and, with
    the compound's solubility curve, saturation temperature, supersaturation generation, fraction
    dissolved per cycle, ...), augmentation off.
(d) **GP on physical features** (isotropic Matern on the standardised physical features).
(e) **FeatureGPTwin** (:mod:`crystalloop.digital_twin.gp`): per CQA, a GP on physical features whose
    feature set ("all", or a greedy forward selection by leave-one-out MAE) is chosen by an outer
    5-fold CV on the DoE only; percentages clipped to 0–100.
(f) **HybridTwin** (:mod:`crystalloop.digital_twin.hybrid`): a grey-box kinetic model
    (:mod:`crystalloop.digital_twin.kinetic`: power-law growth with Arrhenius factor, secondary
    nucleation, dissolution, seeds charged at the saturation point; 7 constants fitted to the DoE's
    D50, an ensemble of 3 global searches) run on every recipe; D50 = kinetic D50 × a GP on the log
    residual (physical features), DoA and crystallinity = GPs on the physical features plus the
    kinetic model's quantities (peak supersaturation, seed survival, nuclei share, ...).

Per CQA: MAE, R², and the coverage of the 95 % interval (mean ± 1.96 std) on the fresh recipes
(recipes that make no product have no D50/crystallinity and are left out of those CQAs). The
plant's own repeatability (``noise_floor.csv``) is printed beside it.

Run:  python benchmarks/bench_twin_fresh.py [--quick] [--only a,b,c,d,e,f] [--seed 0] [--fresh dev_recipes.csv]
      python benchmarks/bench_twin_fresh.py --make-dev   (the 100-recipe development set, seed 7)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crystalloop.digital_twin import fit_twin
from crystalloop.digital_twin.features import ProfileFeatures, SolubilityCurve, profile_features
from crystalloop.digital_twin.gp import FeatureGPTwin
from crystalloop.digital_twin.hybrid import HybridTwin
from crystalloop.profiles import feature_names

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "benchmarks" / "results" / "plant_truth"
DEV = TRUTH / "dev_recipes.csv"
CQAS = ["D50_um", "DoA_pct", "crystallinity_pct"]
#: the default compound's solubility (crystalloop/data/kinetics/default.yaml), in mg/g solvent, T in °C
SOLUBILITY = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))


def _gp(n_dim: int | None, seed: int):
    ls = np.ones(n_dim) if n_dim else 1.0
    k = ConstantKernel(1.0) * Matern(length_scale=ls, nu=2.5, length_scale_bounds=(1e-1, 1e3)) + WhiteKernel(1e-2, (1e-4, 1.0))
    return make_pipeline(StandardScaler(), GaussianProcessRegressor(k, normalize_y=True, n_restarts_optimizer=5,
                                                                    random_state=seed))


def gp_predictions(doe: pd.DataFrame, X_test: pd.DataFrame, *, physical: bool, seed: int) -> dict:
    out = {}
    for c in CQAS:
        tr = doe.dropna(subset=[c])
        if physical:
            A = profile_features(tr, solubility=SOLUBILITY).to_numpy(float)
            B = profile_features(X_test, solubility=SOLUBILITY).to_numpy(float)
        else:
            A, B = tr[feature_names(4)].to_numpy(float), X_test[feature_names(4)].to_numpy(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GP optimiser convergence chatter
            m = _gp(None if physical else A.shape[1], seed).fit(A, tr[c].to_numpy(float))
            mu, sd = m.predict(B, return_std=True)
        out[c] = (mu, sd)
    return out


def twin_predictions(doe_path: Path, X_test: pd.DataFrame, *, physical: bool, seed: int, quick: bool) -> dict:
    kw = dict(grid="fast", random_state=seed)
    if physical:
        kw.update(features=ProfileFeatures(solubility=SOLUBILITY.to_dict()), augment=False)
    if quick:
        kw.update(n_splits=20, augment=False)
    twin = fit_twin(doe_path, **kw)
    mu, sd = twin.predict(X_test[feature_names(twin.max_cycles)], return_std=True)
    return {c: (mu[:, i], sd[:, i]) for i, c in enumerate(twin.cqas_)}


def feature_gp_predictions(doe: pd.DataFrame, X_test: pd.DataFrame, *, seed: int) -> dict:
    twin = FeatureGPTwin(CQAS, solubility=SOLUBILITY, random_state=seed).fit(doe)
    for c, m in twin.models_.items():
        print(f"  (e) {c}: {m.strategy_} ({len(m.features_)} features), outer-CV MAE "
              f"{ {k: round(v, 2) for k, v in m.strategy_mae_.items()} }", flush=True)
    mu, sd = twin.predict(X_test, return_std=True)
    return {c: (mu[:, i], sd[:, i]) for i, c in enumerate(CQAS)}


def hybrid_predictions(doe: pd.DataFrame, X_test: pd.DataFrame, *, seed: int) -> dict:
    twin = HybridTwin(CQAS, solubility=SOLUBILITY, random_state=seed).fit(doe)
    km = twin.kinetic_
    print(f"  (f) kinetic constants {list(km.thetas_.round(2).tolist())}, ensemble log-D50 RMSE on the DoE "
          f"{km.rmse_log_:.3f}", flush=True)
    mu, sd = twin.predict(X_test, return_std=True)
    return {c: (mu[:, i], sd[:, i]) for i, c in enumerate(CQAS)}


def score(pred: dict, test: pd.DataFrame) -> dict:
    out = {}
    for c, (mu, sd) in pred.items():
        ok = test[c].notna().to_numpy()
        y = test[c].to_numpy(float)[ok]
        m, s = mu[ok], sd[ok]
        out[c] = {"MAE": float(mean_absolute_error(y, m)), "R2": float(r2_score(y, m)),
                  "coverage95": float(np.mean(np.abs(y - m) <= 1.96 * s)), "n": int(ok.sum())}
    return out


def make_dev_set(*, n_per_cycle: int = 20, seed: int = 7, n_jobs: int = 2) -> pd.DataFrame:
    """Development set for tuning twins: the same generator and plant as ``fresh_recipes.csv``
    (:func:`plant_truth.fresh_recipes`), another seed (7 instead of 2026), 100 recipes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plant_truth", ROOT / "benchmarks" / "plant_truth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t0 = time.perf_counter()
    dev = mod.fresh_recipes(n_per_cycle, seed, n_jobs, "doe")
    dev["run_id"] = [f"DV{i + 1:03d}" for i in range(len(dev))]
    dev.to_csv(DEV, index=False)
    print(f"dev set: {len(dev)} recipes ({int(dev['D50_um'].isna().sum())} without product) in "
          f"{time.perf_counter() - t0:.0f} s -> {DEV}", flush=True)
    return dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20-member ensembles, no augmentation (a smoke run)")
    ap.add_argument("--only", default="a,b,c,d,e,f")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doe", type=Path, default=ROOT / "examples" / "doe" / "doe.csv")
    ap.add_argument("--fresh", type=Path, default=TRUTH / "fresh_recipes.csv")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    ap.add_argument("--make-dev", action="store_true",
                    help="(re)generate the development set dev_recipes.csv (20 per 0-4 cycles, seed 7) and exit")
    a = ap.parse_args()
    if a.make_dev:
        make_dev_set()
        return
    doe, fresh = pd.read_csv(a.doe), pd.read_csv(a.fresh)
    print(f"twins on fresh recipes — {platform.machine()}, Python {platform.python_version()}; "
          f"train {a.doe.name} ({len(doe)} runs), test {a.fresh.name} ({len(fresh)} recipes)", flush=True)
    runs = {"a": ("(a) seed-003 pipeline (twin fit --grid fast)", lambda: twin_predictions(a.doe, fresh, physical=False, seed=a.seed, quick=a.quick)),
            "b": ("(b) GP, recipe vector", lambda: gp_predictions(doe, fresh, physical=False, seed=a.seed)),
            "c": ("(c) twin on physical features", lambda: twin_predictions(a.doe, fresh, physical=True, seed=a.seed, quick=a.quick)),
            "d": ("(d) GP on physical features", lambda: gp_predictions(doe, fresh, physical=True, seed=a.seed)),
            "e": ("(e) FeatureGPTwin (features by CV on DoE)", lambda: feature_gp_predictions(doe, fresh, seed=a.seed)),
            "f": ("(f) HybridTwin (kinetic model + GP)", lambda: hybrid_predictions(doe, fresh, seed=a.seed))}
    table = {}
    for key in a.only.split(","):
        label, fn = runs[key]
        t0, c0 = time.perf_counter(), time.process_time()
        res = score(fn(), fresh)
        table[label] = {"fit_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1), **res}
        print(f"{label}: {table[label]['fit_s']} s wall, {table[label]['cpu_s']} CPU-s (main process)", flush=True)
    nf = TRUTH / "noise_floor.csv"
    floor = pd.read_csv(nf) if nf.exists() else None
    print(f"\n{'twin':46s} " + " | ".join(f"{c:>28s}" for c in CQAS))
    print(f"{'':46s} " + " | ".join(f"{'MAE':>8s} {'R2':>6s} {'cov95':>6s} {'n':>4s}" for _ in CQAS))
    for label, row in table.items():
        print(f"{label:46s} " + " | ".join(f"{row[c]['MAE']:8.2f} {row[c]['R2']:6.2f} {row[c]['coverage95']:6.2f} "
                                           f"{row[c]['n']:4d}" for c in CQAS if c in row))
    if floor is not None:
        print(f"{'plant repeatability (median replicate std)':46s} " + " | ".join(
            f"{float(floor[f'{c}_std'].median()):8.2f} {'':6s} {'':6s} {'':4s}" for c in CQAS))
    print("goal: D50 MAE <= 8 um, DoA MAE <= 4 points, crystallinity MAE <= 10 points, coverage 0.90-0.98")
    if a.json:
        a.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
