"""Benchmark: ``crystalloop simulate`` through the runner on sim:// vs the direct batch simulation.

``crystalloop simulate`` now runs the recipe through :func:`crystalloop.control.run` on a
``sim://`` backend (safety layer, device reads every sample interval, store logging), the same
code path as ``crystalloop run``. The baseline, measured in the same run, is the direct batch
integration :func:`crystalloop.hardware.sim.simulate` that the old recorder wrapped (no
devices, no store). Both run the same recipe with the same kinetics and seed, with probe images
every 30 min. Reported: wall time per batch (median of ``--repeats``), the ratio, and the
end-of-batch CQAs of both paths (the runner samples the sensors and commands the thermostat at
its own 60 s grid, so the CQAs agree within the integration tolerance, not to the bit).

Usage::

    python benchmarks/bench_simulate_runner.py [--recipe examples/recipes/three_cycle.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from crystalloop.control import RunOptions, run
from crystalloop.hardware.sim import default_recipe_path, simulate
from crystalloop.profiles import ThermocycleProfile
from crystalloop.store import ExperimentStore


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=default_recipe_path())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    profile = ThermocycleProfile.from_file(a.recipe)
    times: dict[str, list[float]] = {"direct": [], "instant": [], "batched": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            t0 = time.perf_counter()
            direct = simulate(profile, seed=a.seed, image_interval_s=1800.0)
            times["direct"].append(time.perf_counter() - t0)
            for mode, commit_s in (("instant", 0.0), ("batched", 1.0)):
                db = ExperimentStore(Path(tmp) / f"{mode}{i}.db")
                t0 = time.perf_counter()
                res = run(profile, backend=f"sim://?seed={a.seed}&kinetics=default", store=db,
                          options=RunOptions(kind="simulation", image_interval_s=1800.0, commit_interval_s=commit_s),
                          image_root=Path(tmp) / "img")
                times[mode].append(time.perf_counter() - t0)
                db.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"recipe {a.recipe.name}: {profile.batch_time_s / 3600:.2f} h batch, {a.repeats} repeats, seed {a.seed}")
    print(f"{'path':<58}{'wall s (median)':>16}{'ratio':>8}")
    for key, label in (("direct", "direct simulate() (baseline, no store)"),
                       ("instant", "runner on sim://, commit every instant (run default)"),
                       ("batched", "runner on sim://, commit each 1 s (crystalloop simulate)")):
        print(f"{label:<58}{med[key]:>16.2f}{med[key] / med['direct']:>8.2f}")
    print(f"runner: {res.n_samples} samples, {len(res.images)} images; direct: {len(direct.frames)} frames")
    print(f"{'CQA':<20}{'direct':>12}{'runner':>12}")
    for k, v in direct.cqas.items():
        print(f"{k:<20}{v:>12.3f}{res.cqas.get(k, float('nan')):>12.3f}")


if __name__ == "__main__":
    main()
