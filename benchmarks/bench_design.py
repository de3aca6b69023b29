"""Digital design benchmark: NSGA-II on the example twin, and validation on the virtual crystallizer.

Speed (issue: NSGA-II, population 100, 200 generations, 4 instances, < 60 s on 2 cores)::

    python benchmarks/bench_design.py                 # full study + per-individual baseline
    python benchmarks/bench_design.py --quick         # pop 40, 30 generations

Validation against ground truth (the simulator)::

    python benchmarks/bench_design.py --validate      # + predicted vs simulated, hypervolume vs
                                                      #   NSGA-II run directly on the simulator
    python benchmarks/bench_design.py --domain-check  # designs with / without the validity domain,
                                                      #   run on the plant

Baselines measured in the same run:

* speed — the per-individual evaluation loop (one ThermocycleProfile, one feature vector and one
  twin call per candidate) against the vectorized problem (one twin call per generation), on the
  same candidates;
* validation — NSGA-II directly on the simulator (mixed 1–4 cycles, ask/tell) with as many
  simulator runs as the twin used (35 DoE runs + the validation runs), and random feasible
  profiles with the same budget; hypervolumes measured on the simulator with the fixed
  reference point (D50 = 0 µm, DoA = 100 %).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["max:D50", "min:DoA"]
REFERENCE = np.array([0.0, 100.0])  # (D50_um, DoA_pct): the worst conceivable values
DOE_RUNS = 35  # 31 DoE + 4 hold-out runs of examples/doe
FAILED: list = []  # simulator runs that raised (recipe, seed, error)


class _TimedTwin:
    """Wraps a twin and accumulates the time spent in predict."""

    def __init__(self, twin):
        self._twin = twin
        self.cqas, self.max_cycles, self.feature_names = twin.cqas, twin.max_cycles, twin.feature_names
        self.seconds = 0.0
        self.calls = 0
        self.rows = 0

    def predict_frame(self, X, *, cqas=None, warn=True):
        t = time.perf_counter()
        out = self._twin.predict_frame(X, cqas=cqas, warn=warn)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        self.rows += len(X)
        return out


def _md(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (no tabulate dependency)."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def load_example_twin(path: str | None):
    """The example twin: ``--twin DIR``, else ``examples/twin``, else fitted from ``examples/doe``."""
    from crystalloop.digital_twin.twin import DigitalTwin

    if path:
        return DigitalTwin.load(path)
    example = ROOT / "examples" / "twin"
    if example.is_dir():
        return DigitalTwin.load(example)
    doe = sorted((ROOT / "examples" / "doe").glob("*.csv"))
    if not doe:
        sys.exit("no example twin: pass --twin DIR (fit one with 'crystalloop twin fit examples/doe/...')")
    from crystalloop.digital_twin import fit_twin

    return fit_twin(doe[0])


def _domain_of(twin):
    """The measured recipes of a fitted twin (the design's validity domain), or None."""
    from crystalloop.digital_twin.design import TrainedTwin

    return twin.training_data_ if isinstance(twin, TrainedTwin) else None


def bench_domain(twin, pop: int, gens: int, seed: int, kinetics: str, n_valid: int) -> pd.DataFrame:
    """Designs with and without the validity domain, run on the plant: predicted vs simulated CQAs,
    interval coverage, recipes that dissolve their product, distance to the DoE."""
    from crystalloop.digital_twin.design import (
        ValidityDomain,
        knee_point,
        optimize_design,
        solubility_polynomial,
        spread_points,
    )
    from crystalloop.hardware.sim.kinetics import load_kinetics

    kin = load_kinetics(kinetics)
    scale = 1.0 if kin.solubility.temperature_unit == "C" else None
    if scale is None:
        raise SystemExit("bench_domain needs a solubility polynomial in °C")
    sol = solubility_polynomial(kin.solubility.coefficients, unit="kg/kg")
    ref_dom = ValidityDomain.from_frame(twin.training_data_, twin.max_cycles, solubility=sol)
    rows = []
    for label, dom in (("no domain (before)", None), ("validity domain + solubility", "auto")):
        res = optimize_design(twin, OBJECTIVES, cycles="1-4", pop_size=pop, n_gen=gens, seed=seed, domain=dom,
                              solubility=sol)
        chosen = [knee_point(res, n_cycles=n) for n in sorted(set(res.front["n_cycles"]))]
        chosen += spread_points(res, max(n_valid - len(chosen), 1))
        chosen = list({tuple(np.round(p.to_features(4), 9)): p for p in chosen}.values())[:n_valid]
        feats = np.vstack([p.to_features(twin.max_cycles) for p in chosen])
        pred = twin.predict_frame(feats, warn=False)
        sim = _sim_cqas(chosen, 7000 + np.arange(len(chosen)), kinetics)
        ext = ref_dom.table(feats)
        row = {"design": label, "n_recipes": len(chosen), "dissolving": int(ext["dissolves"].sum()),
               "distance_to_doe_median": float(np.median(ext["distance_to_doe"]))}
        for c in ("D50_um", "DoA_pct"):
            e = pred[c + "_mean"].to_numpy() - sim[c].to_numpy()
            ok = np.isfinite(e)
            row[f"{c}_mae"] = float(np.mean(np.abs(e[ok])))
            row[f"{c}_cov95"] = float(np.mean(np.abs(e[ok]) <= 1.96 * pred[c + "_std"].to_numpy()[ok]))
            row[f"{c}_plant_mean"] = float(np.nanmean(sim[c]))
        rows.append(row)
    tab = pd.DataFrame(rows)
    print(f"\nDesigns on the plant ({kinetics} kinetics, pop {pop}, {gens} generations, knee per instance + "
          f"spread points; dissolution judged with the kinetic set's solubility):")
    print(tab.round(3).to_string(index=False))
    return tab


def bench_speed(twin, pop: int, gens: int, seed: int) -> dict:
    from crystalloop.digital_twin.design import DesignProblem, optimize_design

    timed = _TimedTwin(twin)
    dom = _domain_of(twin)  # the wrapper hides the twin's data: hand the same domain to both runs
    t0 = time.perf_counter()
    result = optimize_design(timed, OBJECTIVES, cycles="1-4", pop_size=pop, n_gen=gens, seed=seed, domain=dom)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    par = optimize_design(twin, OBJECTIVES, cycles="1-4", pop_size=pop, n_gen=gens, seed=seed, n_jobs=2, domain=dom)
    wall2 = time.perf_counter() - t0
    same = par.front.equals(result.front)

    # baseline on the same kind of candidates: 4-cycle profiles from a feasible sample
    problem = DesignProblem(twin, OBJECTIVES, n_cycles=4)
    n_base = 100
    X = problem.space.sample(n_base, np.random.default_rng(seed))
    t = time.perf_counter()
    loop = []
    for x in X:
        prof = problem.space.to_profiles(x[None, :])[0]
        pred = twin.predict_frame(prof.to_features(twin.max_cycles)[None, :], cqas=["D50_um", "DoA_pct"], warn=False)
        loop.append([pred["D50_um_mean"].iloc[0], pred["DoA_pct_mean"].iloc[0]])
    t_loop = time.perf_counter() - t
    t = time.perf_counter()
    vec = []
    for i in range(0, n_base, pop):
        F = problem.evaluate(X[i:i + pop], return_values_of=["F"])
        vec.append(F * np.array([-1.0, 1.0]))
    t_vec = time.perf_counter() - t
    np.testing.assert_allclose(np.vstack(vec), np.asarray(loop), rtol=1e-9, atol=1e-9)
    return dict(result=result, wall=wall, wall2=wall2, same=same, twin_s=timed.seconds, twin_calls=timed.calls, twin_rows=timed.rows,
                n_eval=result.n_evaluations, loop_rate=n_base / t_loop, vec_rate=n_base / t_vec, n_base=n_base)


def _sim_cqas(profiles, seeds, kinetics: str) -> pd.DataFrame:
    from crystalloop.hardware.sim import simulate

    rows = []
    for p, s in zip(profiles, seeds, strict=True):
        try:
            rows.append(simulate(p, kinetics=kinetics, seed=int(s)).cqas)
        except Exception as e:  # a failed batch counts as a run without a result, as in the lab
            FAILED.append((p.to_dict(), int(s), f"{type(e).__name__}: {e}"))
            rows.append({"D50_um": np.nan, "DoA_pct": np.nan, "crystallinity_pct": np.nan})
    return pd.DataFrame(rows)


def _measured_hv(cqas: pd.DataFrame) -> float:
    from crystalloop.digital_twin.design import hypervolume, parse_objectives

    objs = parse_objectives(OBJECTIVES, ["D50_um", "DoA_pct"])
    return hypervolume(cqas[["D50_um", "DoA_pct"]].to_numpy(float), objs, REFERENCE)


def bench_validation(twin, result, n_valid: int, seed: int, kinetics: str) -> dict:
    from crystalloop.digital_twin.design import (
        DesignProblem,
        knee_point,
        make_algorithm,
        spread_points,
        tell_measured,
    )

    # validation runs: the knee of every instance + points spread along the global front
    chosen = [knee_point(result, n_cycles=n) for n in sorted(set(result.front["n_cycles"]))]
    chosen += spread_points(result, max(n_valid - len(chosen), 1))
    uniq, keys = [], set()
    for p in chosen:
        k = tuple(np.round(p.to_features(4), 9))
        if k not in keys:
            keys.add(k)
            uniq.append(p)
    chosen = uniq[:n_valid]
    feats = np.vstack([p.to_features(twin.max_cycles) for p in chosen])
    pred = twin.predict_frame(feats, warn=False)
    t = time.perf_counter()
    sim = _sim_cqas(chosen, 5000 + np.arange(len(chosen)), kinetics)
    t_valid = time.perf_counter() - t
    table = pd.DataFrame({"profile": [p.name.split(" (")[0] for p in chosen],
                          "n_cycles": [p.n_cycles for p in chosen]})
    for c in twin.cqas:
        if c in sim:
            table[f"{c} predicted"] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(pred[c + "_mean"], pred[c + "_std"], strict=True)]
            table[f"{c} simulated"] = sim[c].round(1)
    errs = {}
    for c in twin.cqas:
        if c in sim:
            e = pred[c + "_mean"].to_numpy() - sim[c].to_numpy()
            ok = np.isfinite(e)
            e = e[ok]
            z = np.abs(e) / np.maximum(pred[c + "_std"].to_numpy()[ok], 1e-12)
            errs[c] = dict(mae=float(np.mean(np.abs(e))), bias=float(np.mean(e)),
                           within_1sd=float(np.mean(z <= 1)), within_2sd=float(np.mean(z <= 2)))
    hv_twin = _measured_hv(sim)
    hv_workflow = np.nan  # every simulator run of the twin workflow: DoE (where both CQAs measured) + validation
    doe_files = sorted((ROOT / "examples" / "doe").glob("*.csv"))
    if doe_files:
        doe = pd.concat([pd.read_csv(f) for f in doe_files], ignore_index=True)
        if {"D50_um", "DoA_pct"} <= set(doe.columns):
            hv_workflow = _measured_hv(pd.concat([doe[["D50_um", "DoA_pct"]], sim[["D50_um", "DoA_pct"]]]))

    # baselines with the same number of simulator runs: DoE + validation
    budget = DOE_RUNS + len(chosen)
    problem = DesignProblem(twin, OBJECTIVES, n_cycles=(1, 4))
    pop = max(4, int(round(np.sqrt(budget))) - 1)
    gens = budget // pop
    alg = make_algorithm(problem, pop_size=pop, seed=seed)
    alg.setup(problem, termination=("n_gen", gens))
    all_cqas, k = [], 0
    t = time.perf_counter()
    while alg.has_next():
        popu = alg.ask()
        profs = problem.space.to_profiles(popu.get("X"))
        cq = _sim_cqas(profs, 7000 + k + np.arange(len(profs)), kinetics)
        k += len(profs)
        all_cqas.append(cq)
        tell_measured(alg, problem, popu, cq)
    t_direct = time.perf_counter() - t
    direct = pd.concat(all_cqas, ignore_index=True)
    hv_direct = _measured_hv(direct)
    rng = np.random.default_rng(seed)
    Xr = problem.space.sample(budget, rng)
    rand = _sim_cqas(problem.space.to_profiles(Xr), 9000 + np.arange(budget), kinetics)
    hv_random = _measured_hv(rand)
    return dict(table=table, errs=errs, hv_twin=hv_twin, hv_workflow=hv_workflow, hv_direct=hv_direct, hv_random=hv_random,
                budget=budget, n_valid=len(chosen), direct_runs=len(direct), direct_pop=pop, direct_gens=gens,
                t_valid=t_valid, t_direct=t_direct,
                best_twin=(sim["D50_um"].max(), sim["DoA_pct"].min()),
                best_direct=(direct["D50_um"].max(), direct["DoA_pct"].min()),
                best_random=(rand["D50_um"].max(), rand["DoA_pct"].min()))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twin", help="twin folder (default: examples/twin or fitted from examples/doe)")
    ap.add_argument("--pop", type=int, default=100)
    ap.add_argument("--gens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="pop 40, 30 generations")
    ap.add_argument("--validate", action="store_true", help="also validate on the virtual crystallizer")
    ap.add_argument("--n-valid", type=int, default=10, help="validation runs on the simulator")
    ap.add_argument("--kinetics", default="default")
    ap.add_argument("--out", help="write the design folder (front, plots, recipes) here")
    ap.add_argument("--domain-check", action="store_true",
                    help="only: designs with and without the validity domain, run on the plant")
    a = ap.parse_args(argv)
    if a.quick:
        a.pop, a.gens = 40, 30
    twin = load_example_twin(a.twin)
    print(f"# Digital design benchmark  ({time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()})")
    if a.domain_check:
        bench_domain(twin, a.pop, a.gens, a.seed, a.kinetics, a.n_valid)
        return
    s = bench_speed(twin, a.pop, a.gens, a.seed)
    r = s["result"]
    print(f"\n## Speed: NSGA-II pop {a.pop}, {a.gens} generations, 4 instances (1-4 cycles)\n")
    print("| quantity | value |\n|---|---|")
    print(f"| wall time, 4 instances, 1 process (lockstep: one twin call per generation for all 4) | {s['wall']:.1f} s |")
    print(f"| wall time, 4 instances, n_jobs=2 (2 processes, one twin call per instance and generation) | "
          f"{s['wall2']:.1f} s (same front: {s['same']}) |")
    print(f"| twin evaluations (candidates) | {s['n_eval']} in {s['twin_calls']} twin calls |")
    print(f"| twin evaluations / s (whole study) | {s['n_eval'] / s['wall']:.0f} |")
    print(f"| time in twin.predict | {s['twin_s']:.1f} s ({100 * s['twin_s'] / s['wall']:.0f} %) |")
    print(f"| NSGA-II + problem overhead | {s['wall'] - s['twin_s']:.1f} s |")
    print(f"\n| evaluation of {s['n_base']} candidates | candidates / s | ratio |\n|---|---|---|")
    print(f"| baseline: per-individual loop (profile + features + 1 twin call each) | {s['loop_rate']:.0f} | 1.0 |")
    print(f"| vectorized DesignProblem (one twin call per {a.pop} candidates) | {s['vec_rate']:.0f} | "
          f"{s['vec_rate'] / s['loop_rate']:.0f}x |")
    est = s["n_eval"] / s["loop_rate"] + (s["wall"] - s["twin_s"])
    print(f"\nestimated study time with the per-individual loop: {est:.0f} s "
          f"(vs {s['wall']:.1f} s measured, {est / s['wall']:.1f}x)")
    print("\n### Fronts\n")
    print(_md(r.summary()))
    if a.out:
        from crystalloop.digital_twin.design import write_design

        write_design(r, a.out)
        print(f"\nwrote {a.out}/")
    if a.validate:
        v = bench_validation(twin, r, a.n_valid, a.seed, a.kinetics)
        print(f"\n## Validation on the virtual crystallizer (kinetics '{a.kinetics}')\n")
        print(_md(v["table"]))
        print("\n| CQA | MAE | bias (pred - sim) | within 1 sd | within 2 sd |\n|---|---|---|---|---|")
        for c, e in v["errs"].items():
            print(f"| {c} | {e['mae']:.2f} | {e['bias']:+.2f} | {100 * e['within_1sd']:.0f} % | {100 * e['within_2sd']:.0f} % |")
        print(f"\n### Hypervolume measured on the simulator (reference D50 = 0 µm, DoA = 100 %), "
              f"{v['budget']} simulator runs each\n")
        print("| method | simulator runs | hypervolume | best D50 (µm) | lowest DoA (%) | ratio |\n|---|---|---|---|---|---|")
        rows = [("random feasible profiles (baseline)", v["budget"], v["hv_random"], v["best_random"]),
                (f"NSGA-II on the simulator (pop {v['direct_pop']} x {v['direct_gens']} gens, mixed 1-4 cycles)",
                 v["direct_runs"], v["hv_direct"], v["best_direct"]),
                (f"twin-designed front ({DOE_RUNS} DoE runs + {v['n_valid']} validation runs)",
                 v["budget"], v["hv_twin"], v["best_twin"])]
        if np.isfinite(v["hv_workflow"]):
            rows.append(("twin workflow, all runs (DoE + validation, DoA not measured in every DoE run)",
                         v["budget"], v["hv_workflow"], (np.nan, np.nan)))
        for name, n, hv, best in rows:
            print(f"| {name} | {n} | {hv:.0f} | {best[0]:.1f} | {best[1]:.1f} | {hv / v['hv_direct']:.2f} |")
        print(f"\n(simulation time: validation {v['t_valid']:.0f} s, direct NSGA-II {v['t_direct']:.0f} s)")
        if FAILED:
            print(f"\n{len(FAILED)} simulator run(s) failed and count as runs without a result:")
            for rec, seed, err in FAILED[:5]:
                print(f"- seed {seed}: {err}; recipe {rec}")


if __name__ == "__main__":
    main()
