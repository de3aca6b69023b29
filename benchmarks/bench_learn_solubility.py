"""Clear and cloud points from simulated probe images vs the virtual crystallizer's solubility.

    python benchmarks/bench_learn_solubility.py --model clf/model      # a trained CrystalClassifier
    python benchmarks/bench_learn_solubility.py                        # classical pipeline presence

For three unseeded solutions (32/40/48 mg/g, ``default`` kinetics) the virtual crystallizer cools
20 °C below the saturation temperature at 0.3 °C/min and heats 8 °C above it at 0.1 °C/min, taking a
256×320 px image (2 µm/px) every 120 s. Every image is scored for particle presence — by a fitted
:class:`crystalloop.vision.learn.CrystalClassifier` on 64-px tiles (``--model``, e.g. one trained with
``crystalloop vision train-classifier --synthetic 600``) or, without ``--model``, by the classical
pipeline (always run too, as the baseline) — and :func:`clear_cloud_points` finds the clear and cloud points, printed next to the
simulator's true saturation temperature (the reference measured in the same run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from crystalloop.hardware.sim import CameraOptics, load_kinetics, simulate
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.vision.learn import (
    clear_cloud_points,
    load_model,
    metastable_zone_width,
    sequence_table,
)


def run(model_dir: str | None, concentrations=(32.0, 40.0, 48.0), seed: int = 1, min_consecutive: int = 3,
        min_particles: int = 1):
    kin = load_kinetics("default")
    clf = load_model(model_dir, device="cpu") if model_dir else None
    exps, truth = {}, {}
    for c0 in concentrations:
        ts = kin.saturation_temperature_c(c0)
        truth[c0] = ts
        p = ThermocycleProfile(c0, 0.0, ts + 8, [Segment(ts - 20, 0.3, hold_min=10), Segment(ts + 8, 0.1, hold_min=10)])
        r = simulate(p, seed=seed, image_interval_s=120, camera=CameraOptics(shape=(256, 320), pixel_size_um=2.0))
        t = [f.time_s for f in r.frames]
        T = np.interp(t, r.timeseries.time_s, r.timeseries.T_reactor_c)
        exps[c0] = sequence_table([f.image for f in r.frames], t, T, model=clf,
                                  tile_size=64 if clf is not None else None,
                                  pixel_size_um=None if clf is not None else 2.0, min_particles=min_particles)
        print(f"  {c0:.0f} mg/g: {len(t)} images, true saturation {ts:.2f} °C", flush=True)
    pts = clear_cloud_points(exps, min_consecutive=min_consecutive)
    return pts, truth, metastable_zone_width(pts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="folder of a fitted CrystalClassifier (default: classical pipeline)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-particles", type=int, default=10,
                    help="classical presence threshold (the pipeline finds a few particles in empty frames)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    for model in ([a.model] if a.model else []) + [None]:
        pts, truth, mszw = run(model, seed=a.seed, min_particles=a.min_particles)
        print(f"presence by: {model or f'classical pipeline (>= {a.min_particles} particles; baseline)'}")
        print(pts.to_string(index=False))
        print(pd.Series({c: round(t, 2) for c, t in truth.items()}, name="true_saturation_c").to_string())
        print(mszw.to_string() if hasattr(mszw, "to_string") else mszw)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
