"""HybridTwin as a CLI twin (issue 16): fit cost, scores, save/load and prediction throughput.

In one run, on the shipped 31-run DoE (``examples/doe/doe.csv``) and the 200 fresh plant recipes
(``benchmarks/results/plant_truth/fresh_recipes.csv``):

1. **fit** with the defaults of ``crystalloop twin fit --model hybrid --solubility 8.0,0.283,0.00917``
   (``fit_hybrid_twin``, seed 0): wall and CPU seconds with the compiled kinetic loop (numba) and
   with the numpy loop it replaced (the baseline, ``kinetic.have_numba`` patched to ``False``);
   leave-one-out CV scores (what the model card shows) and the scores on the fresh recipes (MAE,
   R², 95 % coverage) of both fits;
2. **save/load**: folder size, load time, largest prediction difference after the round trip;
3. **predict** 10,000 profiles (the fresh recipes tiled), mean + std of the three CQAs, best of 3,
   wall and CPU seconds: the compiled loop against the numpy loop (same twin), the largest
   relative difference between them, one profile's latency, and the GP twin
   (``fit_gp_twin``) as the anchor.

Run:  python benchmarks/bench_hybrid_twin.py [--n 10000]
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

from crystalloop.digital_twin import fit_gp_twin, fit_hybrid_twin, kinetic, load_twin
from crystalloop.profiles import feature_names

ROOT = Path(__file__).resolve().parents[1]
DOE = ROOT / "examples" / "doe" / "doe.csv"
FRESH = ROOT / "benchmarks" / "results" / "plant_truth" / "fresh_recipes.csv"
OUT = ROOT / "benchmarks" / "results" / "hybrid_twin"
CQAS = ["D50_um", "DoA_pct", "crystallinity_pct"]
SOLUBILITY = "8.0,0.283,0.00917"  # the default kinetic set's c*(T), mg/g solvent, T in °C


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _best(fn, k: int = 3):
    runs = [_timed(fn) for _ in range(k)]
    return runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)


def _fresh_scores(twin, fresh: pd.DataFrame) -> dict:
    pred = twin.predict_frame(fresh[feature_names(4)], warn=False)
    out = {}
    for c in CQAS:
        m = fresh[c].notna().to_numpy()
        y, mu, sd = fresh[c].to_numpy()[m], pred[f"{c}_mean"].to_numpy()[m], pred[f"{c}_std"].to_numpy()[m]
        out[c] = {"mae": float(mean_absolute_error(y, mu)), "r2": float(r2_score(y, mu)),
                  "coverage_95": float(np.mean(np.abs(y - mu) <= 1.96 * sd))}
    return out


def _loo(twin) -> dict:
    return {c: {"mae": twin.info_[c]["cv_mae"], "r2": twin.info_[c]["cv_r2"], "coverage_95": twin.info_[c]["coverage_95"]}
            for c in twin.cqas}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="profiles to predict")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    fresh = pd.read_csv(FRESH)
    X = pd.concat([fresh[feature_names(4)]] * (a.n // len(fresh) + 1), ignore_index=True).iloc[: a.n]
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "load_1min_start": os.getloadavg()[0], "n_predict": a.n}

    kinetic_loop = kinetic.have_numba
    fit_kw = dict(cqas=CQAS, solubility=SOLUBILITY, random_state=0)
    twin, w, c = _timed(lambda: fit_hybrid_twin(DOE, **fit_kw))
    res["fit_compiled"] = {"wall_s": w, "cpu_s": c, "loo": _loo(twin), "fresh": _fresh_scores(twin, fresh)}
    kinetic.have_numba = lambda: False  # the numpy loop (the baseline)
    try:
        base, w, c = _timed(lambda: fit_hybrid_twin(DOE, **fit_kw))
        res["fit_numpy"] = {"wall_s": w, "cpu_s": c, "loo": _loo(base), "fresh": _fresh_scores(base, fresh)}
        res["theta_max_rel_diff"] = float(np.max(np.abs(base.kinetic_.thetas_ - twin.kinetic_.thetas_)
                                                 / np.abs(base.kinetic_.thetas_).clip(1e-12)))
        (mu0, sd0), w0, c0 = _best(lambda: twin.predict(X, return_std=True))
    finally:
        kinetic.have_numba = kinetic_loop
    twin.predict(X.iloc[:10], return_std=True)  # compile or load the cached kernel
    (mu1, sd1), w1, c1 = _best(lambda: twin.predict(X, return_std=True))
    _, w_one, c_one = _best(lambda: twin.predict(X.iloc[:1], return_std=True), 5)
    rel = max(float(np.max(np.abs(mu1 - mu0) / np.maximum(np.abs(mu0), 1e-12))),
              float(np.max(np.abs(sd1 - sd0) / np.maximum(np.abs(sd0), 1e-12))))
    gp = fit_gp_twin(DOE, cqas=CQAS, solubility=SOLUBILITY, random_state=0)
    gp.predict(X.iloc[:10], return_std=True)
    _, wg, cg = _best(lambda: gp.predict(X, return_std=True))
    res["predict"] = {
        "hybrid_compiled": {"wall_s": w1, "cpu_s": c1, "profiles_per_s": a.n / w1, "profiles_per_cpu_s": a.n / c1},
        "hybrid_numpy_loop": {"wall_s": w0, "cpu_s": c0, "profiles_per_s": a.n / w0, "profiles_per_cpu_s": a.n / c0},
        "max_rel_diff_compiled_vs_numpy": rel,
        "one_profile_ms": {"wall": 1e3 * w_one, "cpu": 1e3 * c_one},
        "gp_twin_anchor": {"wall_s": wg, "cpu_s": cg, "profiles_per_s": a.n / wg, "profiles_per_cpu_s": a.n / cg},
    }
    with tempfile.TemporaryDirectory() as d:
        twin.save(Path(d) / "tw")
        size = sum(p.stat().st_size for p in (Path(d) / "tw").rglob("*") if p.is_file())
        back, wl, cl = _timed(lambda: load_twin(Path(d) / "tw"))
        mu2, sd2 = back.predict(X, return_std=True)
    res["save_load"] = {"folder_bytes": size, "load_wall_s": wl, "load_cpu_s": cl,
                        "max_abs_diff": float(max(np.max(np.abs(mu2 - mu1)), np.max(np.abs(sd2 - sd1))))}
    res["load_1min_end"] = os.getloadavg()[0]

    print(f"HybridTwin as a CLI twin  ({res['date']}, {res['machine']}, {res['cpus']} CPUs, "
          f"load {res['load_1min_start']:.1f} -> {res['load_1min_end']:.1f})")
    for k in ("fit_compiled", "fit_numpy"):
        f = res[k]
        print(f"{k:14s} fit {f['wall_s']:6.1f} s wall {f['cpu_s']:6.1f} CPU-s | fresh MAE/cov95 "
              + "  ".join(f"{c.split('_')[0]} {f['fresh'][c]['mae']:.2f}/{f['fresh'][c]['coverage_95']:.2f}" for c in CQAS)
              + " | LOO MAE " + "  ".join(f"{f['loo'][c]['mae']:.2f}" for c in CQAS))
    print(f"kinetic constants, compiled vs numpy fit: max rel diff {res['theta_max_rel_diff']:.1e}")
    for k, v in res["predict"].items():
        if isinstance(v, dict) and "profiles_per_s" in v:
            print(f"predict {a.n} {k:18s} {v['wall_s']:.3f} s wall {v['cpu_s']:.3f} CPU-s -> "
                  f"{v['profiles_per_s']:9,.0f} profiles/s  {v['profiles_per_cpu_s']:9,.0f} per CPU-s")
    p = res["predict"]
    print(f"compiled vs numpy loop: max rel diff {p['max_rel_diff_compiled_vs_numpy']:.1e}; one profile "
          f"{p['one_profile_ms']['wall']:.1f} ms")
    s = res["save_load"]
    print(f"save/load: {s['folder_bytes'] / 1024:.0f} KiB, load {s['load_wall_s']:.2f} s, max diff {s['max_abs_diff']:.1e}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_hybrid_twin.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
