"""Helpers of the dashboard tests and benchmarks: long runs written through the store's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crystalloop.store import ExperimentStore


def big_run(path: Path, n: int, channels: tuple[str, ...] = ("T_ref_c", "T_set_c", "T_jacket_c", "T_reactor_c"),
            *, seed: int = 0, spike_at: int | None = None) -> int:
    """A completed run of ``n`` time points per channel (1 s apart), written in batches; returns its id."""
    rng = np.random.default_rng(seed)
    with ExperimentStore(path, synchronous="off") as db:
        rid = db.start_run({"name": f"big-{n}"}, backend="sim://", kind="track", meta={"controller": "track"})
        t = np.arange(n, dtype=float)
        ys = {c: 60.0 - 40.0 * t / n + rng.normal(0, 0.05, n) for c in channels}
        if spike_at is not None:
            ys["T_reactor_c"][spike_at] = 99.0
            ys["T_reactor_c"][spike_at + 1] = -20.0
        step = 20_000
        for i in range(0, n, step):
            rows = [(float(t[j]), c, float(ys[c][j])) for j in range(i, min(i + step, n)) for c in channels]
            db.log_samples(rid, rows)
        db.finish_run(rid)
    return rid
