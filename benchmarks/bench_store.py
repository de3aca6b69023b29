"""Benchmark of the experiment store: write and read throughput against naive baselines.

Run: ``python benchmarks/bench_store.py [--rows 100000]``

Write: ``ExperimentStore.log_samples`` (one transaction per batch, synchronous=full and
normal) against the naive baseline of one transaction per sample (what a logger that commits
every reading does). Read: ``samples(run, wide=True)`` against ``pd.read_sql_query`` +
``pivot_table`` on the same file. Prints rows/s and ratios; tests never assert wall time.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop.store import ExperimentStore

CHANNELS = ["T_set_c", "T_jacket_c", "T_reactor_c", "conc_kg_kg", "counts", "transmissivity_pct"]


def _rows(n: int, start: int = 0) -> list[tuple[float, str, float]]:
    rng = np.random.default_rng(start)
    k = np.arange(start, start + n)
    vals = rng.normal(size=n)
    return [(float(i // len(CHANNELS)), CHANNELS[i % len(CHANNELS)], float(v)) for i, v in zip(k, vals, strict=True)]


def bench_write(d: Path, n: int, batch: int, synchronous: str) -> float:
    with ExperimentStore(d / f"w_{batch}_{synchronous}.db", synchronous=synchronous) as s:
        run = s.start_run()
        data = _rows(n)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            s.log_samples(run, data[i:i + batch])
        return n / (time.perf_counter() - t0)


def bench_write_baseline(d: Path, n: int, synchronous: str) -> float:
    """One autocommitted INSERT per sample on the same schema."""
    with ExperimentStore(d / f"b_{synchronous}.db", synchronous=synchronous) as s:
        run = s.start_run()
        path = s.path
    c = sqlite3.connect(str(path), isolation_level=None)
    c.execute(f"PRAGMA synchronous = {synchronous}")
    data = _rows(n)
    t0 = time.perf_counter()
    for t, ch, v in data:
        c.execute("INSERT INTO samples (run_id, time_s, channel, value) VALUES (?, ?, ?, ?)", (run, t, ch, v))
    rate = n / (time.perf_counter() - t0)
    c.close()
    return rate


def bench_read(d: Path, n: int) -> tuple[float, float, float, float]:
    with ExperimentStore(d / "r.db", synchronous="off") as s:
        run = s.start_run()
        s.log_samples(run, _rows(n))
        t0 = time.perf_counter()
        long = s.samples(run)
        t1 = time.perf_counter()
        wide = s.samples(run, wide=True)
        t2 = time.perf_counter()
        path = s.path
    c = sqlite3.connect(str(path))
    t3 = time.perf_counter()
    base_long = pd.read_sql_query("SELECT time_s, channel, value FROM samples WHERE run_id = ? ORDER BY time_s, rowid",
                                  c, params=(run,))
    t4 = time.perf_counter()
    base_wide = base_long.pivot_table(index="time_s", columns="channel", values="value", aggfunc="last")
    t5 = time.perf_counter()
    c.close()
    assert len(long) == len(base_long) == n and len(wide) == len(base_wide)
    return n / (t1 - t0), n / (t2 - t1), n / (t4 - t3), n / (t5 - t3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="samples written/read per case")
    ap.add_argument("--baseline-rows", type=int, default=3_000, help="samples for the per-sample-commit baseline")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print(f"Write throughput, {args.rows} samples ({len(CHANNELS)} channels), rows/s")
        print(f"{'case':44s} {'rows/s':>12s} {'vs baseline':>12s}")
        for sync in ("full", "normal"):
            base = bench_write_baseline(d, args.baseline_rows, sync)
            print(f"{'baseline: 1 commit per sample, sync=' + sync:44s} {base:12.0f} {1.0:12.1f}")
            for batch in (1, 10, 100, 1000, 10000):
                n = args.rows if batch >= 100 else min(args.rows, args.baseline_rows * batch)  # keep it short
                r = bench_write(d, n, batch, sync)
                print(f"{f'log_samples batch={batch}, sync={sync}':44s} {r:12.0f} {r / base:12.1f}")
        long, wide, base_long, base_wide = bench_read(d, args.rows)
        print(f"\nRead throughput, {args.rows} samples, rows/s")
        print(f"{'case':44s} {'rows/s':>12s} {'vs baseline':>12s}")
        print(f"{'baseline: pd.read_sql_query (long)':44s} {base_long:12.0f} {1.0:12.2f}")
        print(f"{'samples(run) (long)':44s} {long:12.0f} {long / base_long:12.2f}")
        print(f"{'baseline: read_sql_query + pivot_table':44s} {base_wide:12.0f} {1.0:12.2f}")
        print(f"{'samples(run, wide=True)':44s} {wide:12.0f} {wide / base_wide:12.2f}")


if __name__ == "__main__":
    main()
