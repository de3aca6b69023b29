"""Offline analytics of a campaign run: the CQAs a lab measures after the batch.

An imaging probe gives the product size (D50) during the campaign itself; the degree of
agglomeration and the crystallinity usually come from offline analysis (image analysis of
dried samples, PXRD/TGA) hours later. A *lab* is the campaign's hook for those values: any
callable ``lab(request) -> {cqa: value}`` taking a :class:`LabRequest`.

* :class:`SimulatedLab` — for ``sim://``: the plant's end-of-batch CQAs with measurement
  noise like real analytics (the noise model of ``examples/doe/make_doe.py``).
* :class:`TableLab` — for real hardware: a CSV (or Parquet/Excel) table the analyst fills in,
  one row per run (``run_id`` = the campaign's run label such as ``C2-1``, or the store's run
  id), one column per CQA; the campaign waits for the row (``timeout_s``) and reads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.profiles import ThermocycleProfile

__all__ = ["LabRequest", "SimulatedLab", "TableLab", "DEFAULT_LAB_NOISE", "as_lab"]

#: (kind, 1 σ) per CQA: relative for sizes, absolute percentage points for percentages
DEFAULT_LAB_NOISE: dict[str, tuple[str, float]] = {
    "D10_um": ("rel", 0.03), "D50_um": ("rel", 0.03), "D90_um": ("rel", 0.03),
    "DoA_pct": ("abs", 3.0), "crystallinity_pct": ("abs", 3.0), "yield_pct": ("abs", 1.0),
}


@dataclass
class LabRequest:
    """What a lab hook is told about a finished campaign run.

    Attributes
    ----------
    label : str
        Campaign run label (``C2-1``: round 2, candidate 1).
    store_run_id : int or None
        Id of the run in the experiment store.
    round : int
    profile : ThermocycleProfile
    status : str
        Runner status (``completed``, ``failed``, ``aborted``).
    plant_cqas : dict
        Ground-truth CQAs of the virtual crystallizer (empty on real hardware).
    seed : int
        Seed for a simulated lab's noise.
    """

    label: str
    store_run_id: Any
    round: int
    profile: ThermocycleProfile
    status: str
    plant_cqas: dict[str, float] = field(default_factory=dict)
    seed: int = 0


class SimulatedLab:
    """Offline analytics of the virtual crystallizer: plant CQAs plus measurement noise.

    Parameters
    ----------
    cqas : sequence of str
        CQAs the lab reports (default: DoA and crystallinity; D50 comes from the images).
    noise : mapping, optional
        ``{cqa: ("rel" | "abs", sigma)}``; default :data:`DEFAULT_LAB_NOISE`. Percentages
        are clipped to [0, 100], sizes kept > 0.
    """

    def __init__(self, cqas=("DoA_pct", "crystallinity_pct"), noise: Mapping[str, tuple[str, float]] | None = None):
        self.cqas = list(cqas)
        self.noise = dict(DEFAULT_LAB_NOISE if noise is None else noise)
        for c in self.cqas:
            kind, s = self.noise.get(c, ("abs", 0.0))
            if kind not in ("rel", "abs") or not (np.isfinite(s) and s >= 0):
                raise ConfigError(f"noise for {c!r} must be ('rel' or 'abs', sigma >= 0), got {(kind, s)!r}")

    def __call__(self, request: LabRequest) -> dict[str, float]:
        if not request.plant_cqas:
            raise ConfigError(
                f"SimulatedLab needs the plant's ground truth, but run {request.label} has none (real hardware?); "
                f"pass lab=TableLab('lab_results.csv') or a callable returning the measured CQAs")
        rng = np.random.default_rng([int(request.seed) & 0xFFFFFFFF, 7919])
        out = {}
        for c in self.cqas:
            v = float(request.plant_cqas.get(c, math.nan))
            kind, s = self.noise.get(c, ("abs", 0.0))
            v = v * (1.0 + rng.normal(0.0, s)) if kind == "rel" else v + rng.normal(0.0, s)
            if c.endswith("_pct"):
                v = min(100.0, max(0.0, v))
            elif c.endswith("_um"):
                v = max(v, 0.0)
            out[c] = v
        return out

    def __repr__(self) -> str:
        return f"SimulatedLab(cqas={self.cqas})"


class TableLab:
    """Offline CQAs from a table the lab fills in (CSV, Parquet or Excel).

    Parameters
    ----------
    path : path
        Table with a ``run_id`` column (campaign label such as ``C2-1`` or the store run id)
        and one column per CQA (``DoA_pct``, ``crystallinity_pct``, ...; empty = not measured).
    timeout_s : float
        How long to wait for the run's row to appear (0: do not wait).
    poll_s : float
        Re-read interval while waiting.
    sleep : callable, optional
        Replaces :func:`time.sleep` (tests).

    Raises
    ------
    ConfigError
        The row does not appear within ``timeout_s`` (the message says what to add).
    SchemaError
        The table lacks ``run_id`` or has a non-numeric CQA value.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 0.0, poll_s: float = 30.0,
                 sleep: Callable[[float], None] | None = None):
        self.path = Path(path)
        if not (np.isfinite(timeout_s) and timeout_s >= 0) or not (np.isfinite(poll_s) and poll_s > 0):
            raise ConfigError(f"timeout_s must be >= 0 s and poll_s > 0 s, got {timeout_s!r}, {poll_s!r}")
        self.timeout_s, self.poll_s = float(timeout_s), float(poll_s)
        self._sleep = sleep or time.sleep

    def _read(self) -> pd.DataFrame | None:
        if not self.path.is_file():
            return None
        suf = self.path.suffix.lower()
        df = (pd.read_parquet(self.path) if suf in (".parquet", ".pq")
              else pd.read_excel(self.path) if suf in (".xlsx", ".xls") else pd.read_csv(self.path))
        if "run_id" not in df.columns:
            raise SchemaError(f"lab table {self.path} has no 'run_id' column; columns: {list(df.columns)}")
        return df

    def __call__(self, request: LabRequest) -> dict[str, float]:
        keys = {str(request.label), str(request.store_run_id)}
        waited = 0.0
        while True:
            df = self._read()
            if df is not None:
                hit = df[df["run_id"].astype(str).str.strip().isin(keys)]
                if len(hit):
                    row = hit.iloc[-1]
                    out = {}
                    for c in df.columns:
                        if c == "run_id" or not (c.endswith("_pct") or c.endswith("_um")):
                            continue
                        v = pd.to_numeric(pd.Series([row[c]]), errors="coerce").iloc[0]
                        if pd.isna(v) and pd.notna(row[c]):
                            raise SchemaError(f"lab table {self.path}, run {request.label}, column {c!r}: "
                                              f"expected a number, got {row[c]!r}")
                        out[c] = float(v)
                    return out
            if waited >= self.timeout_s:
                raise ConfigError(
                    f"lab table {self.path} has no row for run {request.label} (store run {request.store_run_id}) "
                    f"after waiting {waited:.0f} s; add a row with run_id={request.label} and the measured CQAs "
                    f"(e.g. DoA_pct, crystallinity_pct), then resume the campaign from its doe.csv")
            step = min(self.poll_s, self.timeout_s - waited)
            self._sleep(step)
            waited += step

    def __repr__(self) -> str:
        return f"TableLab({str(self.path)!r}, timeout_s={self.timeout_s:g})"


def as_lab(lab: Any, backend: str, simulated: bool, cqas: list[str]) -> Callable[[LabRequest], dict[str, float]]:
    """Resolve the campaign's ``lab=`` argument: None (simulated analytics on a simulated
    backend, see :func:`~crystalloop.hardware.base.is_simulated`), a table path, or a callable."""
    if lab is None:
        if not simulated:
            raise ConfigError(
                f"backend {backend!r} has no ground truth to simulate offline analytics from; pass lab= a "
                f"table path (run_id + {cqas} columns) or a callable(LabRequest) -> dict")
        return SimulatedLab(cqas)
    if isinstance(lab, (str, Path)):
        return TableLab(lab)
    if callable(lab):
        return lab
    raise ConfigError(f"lab must be None, a table path or a callable(LabRequest) -> dict, got {type(lab).__name__}")
