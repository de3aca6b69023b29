"""Make the example DoE (31 runs) and the 4 hold-out runs on the virtual crystallizer.

Mirrors seed 003 (DOMAIN.md §1): profile mix 18 linear cooling / 2 linear cool+heat / 1 one-cycle /
4 two-cycle / 3 three-cycle / 3 four-cycle; D50 measured in all 31 runs, DoA in 21,
crystallinity in 15 (a subset of the DoA runs); the 4 hold-out runs are slow multi-cycle profiles
(the kind an optimizer proposes to grow large, less agglomerated crystals) with every CQA measured.

Each run is ``crystalloop.hardware.sim.simulate(profile, kinetics="default", seed=run_seed)``
with the simulator's batch-to-batch kinetic variability on; its sensor noise is off because only
end-of-batch CQAs are kept. Offline analytics are then simulated with measurement noise:

* D50 (laser diffraction): 3 % relative (1 σ);
* DoA (image analysis of agglomerates): 3 percentage points absolute, clipped to [0, 100];
* crystallinity (PXRD/TGA): 3 percentage points absolute, clipped to [0, 100].

The noise-free simulator CQAs are written too (``*_truth.csv``) for accuracy checks.

Usage::

    python examples/doe/make_doe.py [--seed 2026] [--out examples/doe] [--scheduler local:4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.hardware.sim import simulate
from crystalloop.profiles import Segment, ThermocycleProfile, feature_names, profiles_to_frame
from crystalloop.scale import map_simulations

SEED = 2026
MAX_CYCLES = 4
MIX = [(0, 1)] * 18 + [(1, 2)] * 2 + [(1, 3)] + [(2, 5)] * 4 + [(3, 7)] * 3 + [(4, 9)] * 3  # (cycles, segments)
NOISE = {"D50_um": ("rel", 0.03), "DoA_pct": ("abs", 3.0), "crystallinity_pct": ("abs", 3.0)}
CQAS = ["D50_um", "DoA_pct", "crystallinity_pct"]


def random_profile(rng: np.random.Generator, n_segments: int, *, slow: bool = False, name: str = "") -> ThermocycleProfile:
    """A feasible profile inside the seed-003 bounds with ``n_segments`` segments."""
    t0 = float(np.round(rng.uniform(55.0, 70.0), 1))
    c0 = float(np.round(rng.uniform(24.8, 55.2), 1))
    seed = float(np.round(rng.uniform(0.05, 0.15), 3))
    segs, prev = [], t0
    for k in range(n_segments):
        last = k == n_segments - 1
        if k % 2 == 0:  # cooling
            lo = 0.0 if last else 10.0
            hi = min(prev - 5.0, 20.0 if last else 40.0)
            target = float(np.round(rng.uniform(lo, max(lo + 1.0, hi)), 1))
            target = min(target, prev - 2.0)
            rate = float(np.round(rng.uniform(0.05, 0.12) if slow else rng.uniform(0.05, 0.3), 3))
        elif last:  # a profile that ends by heating: a mild rise, or the product redissolves
            target = float(np.round(min(prev + rng.uniform(4.0, 10.0), 35.0), 1))
            target = max(target, prev + 2.0)
            rate = float(np.round(rng.uniform(0.5, 1.0), 2))
        else:  # heating
            target = float(np.round(rng.uniform(prev + 5.0, min(prev + 25.0, 65.0)), 1))
            rate = float(np.round(rng.uniform(0.5, 1.0), 2))
        hold = 0.0 if not (k % 2 == 1) else float(np.round(rng.uniform(0.0, 30.0), 0))
        segs.append(Segment(target, rate, hold))
        prev = target
    return ThermocycleProfile(c0, seed, t0, tuple(segs), name=name).validate()


def measure(cqas: dict, rng: np.random.Generator) -> dict:
    """Simulated offline analytics: noisy D50, DoA, crystallinity."""
    out = {}
    for c in CQAS:
        kind, s = NOISE[c]
        v = float(cqas[c])
        v = v * (1 + rng.normal(0, s)) if kind == "rel" else v + rng.normal(0, s)
        if c.endswith("_pct"):
            v = min(100.0, max(0.0, v))
        out[c] = round(v, 3)
    return out


def simulate_run(job: tuple[ThermocycleProfile, int]) -> tuple[dict, int, list[str]]:
    """One DoE batch ``(profile, seed)``: its end-of-batch CQAs, the seed used and retry notes.

    A failed batch is re-run with the next seed (at most 3 tries); everything depends only on
    the arguments, so the batch gives the same rows in-process and on a Dask cluster.
    """
    profile, seed = job
    notes = []
    for _attempt in range(3):
        try:
            res = simulate(profile, kinetics="default", seed=int(seed), noise=False)
            return dict(res.cqas), int(seed), notes
        except (ArithmeticError, ValueError) as e:  # a failed batch: re-run with the next seed
            notes.append(f"simulation failed with seed {seed} ({type(e).__name__}: {e}); retrying")
            seed = int(seed) + 1
    raise RuntimeError(f"simulation failed 3 times for {profile}")


def run(profiles: list[ThermocycleProfile], seeds: list[int], rng: np.random.Generator, prefix: str,
        scheduler: str | None = None):
    feats = profiles_to_frame(profiles, MAX_CYCLES)
    meas, truth = [], []
    # the simulations in item order (in-process or on Dask); the measurement noise is drawn below, in order
    runs = map_simulations(simulate_run, list(zip(profiles, seeds, strict=True)), scheduler)
    for i, (p, (cqas, s, notes)) in enumerate(zip(profiles, runs, strict=True)):
        for note in notes:
            print(f"{prefix}{i + 1:02d}: {note}", flush=True)
        seeds[i] = s
        truth.append({c: float(cqas[c]) for c in CQAS})
        meas.append(measure(cqas, rng))
        print(f"{prefix}{i + 1:02d}: {p}  ->  " + ", ".join(f"{c}={truth[-1][c]:.2f}" for c in CQAS), flush=True)
    ids = [f"{prefix}{i + 1:02d}" for i in range(len(profiles))]
    m = pd.concat([pd.DataFrame({"run_id": ids}), feats, pd.DataFrame(meas)], axis=1)
    t = pd.concat([pd.DataFrame({"run_id": ids, "sim_seed": seeds}), feats, pd.DataFrame(truth)], axis=1)
    return m, t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--scheduler", default=None,
                    help="run the simulations on Dask: 'local:N' or a scheduler address (crystalloop.scale)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(MIX))
    profiles = [random_profile(rng, MIX[j][1], name=f"DOE{i + 1:02d}") for i, j in enumerate(order)]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, len(profiles))]
    doe, truth = run(profiles, seeds, rng, "DOE", a.scheduler)
    # missing-CQA pattern of seed 003: DoA in 21 runs, crystallinity in 15 of those
    doa_rows = np.sort(rng.choice(len(doe), 21, replace=False))
    cry_rows = np.sort(rng.choice(doa_rows, 15, replace=False))
    doe.loc[~doe.index.isin(doa_rows), "DoA_pct"] = np.nan
    doe.loc[~doe.index.isin(cry_rows), "crystallinity_pct"] = np.nan
    hold_profiles = [random_profile(rng, n, slow=True, name=f"HOLD{i + 1:02d}") for i, n in enumerate([9, 9, 7, 9])]
    hold_seeds = [int(s) for s in rng.integers(0, 2**31 - 1, 4)]
    hold, hold_truth = run(hold_profiles, hold_seeds, rng, "HOLD", a.scheduler)
    a.out.mkdir(parents=True, exist_ok=True)
    doe.to_csv(a.out / "doe.csv", index=False)
    truth.to_csv(a.out / "doe_truth.csv", index=False)
    hold.to_csv(a.out / "holdout.csv", index=False)
    hold_truth.to_csv(a.out / "holdout_truth.csv", index=False)
    assert list(doe.columns) == ["run_id", *feature_names(MAX_CYCLES), *CQAS]
    print(f"wrote {a.out}/doe.csv ({len(doe)} runs: D50 {doe.D50_um.notna().sum()}, DoA {doe.DoA_pct.notna().sum()}, "
          f"crystallinity {doe.crystallinity_pct.notna().sum()}) and holdout.csv ({len(hold)} runs)")


if __name__ == "__main__":
    main()
