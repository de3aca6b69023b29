"""Designs the plant agrees with (issue 16): every recipe on a twin-designed front, run on the plant.

1. Fit a twin on the shipped DoE (``examples/doe/doe.csv``, 31 noisy runs): by default the
   :class:`crystalloop.digital_twin.gp.FeatureGPTwin` (GP on physical profile features, features
   chosen by cross-validation on the DoE), ``hybrid``: :class:`crystalloop.digital_twin.hybrid.HybridTwin`
   (kinetic model fitted to D50 + GP per CQA, ``fit_hybrid_twin`` defaults), and as the baseline ``seed003``: ``fit_twin(grid="fast")``
   without augmentation and with 20 MC-CV members (the README tour's twin, quicker to fit).
2. Run the default design study on it: :func:`crystalloop.digital_twin.design.optimize_design`,
   max D50 / min DoA, 1–4 cycles with the number of cycles a decision variable (``mixed``), the
   validity domain built from the DoE (``domain="auto"``) and the compound's solubility curve for
   the dissolution check; NSGA-II budget ``--pop`` × ``--gen`` (default 40 × 40 = 1,600 twin
   evaluations).
3. Run EVERY recipe on the designed (global) front on the plant: ``simulate(profile,
   kinetics="default", seed=0, noise=False, variability=False)``, the same nominal plant the true
   fronts of ``benchmarks/plant_truth.py`` were computed on.
4. Report per recipe predicted ± std vs plant CQAs and whether the plant value lies in the 95 %
   interval; the designed front's TRUE hypervolume (plant values, ``plant_truth.REFERENCE``) as a
   fraction of the true front's (all plant evaluations in ``evaluations.csv``, and
   ``front_mixed.csv``), beside the DoE's own truth (``examples/doe/doe_truth.csv``) as the baseline
   measured in the same run. A parity plot is saved.

Run:  python benchmarks/bench_design_plant.py [--twin hybrid,gp,seed003] [--pop 40] [--gen 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plant_truth import CQAS, MAX_CYCLES, REFERENCE, run_batch  # noqa: E402

from crystalloop.digital_twin.design import hypervolume, optimize_design, parse_objectives  # noqa: E402
from crystalloop.digital_twin.features import SolubilityCurve  # noqa: E402
from crystalloop.digital_twin.gp import FeatureGPTwin  # noqa: E402
from crystalloop.profiles import feature_names  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "benchmarks" / "results" / "plant_truth"
OBJECTIVES = "max:D50,min:DoA"
#: the default compound's solubility (crystalloop/data/kinetics/default.yaml), mg/g solvent, T in °C
SOLUBILITY = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))


def fit(kind: str, doe_path: Path, seed: int):
    if kind == "hybrid":
        from crystalloop.digital_twin import fit_hybrid_twin

        return fit_hybrid_twin(doe_path, solubility=SOLUBILITY, random_state=seed)
    if kind == "gp":
        return FeatureGPTwin(solubility=SOLUBILITY, random_state=seed).fit(pd.read_csv(doe_path))
    from crystalloop.digital_twin import fit_twin

    return fit_twin(doe_path, grid="fast", random_state=seed, augment=False, n_splits=20)


def parity_plot(tab: pd.DataFrame, path: Path, title: str) -> None:
    from crystalloop._plotting import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(CQAS), figsize=(4.2 * len(CQAS), 4))
    for ax, c in zip(axes, CQAS, strict=True):
        ok = tab[f"{c}_plant"].notna()
        x, y, e = tab.loc[ok, f"{c}_plant"], tab.loc[ok, f"{c}_pred"], 1.96 * tab.loc[ok, f"{c}_std"]
        ax.errorbar(x, y, yerr=e, fmt="o", ms=4, alpha=0.8, capsize=2)
        lo, hi = float(min(x.min(), (y - e).min())), float(max(x.max(), (y + e).max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"{c} plant")
        ax.set_ylabel(f"{c} twin (± 95 %)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def study(a, kind: str) -> dict:
    """Fit, design, run the designed front on the plant; print and save the per-recipe table."""
    t0 = time.process_time()
    twin = fit(kind, a.doe, a.seed)
    t_fit = time.process_time() - t0
    t0 = time.process_time()
    res = optimize_design(twin, OBJECTIVES, cycles=range(1, MAX_CYCLES + 1), mixed=True, solubility=SOLUBILITY,
                          pop_size=a.pop, n_gen=a.gen, seed=a.seed)
    t_design = time.process_time() - t0
    print(f"twin fitted in {t_fit:.0f} CPU-s, design in {t_design:.0f} CPU-s; {len(res.front)} front rows", flush=True)
    front = res.front[res.front["pareto_global"]] if "pareto_global" in res.front else res.front
    X = front[feature_names(MAX_CYCLES)].to_numpy(float)
    t0 = time.perf_counter()
    V = np.asarray(Parallel(n_jobs=a.jobs)(delayed(run_batch)(x, 0, False) for x in X), dtype=float)
    t_plant = time.perf_counter() - t0
    tab = front[["n_cycles", "batch_time_min"]].reset_index(drop=True).copy()
    inside = {}
    for j, c in enumerate(CQAS):
        tab[f"{c}_pred"] = front[f"{c}_mean" if f"{c}_mean" in front else c].to_numpy(float)
        tab[f"{c}_std"] = front[f"{c}_std"].to_numpy(float)
        tab[f"{c}_plant"] = V[:, j]
        ok = np.isfinite(V[:, j])
        tab[f"{c}_in95"] = np.abs(tab[f"{c}_plant"] - tab[f"{c}_pred"]) <= 1.96 * tab[f"{c}_std"]
        inside[c] = (float(tab.loc[ok, f"{c}_in95"].mean()), float(np.mean(np.abs(V[ok, j] - tab.loc[ok, f"{c}_pred"]))), int(ok.sum()))
    tab.to_csv(a.out / f"designed_front_{kind}.csv", index=False)

    objs = parse_objectives(OBJECTIVES, CQAS)
    ref = np.array([REFERENCE[o.name] for o in objs])
    plant_vals = pd.DataFrame({c: V[:, j] for j, c in enumerate(CQAS)}).dropna(subset=["D50_um", "DoA_pct"])
    pred_vals = pd.DataFrame({c: tab[f"{c}_pred"] for c in CQAS})
    hv_design = hypervolume(plant_vals, objs, ref)
    hv_pred = hypervolume(pred_vals, objs, ref)
    hv_doe = hypervolume(pd.read_csv(ROOT / "examples" / "doe" / "doe_truth.csv"), objs, ref)
    hv_true = {}
    if (TRUTH / "evaluations.csv").exists():
        hv_true["all plant evaluations"] = hypervolume(pd.read_csv(TRUTH / "evaluations.csv"), objs, ref)
    if (TRUTH / "front_mixed.csv").exists():
        hv_true["front_mixed.csv"] = hypervolume(pd.read_csv(TRUTH / "front_mixed.csv"), objs, ref)

    pd.set_option("display.width", 200)
    show = tab[["n_cycles", "batch_time_min"] + [f"{c}_{k}" for c in CQAS for k in ("pred", "std", "plant")]].round(1)
    print(show.to_string())
    print(f"\ntwin {kind}: fit {t_fit:.0f} CPU-s; design pop {a.pop} x gen {a.gen} ({a.pop * a.gen} twin evaluations) "
          f"{t_design:.0f} CPU-s; {len(X)} front recipes on the plant in {t_plant:.0f} s wall")
    print(f"{'CQA':20s} {'MAE':>8s} {'in 95 %':>8s} {'n':>4s}")
    for c, (cov, mae, n) in inside.items():
        print(f"{c:20s} {mae:8.2f} {cov:8.2f} {n:4d}")
    print(f"\nhypervolume (reference {REFERENCE}): designed front, twin's prediction {hv_pred:.0f}; on the plant {hv_design:.0f}; "
          f"DoE truth (baseline) {hv_doe:.0f}")
    for k, v in hv_true.items():
        print(f"  share of the true front ({k}, HV {v:.0f}): designed {hv_design / v:.3f}, DoE {hv_doe / v:.3f}")
    best = tab.loc[tab["DoA_pct_plant"] <= 10, "D50_um_plant"].max()
    print(f"best plant D50 at plant DoA <= 10 % on the designed front: {best:.1f} um")
    parity_plot(tab, a.out / f"parity_{kind}.png",
                f"designed front ({kind} twin, {len(X)} recipes) vs plant; true-HV share "
                f"{hv_design / max(hv_true.values(), default=np.nan):.2f}")
    summary = {
        "twin": kind, "pop": a.pop, "gen": a.gen, "seed": a.seed, "n_front": len(X),
        "fit_cpu_s": round(t_fit, 1), "design_cpu_s": round(t_design, 1), "plant_wall_s": round(t_plant, 1),
        "per_cqa": {c: {"MAE": v[1], "in95": v[0], "n": v[2]} for c, v in inside.items()},
        "hv_predicted": hv_pred, "hv_plant": hv_design, "hv_doe_truth": hv_doe, "hv_true": hv_true,
        "best_D50_at_DoA10": None if pd.isna(best) else float(best)}
    (a.out / f"summary_{kind}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twin", default="gp,seed003", help="comma-separated: hybrid (HybridTwin), gp (FeatureGPTwin), seed003 (fit_twin)")
    ap.add_argument("--pop", type=int, default=40)
    ap.add_argument("--gen", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="plant batches in parallel")
    ap.add_argument("--doe", type=Path, default=ROOT / "examples" / "doe" / "doe.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "design_plant")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"designs on the plant — {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    rows = {kind: study(a, kind) for kind in a.twin.split(",")}
    print(f"\n{'twin':10s} {'n':>3s} {'D50 MAE':>8s} {'in95':>5s} {'DoA MAE':>8s} {'in95':>5s} {'HV pred':>8s} {'HV plant':>8s} "
          f"{'share':>6s} {'DoE share':>9s} {'D50@DoA<=10':>11s}")
    for kind, r in rows.items():
        true = max(r["hv_true"].values(), default=float("nan"))
        print(f"{kind:10s} {r['n_front']:3d} {r['per_cqa']['D50_um']['MAE']:8.1f} {r['per_cqa']['D50_um']['in95']:5.2f} "
              f"{r['per_cqa']['DoA_pct']['MAE']:8.1f} {r['per_cqa']['DoA_pct']['in95']:5.2f} {r['hv_predicted']:8.0f} "
              f"{r['hv_plant']:8.0f} {r['hv_plant'] / true:6.3f} {r['hv_doe_truth'] / true:9.3f} {r['best_D50_at_DoA10'] or float('nan'):11.1f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
