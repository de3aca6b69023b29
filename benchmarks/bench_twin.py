"""Digital-twin benchmark: fit time per stage, accuracy on hold-out and fresh simulator runs, throughput.

Usage::

    python benchmarks/bench_twin.py [--grid paper] [--splits 100] [--epochs 100] [--jobs 2] [--fresh 12]
                                    [--no-augment] [--out bench_twin_out] [--reps 5] [--throughput-only]

Prints tables and writes ``results.json`` (plus the twin and its report) under ``--out``.

* **Fit**: ``fit_twin`` on ``examples/doe/doe.csv`` with the given grids, Monte Carlo splits and
  the augmentation search; seconds per stage (selection, augmentation, uncertainty) per CQA.
* **Accuracy**: the 4 hold-out runs (``holdout.csv``, measured with analytical noise) — MAE, R²,
  68/95 % interval coverage; the effect of augmentation (hold-out MSE with vs without, the same
  selected model); fresh virtual-crystallizer runs never used in training, against the simulator's
  noise-free CQAs.
* **Throughput**: ``DigitalTwin.predict`` (mean + std of every CQA) on 10,000 profiles through the
  compiled path, against the previous member-by-member batched path (both on 1 and 2 threads) and
  the baseline of calling ``predict`` of every ensemble member through the public sklearn API, in
  the same run, wall and CPU time (``--throughput-only``: on the reference ensembles of
  docs/benchmarks.md, no model search).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "doe"))


def _metrics(y, mu, sd):
    from crystalloop.digital_twin import calibration_report

    err = mu - y
    ss = ((y - y.mean()) ** 2).sum()
    cal = calibration_report(y, mu, sd)
    return {"n": int(len(y)), "mae": float(np.abs(err).mean()), "mse": float((err**2).mean()),
            "r2": float(1 - (err**2).sum() / ss) if ss > 0 and len(y) > 1 else float("nan"),
            "cov68": float(cal.loc[0, "coverage"]), "cov95": float(cal.loc[1, "coverage"]),
            "mean_std": float(sd.mean())}


def throughput(twin, doe, *, n: int = 10_000, reps: int = 5) -> pd.DataFrame:
    """Mean + std of every CQA for ``n`` profiles: the compiled path (one numba kernel over all trees of
    all members, :mod:`crystalloop.digital_twin.compiled`), the previous batched path (member by member,
    ``fast_predict``), each on 1 and 2 threads (the ensembles' ``n_jobs``), and the per-member
    ``predict`` loop through the public scikit-learn/XGBoost API; medians of ``reps`` interleaved calls,
    wall and CPU (process) time."""
    import os

    from crystalloop.digital_twin.compiled import compiled_prediction

    rng = np.random.default_rng(0)
    big = np.repeat(doe.features.to_numpy(), int(np.ceil(n / doe.n_runs)), axis=0)[:n].copy()
    big[:, 0] += rng.uniform(-0.5, 0.5, len(big))  # distinct rows

    def loop():
        out = [], []
        for c in twin.cqas:
            P = np.vstack([np.asarray(e.predict(big), dtype=float) for e in twin.models_[c].estimators_])
            out[0].append(P.mean(axis=0))
            out[1].append(P.std(axis=0, ddof=1))
        return np.column_stack(out[0]), np.column_stack(out[1])

    def on(threads, compiled):
        def f():
            for c in twin.cqas:
                twin.models_[c].n_jobs = threads
            with compiled_prediction(compiled):
                return twin.predict(big, return_std=True)
        return f

    def rel(got, ref):
        return max(float(np.max(np.abs(g - r) / np.maximum(np.abs(r), 1e-9))) for g, r in zip(got, ref, strict=True))

    ref = on(1, False)()
    got = on(1, True)()  # warm-up (numba compiles or loads its cache, the trees are flattened)
    same = rel(got, ref)
    same2 = rel(on(2, True)(), got)
    same_loop = rel(got[:1], loop()[:1])  # means: the twin's std may add the residual variance ("predictive")
    labels = {"loop": ("baseline: member.predict loop (sklearn/XGBoost API)", loop, 1),
              "batched1": ("previous batched path (member by member, fast_predict)", on(1, False), 1),
              "batched2": ("previous batched path (member by member, fast_predict)", on(2, False), 2),
              "compiled1": ("DigitalTwin.predict, compiled (all trees of all members, one numba kernel)", on(1, True), 1),
              "compiled2": ("DigitalTwin.predict, compiled (all trees of all members, one numba kernel)", on(2, True), 2)}
    times: dict = {k: [] for k in labels}
    cpu: dict = {k: [] for k in labels}
    load = [os.getloadavg()[0]]
    for _ in range(reps):
        for k, (_, f, _) in labels.items():
            t1, c1 = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t1)
            cpu[k].append(time.process_time() - c1)
        load.append(os.getloadavg()[0])
    for c in twin.cqas:
        twin.models_[c].n_jobs = 1
    med = {k: float(np.median(v)) for k, v in times.items()}
    mcpu = {k: float(np.median(v)) for k, v in cpu.items()}
    thr = pd.DataFrame([{"method": name, "threads": th, "wall_s": med[k], "profiles_per_s": n / med[k],
                         "cpu_s": mcpu[k], "profiles_per_cpu_s": n / mcpu[k],
                         "ratio_vs_loop_wall": med["loop"] / med[k], "ratio_vs_loop_cpu": mcpu["loop"] / mcpu[k]}
                        for k, (name, _, th) in labels.items()])
    members = {c: f"{len(twin.models_[c].estimators_)} x {twin.info_[c]['family']}" for c in twin.cqas}
    print(f"\nPrediction throughput, {n:,} profiles, mean + std of {len(twin.cqas)} CQAs ({members}); "
          f"median of {reps}; target >= 20,000 profiles/s; load average {min(load):.1f}-{max(load):.1f} "
          f"on {os.cpu_count()} cores; max relative difference compiled vs batched {same:.1e}, "
          f"means vs member.predict loop {same_loop:.1e}, 2 vs 1 thread {same2:.1e}:")
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        print(thr.round(3).to_string(index=False))
    return thr


def reference_twin(doe, splits: int = 100):
    """The ensembles of the recorded throughput figures, fitted directly (no search): D50 XGBoost x 50
    trees, DoA random forest x 30 trees, crystallinity gradient boosting x 50 stages, ``splits`` members."""
    from crystalloop.digital_twin import DigitalTwin, MonteCarloCVRegressor, make_estimator
    from crystalloop.profiles import feature_names

    spec = {"D50_um": ("xgb", {"n_estimators": 50, "max_depth": 3}), "DoA_pct": ("rf", {"n_estimators": 30}),
            "crystallinity_pct": ("gbt", {"n_estimators": 50, "max_depth": 3})}
    twin = DigitalTwin()
    twin.models_, twin.info_ = {}, {}
    for k, (c, (fam, params)) in enumerate(spec.items()):
        X, y, _ = doe.xy(c)
        twin.models_[c] = MonteCarloCVRegressor(make_estimator(fam, random_state=k, **params), n_splits=splits,
                                                n_jobs=1, random_state=k).fit(X, y)
        twin.info_[c] = {"family": fam, "n_segments_seen": []}
    twin.cqas_, twin.max_cycles_ = list(spec), doe.max_cycles
    twin.feature_names_in_ = np.asarray(feature_names(doe.max_cycles), dtype=object)
    twin.n_features_in_ = len(twin.feature_names_in_)
    return twin


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="paper")
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fresh", type=int, default=12)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench_twin_out"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the prediction throughput, on the reference ensembles (reference_twin)")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from crystalloop.digital_twin import (
        MonteCarloCVRegressor,
        fit_twin,
        make_estimator,
        read_doe,
        write_report,
    )
    from crystalloop.digital_twin.uncertainty import fast_predict  # noqa: F401

    doe = read_doe(ROOT / "examples/doe/doe.csv")
    if a.throughput_only:
        import os

        print(f"load average {os.getloadavg()[0]:.1f}; fitting the reference ensembles ...", flush=True)
        throughput(reference_twin(doe, a.splits), doe, reps=a.reps)
        return
    hold = read_doe(ROOT / "examples/doe/holdout.csv")
    hold_truth = pd.read_csv(ROOT / "examples/doe/holdout_truth.csv").set_index("run_id")
    res: dict = {"settings": vars(a) | {"out": str(a.out)}}

    # ---------------------------------------------------------------- fit
    t0 = time.perf_counter()
    twin = fit_twin(doe, grid=a.grid, n_splits=a.splits, augment=not a.no_augment, epochs=a.epochs,
                    n_jobs=a.jobs, random_state=0,
                    progress=lambda s, m: print(f"  [{time.perf_counter() - t0:6.1f} s] {s}: {m}", flush=True))
    fit_s = time.perf_counter() - t0
    twin.save(a.out / "twin")
    stages = pd.DataFrame({c: {k: v for k, v in twin.fit_times_["cqa"][c].items() if isinstance(v, float)}
                           for c in twin.cqas}).T
    stages["total_s"] = stages.sum(axis=1)
    print("\nFit time per stage (s):")
    print(stages.round(1).to_string())
    wall = twin.fit_times_["stage_s"]
    print("stage wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in wall.items())
          + "  (augmentation_s per CQA = worker seconds; the CQAs' tasks share one joblib pool)")
    print(f"whole fit: {fit_s:.1f} s (target < 180 s)")
    res["fit"] = {"total_s": fit_s, "stage_wall_s": wall, "per_cqa": stages.round(2).to_dict("index")}
    print("\nSelected models:")
    print(twin.summary().to_string(index=False))
    res["summary"] = json.loads(twin.summary().to_json(orient="records"))

    # ---------------------------------------------------------------- accuracy: hold-out runs
    rows = []
    Xh = hold.features
    P = twin.predict_frame(Xh, warn=False)
    for c in twin.cqas:
        m = hold.cqas[c].notna().to_numpy()
        y = hold.cqas[c].to_numpy()[m]
        mu, sd = P[f"{c}_mean"].to_numpy()[m], P[f"{c}_std"].to_numpy()[m]
        r = {"cqa": c, "set": "hold-out (measured)", **_metrics(y, mu, sd)}
        rows.append(r)
        yt = hold_truth.loc[Xh.index[m], c].to_numpy()
        rows.append({"cqa": c, "set": "hold-out (sim truth)", **_metrics(yt, mu, sd)})
        # augmentation effect: same model without synthetic rows
        i = twin.info_[c]
        if i["augmentation"].get("used"):
            Xc, yc, ids = doe.xy(c)
            tr = np.isin(ids.astype(str), i["train_ids"])
            base = MonteCarloCVRegressor(make_estimator(i["family"], random_state=0, **i["params"]), n_splits=a.splits,
                                         n_jobs=a.jobs, random_state=0).fit(Xc[tr], yc[tr])
            mu0, sd0 = base.predict(Xh.to_numpy()[m], return_std=True)
            r0 = _metrics(y, mu0, sd0)
            rows.append({"cqa": c, "set": "hold-out, no augmentation", **r0})
            res.setdefault("augmentation_effect", {})[c] = {
                "mse_with": r["mse"], "mse_without": r0["mse"], "mae_with": r["mae"], "mae_without": r0["mae"],
                "mse_change_pct": 100 * (r["mse"] / r0["mse"] - 1) if r0["mse"] > 0 else None,
                "setting": {k: i["augmentation"].get(k) for k in ("generator", "m", "alpha", "improvement")}}
    # cross-validated (out-of-fold) scores on the DoE rows
    for c in twin.cqas:
        i = twin.info_[c]
        cal = {d["level"]: d["coverage"] for d in i["calibration_cv"]}
        rows.append({"cqa": c, "set": "DoE rows, out-of-fold", "n": i["n_train"], "mae": i["cv_mae"],
                     "mse": float("nan"), "r2": i["cv_r2"], "cov68": cal.get(0.68),
                     "cov95": cal.get(0.95), "mean_std": float("nan")})

    # ---------------------------------------------------------------- accuracy: fresh simulator runs
    if a.fresh > 0:
        from make_doe import random_profile

        from crystalloop.hardware.sim import simulate
        from crystalloop.profiles import profiles_to_frame

        rng = np.random.default_rng(777)
        profs, truth = [], []
        t1 = time.perf_counter()
        while len(profs) < a.fresh:
            n = int(rng.choice([1, 3, 5, 7, 9]))
            p = random_profile(rng, n, name=f"FRESH{len(profs) + 1}")
            r = simulate(p, kinetics="default", seed=int(rng.integers(1 << 30)), noise=False)
            if np.isfinite([r.cqas[c] for c in twin.cqas]).all():
                profs.append(p)
                truth.append(r.cqas)
        sim_s = time.perf_counter() - t1
        F = profiles_to_frame(profs, twin.max_cycles)
        T = pd.DataFrame(truth)
        Pf = twin.predict_frame(F, warn=False)
        for c in twin.cqas:
            rows.append({"cqa": c, "set": f"fresh sim runs ({a.fresh})",
                         **_metrics(T[c].to_numpy(), Pf[f"{c}_mean"].to_numpy(), Pf[f"{c}_std"].to_numpy())})
        res["fresh_sim_s"] = sim_s
    acc = pd.DataFrame(rows)
    print("\nAccuracy:")
    print(acc.round(3).to_string(index=False))
    res["accuracy"] = json.loads(acc.to_json(orient="records"))

    # ---------------------------------------------------------------- throughput
    thr = throughput(twin, doe, reps=a.reps)
    res["throughput"] = json.loads(thr.to_json(orient="records"))
    res["members"] = {c: {"n": len(twin.models_[c].estimators_), "family": twin.info_[c]["family"]} for c in twin.cqas}

    write_report(twin, a.out / "report", holdout=hold.to_frame(), importance_repeats=3)
    (a.out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nresults in {a.out}/results.json, twin in {a.out}/twin, report in {a.out}/report")


if __name__ == "__main__":
    main()
