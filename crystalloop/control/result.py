"""What a run did: :class:`RunResult`, and how well the reactor followed the recipe (:func:`tracking_metrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.profiles import ThermocycleProfile

__all__ = ["RunResult", "tracking_metrics"]


def tracking_metrics(timeseries: pd.DataFrame, profile: ThermocycleProfile) -> dict[str, float]:
    """Tracking quality of the reactor temperature against the recipe.

    Returns ``rms_error_c`` (RMS of ``T_reactor_c - setpoint(t)`` over all samples),
    ``max_abs_error_c`` and ``overshoot_c``: the largest excursion of the reactor past a
    segment's target in the segment's direction (above for heating, below for cooling),
    from the start of that segment to the end of the next one.
    """
    ts = timeseries.dropna(subset=["T_reactor_c"])
    if ts.empty:
        raise ConfigError("timeseries has no T_reactor_c samples to compute tracking metrics from")
    t = ts["time_s"].to_numpy(float)
    y = ts["T_reactor_c"].to_numpy(float)
    err = y - profile.setpoint_at(t)
    knots_t, _ = profile.knots
    bounds, prev, acc = [0.0], profile.t_start_c, 0.0
    for s in profile.segments:
        acc += abs(s.target_c - prev) / s.rate_c_min * 60.0 + s.hold_min * 60.0
        bounds.append(acc)
        prev = s.target_c
    over = 0.0
    for k, (s, d) in enumerate(zip(profile.segments, profile.directions(), strict=True)):
        lo, hi = bounds[k], bounds[min(k + 2, len(bounds) - 1)]
        if k + 1 == len(profile.segments):
            hi = max(hi, t.max())
        m = (t >= lo) & (t <= hi)
        if not m.any():
            continue
        exc = (y[m] - s.target_c) if d == "heat" else (s.target_c - y[m])
        over = max(over, float(exc.max()))
    return {"rms_error_c": float(np.sqrt(np.mean(err**2))), "max_abs_error_c": float(np.abs(err).max()),
            "overshoot_c": over}


@dataclass
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    run_id : int or str or None
        Id in the store (None without a store).
    status : str
        ``"completed"``, ``"failed"`` or ``"aborted"``.
    reason : str or None
        Why the run failed or was aborted.
    controller : str
    timeseries : pandas.DataFrame
        Wide table, one row per sample instant: ``time_s`` and one column per channel
        (``T_ref_c``, ``T_set_c``, ``T_jacket_c``, ``T_reactor_c``, ``counts``, ...).
    events : pandas.DataFrame
        ``time_s, level, message``.
    samples : pandas.DataFrame
        Every logged sample, long format ``time_s, channel, value`` (as in the store).
    images : list of Path
        PNG files written.
    cqas : dict
        Ground-truth CQAs of the virtual crystallizer at the end (empty for real hardware).
    profile : ThermocycleProfile or None
    store_path, image_dir : Path or None
    solve_times_s : list of float
        NMPC solve wall times (empty for other controllers).
    store_error : str or None
        Set when the store could not record the run's end (the reason is then printed on
        stderr and kept here).
    """

    run_id: Any
    status: str
    reason: str | None
    controller: str
    timeseries: pd.DataFrame
    events: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["time_s", "channel", "value"]))
    images: list[Path] = field(default_factory=list)
    cqas: dict[str, float] = field(default_factory=dict)
    profile: ThermocycleProfile | None = None
    store_path: Path | None = None
    image_dir: Path | None = None
    solve_times_s: list[float] = field(default_factory=list)
    store_error: str | None = None

    @property
    def n_samples(self) -> int:
        """Number of logged samples (all channels)."""
        return int(len(self.samples))

    @property
    def duration_h(self) -> float:
        """Run time covered by the samples, h (0 when there are none)."""
        if self.timeseries.empty or "time_s" not in self.timeseries:
            return 0.0
        return float(self.timeseries["time_s"].max()) / 3600.0

    def summary(self) -> str:
        """One line: status, reason, and how far the run got."""
        head = f"run {self.run_id if self.run_id is not None else '(not stored)'} ({self.controller}): {self.status}"
        if self.reason:
            head += f": {self.reason}"
        if self.n_samples == 0:
            return head + " (before its first sample)"
        return head + f" after {self.n_samples} samples over {self.duration_h:.2f} h"

    def metrics(self) -> dict[str, float]:
        """:func:`tracking_metrics` of this run (needs a recipe)."""
        if self.profile is None:
            raise ConfigError("this run had no recipe; tracking metrics need one")
        return tracking_metrics(self.timeseries, self.profile)

    def plot(self, path: str | Path) -> Path:
        """Save temperatures over time as a PNG, with one more panel for each measured
        quantity the run logged: particle counts, solute concentration, transmissivity.

        Raises
        ------
        ConfigError
            The run has no samples (it ended before its first reading).
        """
        if self.n_samples == 0:
            raise ConfigError(f"{self.summary()}: nothing to plot")
        from crystalloop._plotting import pyplot, save_figure

        plt = pyplot()
        ts = self.timeseries
        extra = [(col, label, style) for col, label, style in (
            ("counts", "counts", "C2-"), ("conc_kg_kg", "concentration (kg/kg)", "C4-"),
            ("transmissivity_pct", "transmissivity (%)", "C5-")) if col in ts and ts[col].notna().any()]
        fig, axes = plt.subplots(1 + len(extra), 1, figsize=(9, 4 + 2 * len(extra)), sharex=True, squeeze=False)
        ax = axes[0, 0]
        t_h = ts["time_s"] / 3600.0
        styles = {"T_ref_c": ("recipe", "k--"), "T_set_c": ("setpoint", "C0-"),
                  "T_jacket_c": ("jacket", "C1-"), "T_reactor_c": ("reactor", "C3-")}
        for col, (label, st) in styles.items():
            if col in ts and ts[col].notna().any():
                ax.plot(t_h, ts[col], st, lw=1.2, label=label)
        ax.set_ylabel("temperature (°C)")
        ax.legend(loc="best", fontsize=8)
        ax.set_title(f"run {self.run_id if self.run_id is not None else ''} ({self.controller}): {self.status}")
        for k, (col, label, style) in enumerate(extra, start=1):
            m = ts[col].notna()
            axes[k, 0].plot(t_h[m], ts.loc[m, col], style, lw=1)
            axes[k, 0].set_ylabel(label)
        axes[-1, 0].set_xlabel("time (h)")
        fig.tight_layout()
        return save_figure(fig, path, dpi=110)
