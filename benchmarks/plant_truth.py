"""Ground truth of the virtual plant for the default design study (issue 16).

The virtual crystallizer knows the truth, so every claim of the data-driven loop can be checked
against it. This script computes, on the ``default`` compound:

1. **Fresh recipes** (``fresh_recipes.csv``): 200 random feasible recipes, 40 for each of 0–4
   cycles, drawn by the example DoE's own generator (``examples/doe/make_doe.py``: the design
   space the DoE samples), each run as one plant batch with the simulator's batch-to-batch kinetic
   variability on (its own plant seed, recorded) and sensor noise off, with the batch's true CQAs:
   for judging twins on recipes they were not fitted on. ``fresh_recipes_uniform.csv``: 200 more,
   uniform over the optimizer's whole design space (start 0–70 °C, holds anywhere), an
   extrapolation set. A recipe that ends with nothing crystallized has no D50/crystallinity (NaN).
2. **Noise floor** (``noise_floor.csv``): replicates of a subset of the fresh recipes on
   several plant seeds; the per-recipe standard deviation of each CQA is the plant's own
   repeatability (what no model can beat), beside the DoE's measurement noise.
3. **True Pareto fronts** (``front_*.csv``; ``front_best.csv`` is the non-dominated set of every
   plant batch the three searches evaluated, the best-known true front): NSGA-II (pymoo, through
   :func:`crystalloop.digital_twin.design.optimize_design`) run directly on the plant, max D50 and
   min DoA, per number of cycles 0–4, mixed 0–4, and mixed 0–4 with crystallinity ≥ 90 %. The
   plant here is the *nominal* one: kinetic variability off, noise off, fixed seed 0 (the
   deterministic centre of the plant's batch-to-batch spread). Every evaluated recipe is kept in
   ``evaluations.csv``.

``summary.json`` records the settings, the number of plant batches, the wall time, the hypervolume
of each front against a fixed reference point, and the DoE's share of it.

Run:  python benchmarks/plant_truth.py [--quick] [--jobs 2 | --scheduler local:4|ADDRESS] [--only fresh,noise,fronts]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from crystalloop.digital_twin.design import (
    DesignSpace,
    hypervolume,
    nondominated,
    optimize_design,
    parse_objectives,
)
from crystalloop.hardware.sim import simulate
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame
from crystalloop.scale import joblib_backend

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "plant_truth"
CQAS = ["D50_um", "DoA_pct", "crystallinity_pct"]
MAX_CYCLES = 4
#: hypervolume reference (natural units): a D50 of 50 µm and a DoA of 100 %, fixed for every benchmark
REFERENCE = {"D50_um": 50.0, "DoA_pct": 100.0}
OBJECTIVES = "max:D50,min:DoA"


def run_batch(x: np.ndarray, seed: int, variability: bool) -> list[float]:
    """One plant batch for the feature vector ``x``: its CQAs (NaN if the batch failed)."""
    p = ThermocycleProfile.from_features(x, MAX_CYCLES)
    try:
        r = simulate(p, kinetics="default", seed=int(seed), noise=False, variability=variability,
                     sample_interval_s=600.0)
    except (ArithmeticError, ValueError) as e:  # a batch the plant cannot run is a missing result
        print(f"  plant batch failed ({type(e).__name__}: {e})", flush=True)
        return [np.nan] * len(CQAS)
    return [float(r.cqas[c]) for c in CQAS]


class PlantOracle:
    """The virtual plant behind the design's twin protocol: ``predict_frame`` runs every row as a batch.

    Parameters
    ----------
    seed : int
        Plant seed of every batch.
    variability : bool
        Batch-to-batch kinetic variability (off: the nominal plant).
    n_jobs : int
        Batches in parallel (joblib processes).
    """

    cqas = CQAS
    max_cycles = MAX_CYCLES
    feature_names = feature_names(MAX_CYCLES)

    def __init__(self, *, seed: int = 0, variability: bool = False, n_jobs: int = 1) -> None:
        self.seed = seed
        self.variability = variability
        self.n_jobs = n_jobs
        self.log: list[np.ndarray] = []
        self.results: list[list[float]] = []

    def predict_frame(self, X: np.ndarray, *, cqas=None, warn: bool = True) -> pd.DataFrame:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        rows = Parallel(n_jobs=self.n_jobs)(delayed(run_batch)(x, self.seed, self.variability) for x in X)
        self.log.extend(X)
        self.results.extend(rows)
        v = np.asarray(rows, dtype=float).reshape(len(X), len(CQAS))
        out = {}
        for j, c in enumerate(CQAS):
            out[f"{c}_mean"] = v[:, j]
            out[f"{c}_std"] = np.zeros(len(X))
        return pd.DataFrame(out)


def _frame(X: np.ndarray, V: np.ndarray, **extra) -> pd.DataFrame:
    f = pd.DataFrame(X, columns=feature_names(MAX_CYCLES))
    for k, v in extra.items():
        f.insert(0, k, v)
    for j, c in enumerate(CQAS):
        f[c] = V[:, j]
    return f


def _doe_generator():
    """The example DoE's own recipe generator (``examples/doe/make_doe.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_doe", ROOT / "examples" / "doe" / "make_doe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.random_profile


def fresh_recipes(n_per_cycle: int, seed: int, n_jobs: int, kind: str = "doe") -> pd.DataFrame:
    """``n_per_cycle`` random feasible recipes for each of 0–4 cycles.

    ``kind="doe"``: drawn by the example DoE's generator (the kind of recipes the DoE and a lab
    run: start 55–70 °C, cooling 0.05–0.3 °C/min, re-heating by 5–25 °C, holds after heating),
    half of the cycled ones ending with a final cooling and half on a mild re-heat (as the DoE's
    "cool + heat" runs), so a twin fitted on the DoE is judged inside its own design space.
    ``kind="uniform"``: uniform over the whole design space of the optimizer
    (:meth:`DesignSpace.sample`, half with holds), far wider than any DoE covers: an extrapolation set.
    """
    rng = np.random.default_rng(seed)
    profiles = []
    if kind == "doe":
        gen = _doe_generator()
        for nc in range(MAX_CYCLES + 1):
            for i in range(n_per_cycle):
                n_seg = 1 if nc == 0 else 2 * nc + (1 if i % 2 == 0 else 0)
                profiles.append(gen(rng, n_seg))
    else:
        for nc in range(MAX_CYCLES + 1):
            for holds in (False, True):
                k = n_per_cycle // 2 if not holds else n_per_cycle - n_per_cycle // 2
                space = DesignSpace(nc, holds=holds)
                profiles += space.to_profiles(space.sample(k, rng))
    X = profiles_to_frame(profiles, MAX_CYCLES)[feature_names(MAX_CYCLES)].to_numpy(float)
    seeds = rng.integers(0, 2**31 - 1, size=len(X))
    V = np.asarray(Parallel(n_jobs=n_jobs)(delayed(run_batch)(x, s, True) for x, s in zip(X, seeds, strict=True)))
    ids = [f"FR{i + 1:03d}" for i in range(len(X))]
    return _frame(X, V, sim_seed=seeds, run_id=ids)


def noise_floor(fresh: pd.DataFrame, n_recipes: int, n_seeds: int, seed: int, n_jobs: int) -> pd.DataFrame:
    """Replicates of ``n_recipes`` fresh recipes (equal share per number of cycles) on ``n_seeds`` plant seeds."""
    rng = np.random.default_rng(seed + 1)
    fresh = fresh.dropna(subset=CQAS)  # replicate recipes that make a product
    pick = []
    for _, grp in fresh.groupby("n_cycles"):
        pick += list(rng.choice(grp.index, size=max(1, n_recipes // (MAX_CYCLES + 1)), replace=False))
    sub = fresh.loc[pick]
    X = sub[feature_names(MAX_CYCLES)].to_numpy(float)
    seeds = rng.integers(0, 2**31 - 1, size=n_seeds)
    jobs = [(i, s) for i in range(len(X)) for s in seeds]
    V = np.asarray(Parallel(n_jobs=n_jobs)(delayed(run_batch)(X[i], s, True) for i, s in jobs))
    rows = []
    for i, rid in enumerate(sub["run_id"]):
        v = V[[k for k, (ii, _) in enumerate(jobs) if ii == i]]
        row = {"run_id": rid, "n_cycles": int(sub["n_cycles"].iloc[i]), "n_seeds": n_seeds}
        for j, c in enumerate(CQAS):
            row[f"{c}_mean"] = float(np.nanmean(v[:, j]))
            row[f"{c}_std"] = float(np.nanstd(v[:, j], ddof=1))
        rows.append(row)
    return pd.DataFrame(rows)


def _values(front: pd.DataFrame) -> pd.DataFrame:
    """A design front's predicted (here: plant) CQAs under their plain names."""
    return front.rename(columns={f"{c}_mean": c for c in CQAS})


def fronts(budget: dict[str, tuple[int, int]], seed: int, n_jobs: int) -> tuple[dict[str, pd.DataFrame], PlantOracle, dict]:
    """NSGA-II on the nominal plant; ``budget`` maps a run to (population, generations)."""
    oracle = PlantOracle(seed=0, variability=False, n_jobs=n_jobs)
    out: dict[str, pd.DataFrame] = {}
    info: dict[str, dict] = {}
    runs = [("cycles", dict(cycles=range(MAX_CYCLES + 1))),
            ("mixed", dict(cycles=range(MAX_CYCLES + 1), mixed=True)),
            ("mixed_cryst90", dict(cycles=range(MAX_CYCLES + 1), mixed=True, constraints="crystallinity>=90"))]
    for label, kw in runs:
        t0, n0 = time.perf_counter(), len(oracle.log)
        pop, n_gen = budget[label]
        res = optimize_design(oracle, OBJECTIVES, pop_size=pop, n_gen=n_gen, seed=seed, **kw)
        wall = time.perf_counter() - t0
        out[label] = _values(res.front)
        info[label] = {"pop_size": pop, "n_gen": n_gen, "plant_batches": len(oracle.log) - n0, "wall_s": round(wall, 1)}
        print(f"front {label}: {len(oracle.log) - n0} plant batches in {wall:.0f} s", flush=True)
    return out, oracle, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budgets (a smoke run, not the recorded truth)")
    ap.add_argument("--jobs", type=int, default=2, help="plant batches in parallel (joblib processes)")
    ap.add_argument("--scheduler", default=None,
                    help="run the plant batches on Dask ('local:N' or a scheduler address; crystalloop.scale)")
    ap.add_argument("--only", default="fresh,noise,fronts")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    if a.scheduler is not None:  # every joblib.Parallel below goes to the cluster's workers
        with joblib_backend(a.scheduler):
            _main(a, n_jobs=-1)
    else:
        _main(a, n_jobs=a.jobs)


def _main(a: argparse.Namespace, *, n_jobs: int) -> None:
    a.jobs = n_jobs
    parts = set(a.only.split(","))
    n_per_cycle, n_noise, n_seeds = (4, 5, 3) if a.quick else (40, 20, 5)
    budget = ({"cycles": (8, 2), "mixed": (12, 2), "mixed_cryst90": (12, 2)} if a.quick else
              {"cycles": (24, 12), "mixed": (40, 20), "mixed_cryst90": (40, 20)})
    a.out.mkdir(parents=True, exist_ok=True)
    summary_path = a.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update(machine=f"{platform.machine()} {platform.processor()}".strip(), python=platform.python_version(),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), seed=a.seed, quick=a.quick,
                   reference=REFERENCE, objectives=OBJECTIVES)
    if "fresh" in parts:
        for kind, name in (("doe", "fresh_recipes.csv"), ("uniform", "fresh_recipes_uniform.csv")):
            t0 = time.perf_counter()
            fr = fresh_recipes(n_per_cycle, a.seed, a.jobs, kind)
            fr.to_csv(a.out / name, index=False)
            summary[f"fresh_{kind}"] = {"file": name, "n": len(fr),
                                        "no_product": int(fr[CQAS].isna().any(axis=1).sum()),
                                        "wall_s": round(time.perf_counter() - t0, 1)}
            print(f"fresh recipes ({kind}): {len(fr)} batches in {summary[f'fresh_{kind}']['wall_s']} s", flush=True)
        summary["fresh"] = None  # the single set of an earlier version of this script
    if "noise" in parts:
        fr = pd.read_csv(a.out / "fresh_recipes.csv")
        t0 = time.perf_counter()
        nf = noise_floor(fr, n_noise, n_seeds, a.seed, a.jobs)
        nf.to_csv(a.out / "noise_floor.csv", index=False)
        summary["noise_floor"] = {
            "recipes": len(nf), "plant_seeds": n_seeds, "wall_s": round(time.perf_counter() - t0, 1),
            **{f"{c}_std_median": round(float(nf[f"{c}_std"].median()), 3) for c in CQAS},
            **{f"{c}_std_p90": round(float(nf[f"{c}_std"].quantile(0.9)), 3) for c in CQAS},
            "doe_measurement_noise": "D50 3 % relative, DoA 3 points, crystallinity 3 points (1 sigma)"}
        print("noise floor (median std): " + ", ".join(f"{c} {summary['noise_floor'][f'{c}_std_median']}" for c in CQAS))
    if "fronts" in parts:
        t0 = time.perf_counter()
        fr_map, oracle, info = fronts(budget, a.seed, a.jobs)
        for name, f in fr_map.items():
            f.to_csv(a.out / f"front_{name}.csv", index=False)
        ev = _frame(np.asarray(oracle.log), np.asarray(oracle.results, dtype=float))
        ev.to_csv(a.out / "evaluations.csv", index=False)
        objs = parse_objectives(OBJECTIVES, CQAS)
        ref = np.array([REFERENCE[o.name] for o in objs])
        doe = pd.read_csv(ROOT / "examples" / "doe" / "doe_truth.csv")
        hv_doe = hypervolume(doe, objs, ref)
        hv = {}
        for name in ("cycles", "mixed", "mixed_cryst90"):
            if name in fr_map:
                hv[name] = hypervolume(fr_map[name], objs, ref)
        hv_all = hypervolume(ev, objs, ref)  # every batch evaluated: the best the search has seen
        F = ev[[o.name for o in objs]].to_numpy(float) * np.array([o.sign for o in objs])
        ok = np.all(np.isfinite(F), axis=1)
        best = ev[ok][nondominated(F[ok])].drop_duplicates().sort_values(objs[0].name)
        best.to_csv(a.out / "front_best.csv", index=False)  # the best-known true front (all batches)
        summary["fronts"] = {"plant": "nominal (variability off, noise off, seed 0)",
                             "runs": info, "plant_batches": len(oracle.log),
                             "wall_s": round(time.perf_counter() - t0, 1),
                             "hypervolume": {k: round(v, 2) for k, v in hv.items()},
                             "hypervolume_all_evaluations": round(hv_all, 2),
                             "doe_truth_hypervolume": round(hv_doe, 2),
                             "doe_share_of_true_front": round(hv_doe / max(hv_all, 1e-12), 4)}
        print(f"true front hypervolume {hv_all:.1f} (reference {REFERENCE}); the DoE's truth covers "
              f"{100 * hv_doe / max(hv_all, 1e-12):.1f} %", flush=True)
    on_disk = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    on_disk.update(summary)
    on_disk = {k: v for k, v in on_disk.items() if v is not None}
    summary_path.write_text(json.dumps(on_disk, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
