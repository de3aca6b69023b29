"""Benchmark: a real multi-round closed-loop campaign on the virtual crystallizer vs random recipes.

Starting from the example DoE (``examples/doe/doe.csv``, 31 runs), the campaign runs
``--rounds`` rounds of ``--batch`` recipes (twin: ``fit_twin`` fast grid, 20 MC-CV splits, no
augmentation; NSGA-II with the optimistic bound mean ± 1 std; runner on ``sim://``; D50 from 8
final probe frames through the vision pipeline; DoA/crystallinity from the simulated lab).
The baseline, measured in the same run, spends the same number of runs on random feasible
recipes (same design space, same runner, same measurement). Reported: hypervolume of the measured
runs (fixed reference from the starting DoE), best D50 with DoA <= limit, twin error and interval
coverage on the campaign's new runs, image-based D50 error against the plant, and wall times.

With ``--acquisitions optimistic,ehvi --seeds 0,1`` it instead runs one campaign per
acquisition and seed from the same DoE, with the same budget and plant, and prints the
hypervolume of the measured runs after each round (and its gain over the DoE) per acquisition:
the expected-hypervolume-improvement batch (``ehvi``) measured against the optimistic front
spread (``optimistic``, the default) in the same run.

Usage::

    python benchmarks/bench_campaign.py [--rounds 3] [--batch 3] [--out benchmarks/results/campaign]
    python benchmarks/bench_campaign.py --acquisitions optimistic,ehvi --seeds 0,1 --rounds 2 --batch 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.campaign import SimulatedLab, execute_recipe, objective_values, run_campaign
from crystalloop.digital_twin.design import DesignSpace, hypervolume, parse_objectives
from crystalloop.digital_twin.doe import read_doe
from crystalloop.profiles import feature_names, profiles_to_frame
from crystalloop.store import ExperimentStore

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doe", type=Path, default=ROOT / "examples" / "doe" / "doe.csv")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--backend", default="sim://")
    ap.add_argument("--limit", default="DoA<=10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "campaign")
    ap.add_argument("--acquisitions", default="", help="compare these acquisitions instead (e.g. optimistic,ehvi)")
    ap.add_argument("--seeds", default="0", help="campaign seeds for --acquisitions, e.g. 0,1,2")
    a = ap.parse_args(argv)
    if a.acquisitions:
        compare_acquisitions(a)
        return
    objectives = "max:D50,min:DoA"
    camp_dir = a.out / "campaign"
    t0 = time.perf_counter()
    res = run_campaign(a.doe, objectives, backend=a.backend, n_rounds=a.rounds, batch_size=a.batch,
                       out_dir=camp_dir, limit=a.limit, n_frames=a.frames, seed=a.seed,
                       run_options={"sample_interval_s": 120.0},
                       progress=lambda s, i: print(f"[{time.perf_counter() - t0:7.1f} s] {s}: "
                                                   + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                               for k, v in i.items() if k != "profile"), flush=True))
    t_campaign = time.perf_counter() - t0
    ref = json.loads((camp_dir / "campaign.json").read_text())["reference"]
    objs = parse_objectives(objectives, ["D50_um", "DoA_pct"])

    # ---- baseline: the same number of runs on random feasible recipes
    n = a.rounds * a.batch
    space = DesignSpace((1, 4))
    rnd_profiles = space.to_profiles(space.sample(n, np.random.default_rng(a.seed + 99)))
    base_dir = a.out / "random"
    base_dir.mkdir(parents=True, exist_ok=True)
    store = ExperimentStore(base_dir / "random.sqlite")
    table = read_doe(a.doe)
    lab = SimulatedLab(list(table.cqa_names))
    recs = []
    t1 = time.perf_counter()
    for k, p in enumerate(rnd_profiles, start=1):
        recs.append(execute_recipe(p, label=f"R1-{k}", round_=1, backend=a.backend, seed=a.seed * 1000 + 900 + k,
                                   store=store, lab=lab, image_dir=base_dir / "images" / f"R{k}", n_frames=a.frames,
                                   run_options={"sample_interval_s": 120.0}))
        print(f"[random {time.perf_counter() - t1:7.1f} s] R{k}: D50 image {recs[-1]['D50_image_um']:.1f} "
              f"plant {recs[-1].get('plant_D50_um', np.nan):.1f}, DoA {recs[-1].get('DoA_pct', np.nan):.1f}", flush=True)
    t_random = time.perf_counter() - t1
    rand = pd.DataFrame(recs)
    rows = profiles_to_frame(rnd_profiles, table.max_cycles)
    rows["D50_um"], rows["DoA_pct"] = rand["D50_image_um"].to_numpy(), rand["DoA_pct"].to_numpy()
    base = pd.concat([table.to_frame(), rows], ignore_index=True)
    V0 = objective_values(table.to_frame(), objs, table.max_cycles).dropna().to_numpy(float)
    Vr = objective_values(base, objs, table.max_cycles).dropna().to_numpy(float)
    Vc = objective_values(res.doe, objs, table.max_cycles).dropna().to_numpy(float)
    hv0, hv_r, hv_c = (hypervolume(V, objs, ref) for V in (V0, Vr, Vc))

    def best(frame):
        d = frame["D50_um"].to_numpy(float)
        doa = frame["DoA_pct"].to_numpy(float)
        ok = np.isfinite(d) & np.isfinite(doa) & (doa <= float(a.limit.split("<=")[1]))
        return float(d[ok].max()) if ok.any() else np.nan

    h = res.history
    clean = h[h["plant_DoA_pct"] < 10]
    summary = {
        "rounds": a.rounds, "batch": a.batch, "doe_runs": int(table.n_runs),
        "hv_start": hv0, "hv_campaign": hv_c, "hv_random": hv_r,
        "hv_gain_campaign": hv_c - hv0, "hv_gain_random": hv_r - hv0,
        "gain_ratio": (hv_c - hv0) / (hv_r - hv0) if hv_r > hv0 else float("inf"),
        "best_D50_start": best(table.to_frame()), "best_D50_campaign": best(res.doe),
        "best_D50_random": best(base),
        "D50_image_error_pct_all": float((np.abs(h["D50_image_um"] - h["plant_D50_um"]) / h["plant_D50_um"]).mean() * 100),
        "D50_image_error_pct_noagglo": float((np.abs(clean["D50_image_um"] - clean["plant_D50_um"])
                                              / clean["plant_D50_um"]).mean() * 100) if len(clean) else np.nan,
        "D50_image_error_pct_random": float((np.abs(rand["D50_image_um"] - rand["plant_D50_um"])
                                             / rand["plant_D50_um"]).mean() * 100),
        "twin_D50_mae": float((h["D50_um"] - h["D50_um_pred"]).abs().mean()),
        "twin_D50_coverage68": float(((h["D50_um"] - h["D50_um_pred"]).abs() <= h["D50_um_std"]).mean()),
        "twin_D50_coverage95": float(((h["D50_um"] - h["D50_um_pred"]).abs() <= 1.96 * h["D50_um_std"]).mean()),
        "twin_DoA_mae": float((h["DoA_pct"] - h["DoA_pct_pred"]).abs().mean()),
        "twin_DoA_coverage95": float(((h["DoA_pct"] - h["DoA_pct_pred"]).abs() <= 1.96 * h["DoA_pct_std"]).mean()),
        "campaign_wall_s": t_campaign, "random_wall_s": t_random,
        "learn_s_per_round": float(res.rounds["learn_s"].mean()),
        "propose_s_per_round": float(res.rounds["propose_s"].mean()),
        "run_measure_s_per_run": float(h["wall_s"].mean()),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rand.to_csv(base_dir / "history.csv", index=False)
    pd.set_option("display.width", 200)
    print("\nper round:")
    print(res.rounds.drop(columns=["limit"]).round(3).to_string(index=False))
    print("\ncampaign runs:")
    cols = ["run_id", "n_cycles"] if "n_cycles" in h else ["run_id"]
    print(h[cols + ["batch_time_min", "D50_um_pred", "D50_um_std", "D50_image_um", "plant_D50_um", "DoA_pct_pred",
                    "DoA_pct", "plant_DoA_pct", "n_particles", "wall_s"]].round(2).to_string(index=False))
    print("\n| quantity | start (DoE) | campaign | random (same #runs) |\n|---|---|---|---|")
    print(f"| hypervolume (measured) | {hv0:.4g} | {hv_c:.4g} | {hv_r:.4g} |")
    print(f"| best D50 with {a.limit} (µm) | {summary['best_D50_start']:.1f} | {summary['best_D50_campaign']:.1f} | "
          f"{summary['best_D50_random']:.1f} |")
    print(f"hypervolume gain ratio campaign/random: {summary['gain_ratio']:.2f}")
    print(json.dumps(summary, indent=2))
    assert list(res.doe.columns)[: 1 + len(feature_names(table.max_cycles))] == ["run_id", *feature_names(table.max_cycles)]


def compare_acquisitions(a) -> None:
    """One campaign per acquisition and seed: hypervolume of the measured runs after each round."""
    objectives = "max:D50,min:DoA"
    acqs = [x.strip() for x in a.acquisitions.split(",") if x.strip()]
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    rows = []
    t0 = time.perf_counter()
    for seed in seeds:
        for acq in acqs:
            out = a.out / f"acq_{acq}_seed{seed}"
            t1 = time.perf_counter()
            res = run_campaign(a.doe, objectives, backend=a.backend, n_rounds=a.rounds, batch_size=a.batch,
                               out_dir=out, limit=a.limit, n_frames=a.frames, seed=seed, acquisition=acq,
                               run_options={"sample_interval_s": 300.0})
            print(f"[{time.perf_counter() - t0:7.1f} s] {acq} seed {seed}: {time.perf_counter() - t1:.0f} s, "
                  f"hypervolume {' -> '.join(f'{v:.5g}' for v in res.hypervolume)}", flush=True)
            for r, hv in enumerate(res.hypervolume):
                rows.append({"acquisition": acq, "seed": seed, "round": r, "runs": r * a.batch, "hypervolume": hv,
                             "gain": hv - res.hypervolume[0]})
    df = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / "acquisitions.csv", index=False)
    tab = df.pivot_table(index=["round", "runs"], columns="acquisition", values="gain", aggfunc="mean")
    base = acqs[0]
    print(f"\nhypervolume gain over the DoE (mean of seeds {seeds}), measured runs on {a.backend}:")
    print("| round | plant runs | " + " | ".join(acqs) + f" | ratio to {base} |")
    print("|---|---|" + "---|" * len(acqs) + "---|")
    for (r, n), g in tab.iterrows():
        ratios = ", ".join(f"{acq} {g[acq] / g[base]:.2f}" if g[base] > 0 else f"{acq} -" for acq in acqs[1:])
        print(f"| {r} | {n} | " + " | ".join(f"{g[acq]:.4g}" for acq in acqs) + f" | {ratios} |")


if __name__ == "__main__":
    main()
