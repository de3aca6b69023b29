"""Scale-out benchmark: images/s, simulations/s and twin-fit time on 1 and 2 Dask workers vs in-process.

Run: ``python benchmarks/bench_scaleout.py [--images 16] [--sims 6] [--splits 20]``

Baseline: the same calls in this process with ``scheduler=None`` (the default), measured in
the same run. For each case a :class:`distributed.LocalCluster` of 1 and 2 worker processes
(one thread each) is started first and warmed up (one small image, simulation and fit on every
worker, as in this process before the baseline); its start-up time is printed separately and not counted in the throughput. Every
cluster result is checked equal to the in-process one.

From the measured per-task costs it prints an estimate of the time for 100,000 probe images
and for the paper grid (622 candidates x 3 folds x 3 repeats per CQA, 100 Monte Carlo members,
3 CQAs) on 8 and 64 workers: ``T(W) = tasks x (CPU seconds per task + Dask overhead per task) / W``.
The per-task costs are CPU seconds (``time.process_time``) of the in-process runs, which a loaded
machine inflates far less than wall time; the Dask overhead per task is the wall time of 200
empty tasks on the 1-worker cluster, divided by 200.
The paper grid's serial work is measured by fitting a random sample of its candidates per
family on the example DoE (``--candidates``) and scaling by the candidate counts.
Tests never assert wall time; record figures in docs/scale-out.md with date, machine and load.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.digital_twin import fit_twin
from crystalloop.digital_twin.doe import read_doe
from crystalloop.digital_twin.models import MODEL_FAMILIES, grid_size, make_estimator, param_grid
from crystalloop.hardware.sim import simulate
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.scale import joblib_backend, map_simulations, map_tasks
from crystalloop.vision.report import measure_psd

ROOT = Path(__file__).resolve().parents[1]
DOE = ROOT / "examples" / "doe" / "doe.csv"
PIXEL_UM = 1.5


def _cluster(n_workers: int):
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.CRITICAL)
    client = Client(cluster)
    client.run(_warm)
    return cluster, client, time.perf_counter() - t0


def _warm() -> bool:
    """One small task of each kind (imports, first-call set-up), in this process or on a worker: not timed."""
    from crystalloop.vision.pipeline import analyze_image
    from crystalloop.vision.render import render_particles, sample_particles

    parts = sample_particles(np.geomspace(20.0, 200.0, 8), np.full(8, 3.0), shape=(240, 320),
                             pixel_size_um=PIXEL_UM, seed=0)
    img, _ = render_particles(parts, shape=(240, 320), pixel_size_um=PIXEL_UM, seed=0)
    analyze_image(img, pixel_size_um=PIXEL_UM)
    simulate(ThermocycleProfile(40.0, 0.1, 60.0, [Segment(30.0, 0.5)]), seed=0)
    make_estimator("rf", random_state=0, n_estimators=5).fit(np.arange(20.0).reshape(10, 2), np.arange(10.0))
    return True


def _images(d: Path, n: int) -> list[str]:
    import cv2

    from crystalloop.vision.render import render_particles, sample_particles

    sizes = np.geomspace(15.0, 250.0, 20)
    counts = np.exp(-0.5 * ((np.log(sizes) - np.log(90.0)) / 0.45) ** 2) * 12.0
    files = []
    for k in range(n):
        parts = sample_particles(sizes, counts, shape=(960, 1280), pixel_size_um=PIXEL_UM, seed=k)
        img, _ = render_particles(parts, shape=(960, 1280), pixel_size_um=PIXEL_UM, seed=k, fast_noise=True)
        f = d / f"frame_{k:04d}.png"
        cv2.imwrite(str(f), img)
        files.append(str(f))
    return files


def _sim(job):
    profile, seed = job
    return simulate(profile, seed=seed).cqas


def _sim_jobs(n: int):
    return [(ThermocycleProfile(45.0, 0.1, 60.0, [Segment(35.0, 0.3), Segment(50.0, 0.8), Segment(15.0, 0.2)]), s)
            for s in range(n)]


def _twin(n_splits: int, scheduler=None):
    kw = dict(grid="fast", n_splits=n_splits, augment=False, random_state=0)
    if scheduler is None:
        return fit_twin(DOE, n_jobs=1, **kw)
    with joblib_backend(scheduler):
        return fit_twin(DOE, n_jobs=-1, **kw)


def _paper_grid_fit_cost(n_candidates: int) -> dict[str, float]:
    """Mean CPU seconds of one fit of a paper-grid candidate per family (random sample of candidates)."""
    from sklearn.model_selection import ParameterSampler

    table = read_doe(DOE)
    X, y, _ = table.xy("D50_um")
    out = {}
    for fam in MODEL_FAMILIES:
        grid = {k.removeprefix("model__"): v for k, v in param_grid(fam, "paper").items()}
        times = []
        for params in ParameterSampler(grid, n_iter=min(n_candidates, grid_size("paper", [fam])), random_state=0):
            est = make_estimator(fam, random_state=0, **params)
            t0 = time.process_time()
            est.fit(X, y)
            times.append(time.process_time() - t0)
        out[fam] = float(np.mean(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="probe images (960x1280) in the PSD case")
    ap.add_argument("--sims", type=int, default=6, help="simulated batches in the simulation case")
    ap.add_argument("--splits", type=int, default=20, help="Monte Carlo members per CQA in the twin case")
    ap.add_argument("--candidates", type=int, default=6, help="paper-grid candidates timed per family")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _images(Path(tmp), args.images)
        jobs = _sim_jobs(args.sims)
        # both clusters start (and import crystalloop) now, next to this process's own imports, so
        # every process runs the same code even in a checkout that changes while the benchmark runs
        clusters = {w: _cluster(w) for w in (1, 2)}
        start_up = {w: c[2] for w, c in clusters.items()}
        _warm()
        t0, c0 = time.perf_counter(), time.process_time()
        base_psd = measure_psd(files, pixel_size_um=PIXEL_UM)
        t_img0, cpu_img = time.perf_counter() - t0, (time.process_time() - c0) / args.images
        t0, c0 = time.perf_counter(), time.process_time()
        base_sim = map_simulations(_sim, jobs)
        t_sim0, cpu_sim = time.perf_counter() - t0, (time.process_time() - c0) / args.sims
        t0 = time.perf_counter()
        base_twin = _twin(args.splits)
        t_twin0 = time.perf_counter() - t0
        holdout = pd.read_csv(ROOT / "examples" / "doe" / "holdout.csv")
        base_pred = base_twin.predict(holdout, return_std=True)
        rows += [("images", "in-process", t_img0, args.images), ("simulations", "in-process", t_sim0, args.sims),
                 ("twin fit", "in-process", t_twin0, 1)]
        for w in (1, 2):
            cluster, client, _ = clusters[w]
            try:
                if w == 1:
                    t0 = time.perf_counter()
                    map_tasks(abs, range(200), scheduler=client)
                    overhead = (time.perf_counter() - t0) / 200
                t0 = time.perf_counter()
                got = measure_psd(files, pixel_size_um=PIXEL_UM, scheduler=client)
                rows.append(("images", f"Dask {w} worker(s)", time.perf_counter() - t0, args.images))
                pd.testing.assert_frame_equal(got.particles, base_psd.particles)
                t0 = time.perf_counter()
                got_sim = map_simulations(_sim, jobs, scheduler=client)
                rows.append(("simulations", f"Dask {w} worker(s)", time.perf_counter() - t0, args.sims))
                assert got_sim == base_sim
                t0 = time.perf_counter()
                twin = _twin(args.splits, client)
                rows.append(("twin fit", f"Dask {w} worker(s)", time.perf_counter() - t0, 1))
                for a, b in zip(twin.predict(holdout, return_std=True), base_pred, strict=True):
                    np.testing.assert_array_equal(a, b)
            finally:
                client.close()
                cluster.close()
        fit_cost = _paper_grid_fit_cost(args.candidates)
    load_end = os.getloadavg()[0]

    print(f"\nScale-out: same calls in-process and on a LocalCluster (results checked identical); "
          f"cluster start-up: 1 worker {start_up[1]:.1f} s, 2 workers {start_up[2]:.1f} s (not counted)")
    print(f"{'case':12s} {'where':18s} {'wall s':>8s} {'per s':>9s} {'vs in-process':>14s}")
    base = {case: t for case, where, t, _ in rows if where == "in-process"}
    for case, where, t, n in rows:
        rate = f"{n / t:9.2f}" if case != "twin fit" else f"{'':9s}"
        print(f"{case:12s} {where:18s} {t:8.2f} {rate} {base[case] / t:14.2f}")

    n_fits = {f: grid_size("paper", [f]) * 3 * 3 for f in MODEL_FAMILIES}  # 3-fold x 3 repeats per candidate
    work_grid = sum(n_fits[f] * fit_cost[f] for f in MODEL_FAMILIES)
    work_mc = 100 * float(np.mean(list(fit_cost.values())))
    work_paper = 3 * (work_grid + work_mc)
    tasks_paper = 3 * (sum(n_fits.values()) + 100)
    print(f"\nPer-task CPU cost (in-process): image {cpu_img * 1e3:.0f} ms, simulation {cpu_sim * 1e3:.0f} ms; "
          f"Dask overhead per task (200 empty tasks, 1 worker): {overhead * 1e3:.1f} ms")
    print("paper-grid fit per candidate (CPU s): " + ", ".join(f"{f} {fit_cost[f]:.3f}" for f in MODEL_FAMILIES)
          + f"; serial work {work_paper / 60:.1f} min in {tasks_paper} fits (3 CQAs)")
    print(f"\n{'estimate':34s} {'1 core':>10s} {'8 workers':>10s} {'64 workers':>11s}")
    for label, work, tasks in (("100,000 images", 1e5 * cpu_img, 1e5),
                               ("paper grid, 3 CQAs, 100 MC members", work_paper, tasks_paper)):
        cells = [work] + [(work + tasks * overhead) / w for w in (8, 64)]
        print(f"{label:34s} " + " ".join(f"{c / 60:9.1f}m" for c in cells))
    print(f"\nload average at end {load_end:.2f}")


if __name__ == "__main__":
    main()
