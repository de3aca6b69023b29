"""Experiment outcomes from time-ordered image sequences (seed 001, "application kinetics").

A sequence is a table with one row per image: ``time_s``, ``T_c`` (the temperature when it was
taken) and a presence signal — the ``object_present`` confidence of a
:class:`~crystalloop.vision.learn.CrystalClassifier`, or the particle count of the classical
pipeline (:func:`sequence_table` builds it from images). From it:

- :func:`detect_events` — debounced appearance (**cloud point**, on cooling) and disappearance
  (**clear point**, on heating) events with their temperatures;
- :func:`induction_time` — first appearance of particles after a reference time (images see
  particles before transmissivity drops);
- :func:`clear_cloud_points` — events of several experiments (vials) at known concentrations,
  optionally extrapolated to zero ramp rate;
- :func:`fit_solubility` — solubility curve (van 't Hoff ``ln c = a + b / T``) through the clear
  points; :func:`metastable_zone_width` — clear minus cloud temperature per concentration;
- :func:`plot_sequence`, :func:`plot_solubility` — PNG figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crystalloop._plotting import pyplot, save_figure
from crystalloop.errors import ConfigError, ModelError, SchemaError

__all__ = [
    "sequence_table",
    "detect_events",
    "induction_time",
    "clear_cloud_points",
    "SolubilityCurve",
    "fit_solubility",
    "metastable_zone_width",
    "plot_sequence",
    "plot_solubility",
]

_K = 273.15


def _tiles(img: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    rows = sorted({*range(0, max(h - size, 0) + 1, size), max(h - size, 0)})
    cols = sorted({*range(0, max(w - size, 0) + 1, size), max(w - size, 0)})
    return [img[r : r + size, c : c + size] for r in rows for c in cols]


def sequence_table(images, times_s, temperatures_c, *, model=None, label: str = "object_present",
                   pixel_size_um: float | None = None, min_particles: int = 1, tile_size: int | None = None) -> pd.DataFrame:
    """Score every image of a sequence for particle presence.

    Parameters
    ----------
    images : sequence of ndarray
    times_s, temperatures_c : sequence of float
        Acquisition time and temperature of each image.
    model : CrystalClassifier, callable or None
        A fitted classifier (``label``'s confidence and tuned threshold are used), a callable
        ``images -> presence probability array``, or None for the classical pipeline
        (:func:`crystalloop.vision.analyze_image`; present when at least ``min_particles``
        in-focus particles are found, needs ``pixel_size_um``).
    tile_size : int, optional
        Classifier only: score square tiles of this size (the classifier's training scale) and
        take the frame's score as the maximum over its tiles, so large probe frames are not
        shrunk to the classifier's input size.

    Returns
    -------
    DataFrame
        ``time_s, T_c, score, present`` (+ ``n_particles`` for the classical path), sorted by time.
    """
    t = np.asarray(times_s, float).ravel()
    T = np.asarray(temperatures_c, float).ravel()
    n = len(images)
    if not (len(t) == len(T) == n) or n == 0:
        raise SchemaError(f"need one time and one temperature per image, got {n} images, {len(t)} times, {len(T)} temperatures")
    out = pd.DataFrame({"time_s": t, "T_c": T})
    if model is None:
        from crystalloop.vision.pipeline import analyze_image

        if pixel_size_um is None:
            raise ConfigError("the classical presence detector needs pixel_size_um")
        counts = []
        for img in images:
            p = analyze_image(np.asarray(img), pixel_size_um=pixel_size_um).particles
            counts.append(int(p["in_focus"].sum()) if len(p) else 0)
        out["n_particles"] = counts
        out["score"] = np.asarray(counts, float)
        out["present"] = out["n_particles"] >= int(min_particles)
    elif hasattr(model, "labels_") and hasattr(model, "thresholds_"):
        if label not in model.labels_:
            raise ModelError(f"label {label!r} is not a label of the classifier; known labels: {model.labels_}")
        j = model.labels_.index(label)
        if tile_size is None:
            out["score"] = model.predict_proba(list(images) if not isinstance(images, np.ndarray) else images)[:, j]
        else:
            if int(tile_size) < 8:
                raise ConfigError(f"tile_size={tile_size}; expected at least 8 px")
            scores = []
            for img in images:
                tiles = _tiles(np.asarray(img), int(tile_size))
                scores.append(float(model.predict_proba(tiles)[:, j].max()))
            out["score"] = scores
        out["present"] = out["score"] >= float(model.thresholds_[j])
    elif callable(model):
        s = np.asarray(model(images), float).ravel()
        if len(s) != n:
            raise ModelError(f"the presence model returned {len(s)} scores for {n} images")
        out["score"] = s
        out["present"] = s >= 0.5
    else:
        raise ConfigError(f"model must be a fitted CrystalClassifier, a callable or None, got {type(model).__name__}")
    return out.sort_values("time_s", kind="stable").reset_index(drop=True)


def _check_seq(table: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise SchemaError(f"expected a DataFrame with columns {list(cols)}, got {type(table).__name__}")
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise SchemaError(f"sequence table lacks column(s) {missing}; it has {list(table.columns)}")
    t = table.sort_values(cols[0], kind="stable").reset_index(drop=True)
    if t[cols[0]].duplicated().any():
        raise SchemaError(f"sequence table has duplicate {cols[0]} values")
    return t


def detect_events(table: pd.DataFrame, *, present: str = "present", time: str = "time_s", temperature: str = "T_c",
                  min_consecutive: int = 2) -> pd.DataFrame:
    """Appearance (cloud) and disappearance (clear) events of a sequence.

    The presence signal is debounced: the state changes only after ``min_consecutive``
    consecutive frames disagree with it (one flickering frame is ignored). The event is dated at
    the first frame of the new state. The sequence starts in the state of its first
    ``min_consecutive`` frames (no event is reported for the start).

    Returns
    -------
    DataFrame
        ``kind`` ("cloud"/"clear"), ``time_s``, ``T_c``, ``direction`` ("cooling", "heating" or
        "hold", from the temperature slope over the frames around the event), ``rate_c_min``.
    """
    t = _check_seq(table, [time, temperature, present])
    k = int(min_consecutive)
    if k < 1:
        raise ConfigError(f"min_consecutive={min_consecutive}; expected ≥ 1")
    p = t[present].astype(bool).to_numpy()
    times = t[time].to_numpy(float)
    temps = t[temperature].to_numpy(float)
    events = []
    if len(p) >= k:
        state = bool(p[:k].mean() >= 0.5)
        run = 0
        for i in range(len(p)):
            run = run + 1 if p[i] != state else 0
            if run >= k:
                j = i - k + 1
                state = not state
                run = 0
                lo, hi = max(j - 2, 0), min(j + 2, len(p) - 1)
                dt = (times[hi] - times[lo]) / 60.0
                rate = (temps[hi] - temps[lo]) / dt if dt > 0 else 0.0
                direction = "cooling" if rate < -1e-3 else "heating" if rate > 1e-3 else "hold"
                events.append({"kind": "cloud" if state else "clear", "time_s": times[j], "T_c": temps[j],
                               "direction": direction, "rate_c_min": rate})
    return pd.DataFrame(events, columns=["kind", "time_s", "T_c", "direction", "rate_c_min"])


def induction_time(table: pd.DataFrame, *, t0_s: float | None = None, present: str = "present",
                   time: str = "time_s", min_consecutive: int = 2) -> float:
    """Time from ``t0_s`` (default: the first frame) to the first debounced appearance of particles.

    Returns NaN when particles never appear, and 0 when they are present from the start.
    """
    t = _check_seq(table, [time, present])
    p = t[present].astype(bool).to_numpy()
    times = t[time].to_numpy(float)
    t0 = float(times[0]) if t0_s is None else float(t0_s)
    k = int(min_consecutive)
    after = times >= t0
    run = 0
    for i in np.flatnonzero(after):
        run = run + 1 if p[i] else 0
        if run >= k:
            return float(times[i - k + 1] - t0)
    return float("nan")


def clear_cloud_points(experiments: Mapping[float, pd.DataFrame] | Sequence[tuple[float, pd.DataFrame]], *,
                       extrapolate_rate: bool = False, min_consecutive: int = 2, **columns) -> pd.DataFrame:
    """Clear points (disappearance on heating) and cloud points (appearance on cooling) of several
    experiments at known concentrations.

    Parameters
    ----------
    experiments : mapping or sequence of (concentration, sequence table)
        Concentration in any basis (kg/kg, mg/g, ...); it is carried through unchanged.
    extrapolate_rate : bool
        When an experiment has ramps at different rates, also report the clear/cloud
        temperatures linearly extrapolated to zero rate (``kind`` = ``clear_0``/``cloud_0``),
        which removes the kinetic and thermal lag.
    **columns
        ``present=``, ``time=``, ``temperature=`` column names.

    Returns
    -------
    DataFrame
        ``concentration, experiment, kind, T_c, time_s, rate_c_min`` — clear points during
        heating and cloud points during cooling only.
    """
    items = list(experiments.items()) if isinstance(experiments, Mapping) else list(experiments)
    if not items:
        raise SchemaError("no experiments given")
    rows = []
    for e, (conc, table) in enumerate(items):
        ev = detect_events(table, min_consecutive=min_consecutive, **columns)
        ok = ((ev["kind"] == "clear") & (ev["direction"] == "heating")) | ((ev["kind"] == "cloud") & (ev["direction"] == "cooling"))
        for r in ev[ok].itertuples(index=False):
            rows.append({"concentration": float(conc), "experiment": e, "kind": r.kind, "T_c": r.T_c,
                         "time_s": r.time_s, "rate_c_min": abs(r.rate_c_min)})
    pts = pd.DataFrame(rows, columns=["concentration", "experiment", "kind", "T_c", "time_s", "rate_c_min"])
    if extrapolate_rate and len(pts):
        extra = []
        for (e, kind), g in pts.groupby(["experiment", "kind"]):
            rates = g["rate_c_min"].round(3)
            if rates.nunique() >= 2:
                slope, icpt = np.polyfit(g["rate_c_min"], g["T_c"], 1)
                extra.append({"concentration": g["concentration"].iloc[0], "experiment": e, "kind": f"{kind}_0",
                              "T_c": float(icpt), "time_s": np.nan, "rate_c_min": 0.0})
        pts = pd.concat([pts, pd.DataFrame(extra, columns=pts.columns)], ignore_index=True)
    return pts


@dataclass(frozen=True)
class SolubilityCurve:
    """Van 't Hoff solubility ``ln c* = a + b / (T + 273.15)`` (T in °C, c in the data's basis)."""

    a: float
    b: float
    r2: float
    n_points: int
    t_range_c: tuple[float, float]

    def csat(self, T_c) -> np.ndarray:
        """Solubility at ``T_c`` (°C)."""
        return np.exp(self.a + self.b / (np.asarray(T_c, float) + _K))

    def t_sat(self, concentration) -> np.ndarray:
        """Saturation temperature (°C) of a solution of ``concentration``."""
        c = np.asarray(concentration, float)
        if np.any(c <= 0):
            raise ConfigError("concentrations must be > 0 for the saturation temperature")
        return self.b / (np.log(c) - self.a) - _K

    @property
    def dissolution_enthalpy_j_mol(self) -> float:
        """Apparent (ideal) enthalpy of dissolution ``-b R``."""
        return float(-self.b * 8.314462618)


def fit_solubility(points: pd.DataFrame, *, kind: str = "clear") -> SolubilityCurve:
    """Fit the van 't Hoff curve through the clear points (``kind="clear_0"`` for the
    zero-rate extrapolations, ``"cloud"`` for the supersolubility curve).

    Needs points at ≥ 2 distinct concentrations.
    """
    if not isinstance(points, pd.DataFrame) or not {"concentration", "kind", "T_c"} <= set(points.columns):
        raise SchemaError("points must be a DataFrame with columns concentration, kind, T_c (see clear_cloud_points)")
    p = points[points["kind"] == kind]
    p = p.groupby("concentration", as_index=False)["T_c"].mean()
    if p["concentration"].nunique() < 2:
        raise ModelError(f"a solubility curve needs {kind} points at ≥ 2 concentrations, got {p['concentration'].nunique()}")
    if (p["concentration"] <= 0).any():
        raise SchemaError("concentrations must be > 0 for a van 't Hoff fit")
    x = 1.0 / (p["T_c"].to_numpy() + _K)
    y = np.log(p["concentration"].to_numpy())
    b, a = np.polyfit(x, y, 1)
    res = y - (a + b * x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((res**2).sum()) / ss if ss > 0 else 1.0
    return SolubilityCurve(float(a), float(b), r2, len(p), (float(p["T_c"].min()), float(p["T_c"].max())))


def metastable_zone_width(points: pd.DataFrame, *, clear: str = "clear", cloud: str = "cloud") -> pd.DataFrame:
    """Per concentration: mean clear and cloud temperatures and MSZW = T_clear − T_cloud (°C)."""
    if not isinstance(points, pd.DataFrame) or not {"concentration", "kind", "T_c"} <= set(points.columns):
        raise SchemaError("points must be a DataFrame with columns concentration, kind, T_c")
    m = points[points["kind"].isin([clear, cloud])].pivot_table(index="concentration", columns="kind", values="T_c", aggfunc="mean")
    for k in (clear, cloud):
        if k not in m.columns:
            m[k] = np.nan
    out = pd.DataFrame({"T_clear_c": m[clear], "T_cloud_c": m[cloud]})
    out["mszw_c"] = out["T_clear_c"] - out["T_cloud_c"]
    return out.reset_index()


def plot_sequence(table: pd.DataFrame, path: str | Path, *, events: pd.DataFrame | None = None,
                  extra: Mapping[str, pd.Series] | None = None, title: str = "image sequence") -> Path:
    """Temperature and presence score over time, with clear/cloud events marked; saved as PNG.

    ``extra`` adds curves on the score axis (e.g. transmissivity scaled to 0–1).
    """
    plt = pyplot()
    t = _check_seq(table, ["time_s", "T_c", "score"])
    ev = detect_events(t) if events is None and "present" in t.columns else events
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(t["time_s"] / 60, t["T_c"], color="tab:red", label="T")
    ax.set_xlabel("time / min")
    ax.set_ylabel("T / °C", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(t["time_s"] / 60, t["score"], ".", ms=3, color="tab:blue", label="presence score")
    for name, s in (extra or {}).items():
        ax2.plot(np.asarray(s.index, float) / 60, s.to_numpy(), lw=1, label=name)
    ax2.set_ylabel("score")
    if ev is not None:
        for r in ev.itertuples(index=False):
            ax.axvline(r.time_s / 60, color="k" if r.kind == "cloud" else "tab:green", ls="--", lw=0.8)
            ax.annotate(f"{r.kind} {r.T_c:.1f}°C", (r.time_s / 60, r.T_c), fontsize=7, rotation=90, va="bottom")
    ax2.legend(loc="upper right", fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_solubility(points: pd.DataFrame, path: str | Path, *, curve: SolubilityCurve | None = None,
                    reference: Callable[[np.ndarray], np.ndarray] | None = None, units: str = "",
                    title: str = "solubility and metastable zone") -> Path:
    """Clear points, cloud points, fitted solubility curve and an optional reference
    ``reference(T_c) -> c*`` (e.g. the simulator's solubility); saved as PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = {"clear": ("o", "tab:green", "clear points"), "cloud": ("s", "tab:blue", "cloud points"),
              "clear_0": ("D", "darkgreen", "clear, rate → 0"), "cloud_0": ("D", "navy", "cloud, rate → 0")}
    for kind, (m, c, lab) in styles.items():
        g = points[points["kind"] == kind]
        if len(g):
            ax.plot(g["T_c"], g["concentration"], m, color=c, label=lab, ms=5, mfc="none" if "_0" not in kind else c)
    lo, hi = float(points["T_c"].min()) - 5, float(points["T_c"].max()) + 5
    T = np.linspace(lo, hi, 200)
    if curve is not None:
        ax.plot(T, curve.csat(T), color="tab:green", label=f"van 't Hoff fit (R² {curve.r2:.3f})")
    if reference is not None:
        ax.plot(T, np.asarray([reference(x) for x in T]), "k--", lw=1, label="reference solubility")
    ax.set_xlabel("T / °C")
    ax.set_ylabel(f"concentration {units}".strip())
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
