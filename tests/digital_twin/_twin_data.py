"""Small synthetic DoE tables for the twin tests: CQAs are analytic functions of the profile."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crystalloop.profiles import Segment, ThermocycleProfile, profiles_to_frame

MIX = [0, 0, 0, 1, 1, 2, 3, 4]  # number of cycles, cycled through


def random_profiles(n: int, seed: int = 0, max_cycles: int = 4) -> list[ThermocycleProfile]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        nc = min(MIX[i % len(MIX)], max_cycles)
        nseg = 1 if nc == 0 else 2 * nc + 1
        t0 = float(rng.uniform(45, 65))
        prev, segs = t0, []
        for k in range(nseg):
            if k % 2 == 0:
                T = prev - rng.uniform(5, min(30.0, prev - 1))
                r = rng.uniform(0.05, 0.3)
            else:
                T = min(70.0, prev + rng.uniform(3, 15))
                r = rng.uniform(0.5, 1.0)
            segs.append(Segment(round(T, 2), round(r, 3), 0.0))
            prev = T
        out.append(ThermocycleProfile(rng.uniform(25, 55), rng.uniform(0.05, 0.15), round(t0, 2), tuple(segs)))
    return out


def truth(F: pd.DataFrame) -> pd.DataFrame:
    """Noise-free analytic CQAs of a feature table."""
    return pd.DataFrame({
        "D50_um": 10 + 0.5 * F["c0_mg_g"] + 60 * F["seed_loading"] + 4 * F["n_cycles"],
        "DoA_pct": 60 - 0.6 * F["c0_mg_g"] - 5 * F["n_cycles"] + 0.2 * F["t_start_c"],
        "crystallinity_pct": 50 + 8 * F["n_cycles"] + 0.2 * F["c0_mg_g"],
    }, index=F.index)


def make_doe(n: int = 31, seed: int = 0, noise: float = 0.5, max_cycles: int = 4) -> pd.DataFrame:
    """DoE frame with run_id, features and CQAs (DoA missing in 1/3, crystallinity in 1/2 of rows)."""
    rng = np.random.default_rng(seed + 100)
    F = profiles_to_frame(random_profiles(n, seed, max_cycles), max_cycles)
    Y = truth(F) + rng.normal(0, noise, (n, 3))
    Y.loc[Y.index % 3 == 2, "DoA_pct"] = np.nan
    Y.loc[Y.index % 2 == 1, "crystallinity_pct"] = np.nan
    df = pd.concat([F, Y], axis=1)
    df.insert(0, "run_id", [f"R{i + 1:02d}" for i in range(n)])
    return df
