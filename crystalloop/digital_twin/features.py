"""Features with physical meaning, computed from a thermocycle profile and (optionally) a solubility curve.

The seed-003 twin learns from the raw recipe vector (c0, seed loading, start temperature, and per
segment target, rate and hold). With 20–40 runs that vector is a poor basis: two recipes that
make the same crystals can look far apart (a cycle split into two segments, a hold moved), and
what drives nucleation, growth, agglomeration and dissolution is not any single entry but how fast
the profile generates supersaturation, how much of the product each heating dissolves, and how
long the batch spends where. :class:`ProfileFeatures` computes such quantities, vectorized over
rows (the optimizer evaluates whole generations at once):

Profile only (no solubility needed)
    ``batch_time_min``, ``cooling_time_min``, ``heating_time_min``, ``hold_time_min``,
    ``T_min_c``, ``T_final_c``, ``T_top_c`` (highest heating target, or the start if none),
    ``heat_amplitude_sum_c`` and ``heat_amplitude_max_c`` (°C re-heated per cycle),
    ``cool_rate_first_c_min``, ``cool_rate_last_c_min``, ``cool_rate_mean_c_min``
    (cooling ΔT / cooling time), ``cool_rate_min_c_min``, ``cooling_span_c`` (Σ cooling ΔT).

With a solubility curve ``c*(T)`` (mg/g solvent, T in °C)
    ``T_sat_c`` (saturation temperature of c0), ``time_supersat_min`` (time the reactor spends
    below T_sat), ``undercooling_integral_c_h`` (∫ max(0, T_sat − T) dt, a supersaturation–time
    integral that needs no kinetics), ``undercooling_start_c`` (T_sat − start),
    ``yield_theoretical`` (1 − c*(T_final)/c0), ``supersat_gen_first``, ``supersat_gen_max``
    and ``supersat_gen_mean`` (rate at which cooling lowers c*, relative to c0, per hour: the
    driving force the crystals must consume), ``dissolved_frac_max`` / ``dissolved_frac_sum`` /
    ``dissolved_frac_first`` (fraction of the crystal mass present at the bottom of each cycle
    that the heating to its top can dissolve at equilibrium), ``full_dissolution`` (1 if a
    heating reaches the saturation temperature of everything crystallized so far: the batch
    loses its seeds) and ``heat_above_sat_c`` (how far the highest heating goes above T_sat).

The raw recipe scalars (``c0_mg_g``, ``seed_loading``, ``t_start_c``, ``n_cycles``) are kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from crystalloop.errors import ConfigError, SchemaError
from crystalloop.profiles import feature_names as profile_feature_names

__all__ = ["SolubilityCurve", "ProfileFeatures", "profile_features", "PROFILE_FEATURES", "SOLUBILITY_FEATURES"]

PROFILE_FEATURES = (
    "c0_mg_g", "seed_loading", "t_start_c", "n_cycles",
    "batch_time_min", "cooling_time_min", "heating_time_min", "hold_time_min",
    "T_min_c", "T_final_c", "T_top_c", "heat_amplitude_sum_c", "heat_amplitude_max_c",
    "cool_rate_first_c_min", "cool_rate_last_c_min", "cool_rate_mean_c_min", "cool_rate_min_c_min",
    "cooling_span_c",
)
SOLUBILITY_FEATURES = (
    "T_sat_c", "time_supersat_min", "undercooling_integral_c_h", "undercooling_start_c", "yield_theoretical",
    "supersat_gen_first", "supersat_gen_max", "supersat_gen_mean",
    "dissolved_frac_max", "dissolved_frac_sum", "dissolved_frac_first", "full_dissolution",
    "heat_above_sat_c",
)


@dataclass(frozen=True)
class SolubilityCurve:
    """Solubility ``c*(T)`` in mg solute per g solvent, ``T`` in °C.

    Either a polynomial ``Σ a_k T^k`` (``coefficients``) or a table of measured points
    (``table_t_c``, ``table_mg_g``: e.g. clear points from the vision sequence analysis),
    interpolated monotonically (PCHIP) and extrapolated linearly from the end slopes.

    Parameters
    ----------
    coefficients : sequence of float
        Polynomial coefficients ``a0, a1, ...`` (mg/g, T in °C).
    table_t_c, table_mg_g : sequence of float
        Temperatures (°C, strictly increasing) and solubilities (mg/g, increasing).

    Examples
    --------
    >>> s = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))
    >>> round(float(s(50.0)), 2), round(float(s.saturation_temperature(45.0)), 2)
    (45.07, 49.94)
    """

    coefficients: tuple[float, ...] = ()
    table_t_c: tuple[float, ...] = ()
    table_mg_g: tuple[float, ...] = ()
    _grid: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficients", tuple(float(a) for a in self.coefficients))
        object.__setattr__(self, "table_t_c", tuple(float(a) for a in self.table_t_c))
        object.__setattr__(self, "table_mg_g", tuple(float(a) for a in self.table_mg_g))
        if bool(self.coefficients) == bool(self.table_t_c):
            raise ConfigError("a solubility curve needs either coefficients (mg/g, T in °C) or a table "
                              "(table_t_c, table_mg_g), not both or neither")
        if self.table_t_c:
            t, c = np.asarray(self.table_t_c), np.asarray(self.table_mg_g)
            if t.size != c.size or t.size < 2:
                raise ConfigError(f"solubility table needs >= 2 points with one solubility per temperature; "
                                  f"got {t.size} temperatures and {c.size} solubilities")
            if np.any(np.diff(t) <= 0) or np.any(np.diff(c) <= 0) or not np.all(np.isfinite(c)) or c.min() <= 0:
                raise ConfigError("solubility table must have strictly increasing temperatures and strictly "
                                  f"increasing, positive solubilities; got T={list(t)}, c*={list(c)}")
        # a fine grid for the inverse (saturation temperature)
        T = np.linspace(-40.0, 160.0, 4001)
        object.__setattr__(self, "_grid", (T, self(T)))

    def __call__(self, T_c: np.ndarray | float) -> np.ndarray:
        T = np.asarray(T_c, dtype=float)
        if self.coefficients:
            acc = np.zeros_like(T)
            for a in reversed(self.coefficients):
                acc = acc * T + a
            return acc
        from scipy.interpolate import PchipInterpolator

        t, c = np.asarray(self.table_t_c), np.asarray(self.table_mg_g)
        f = PchipInterpolator(t, c, extrapolate=False)
        out = f(T)
        lo_slope = (c[1] - c[0]) / (t[1] - t[0])
        hi_slope = (c[-1] - c[-2]) / (t[-1] - t[-2])
        out = np.where(T < t[0], c[0] + lo_slope * (T - t[0]), out)
        out = np.where(T > t[-1], c[-1] + hi_slope * (T - t[-1]), out)
        return out

    def saturation_temperature(self, c_mg_g: np.ndarray | float) -> np.ndarray:
        """Temperature (°C) at which ``c_mg_g`` is saturated (the curve inverted on -40..160 °C)."""
        T, c = self._grid
        keep = np.concatenate([[True], np.diff(c) > 0])  # monotone part of the curve
        return np.interp(np.asarray(c_mg_g, dtype=float), c[keep], T[keep])

    def to_dict(self) -> dict[str, Any]:
        if self.coefficients:
            return {"unit": "mg/g solvent, T in C", "coefficients": list(self.coefficients)}
        return {"unit": "mg/g solvent, T in C", "table_t_c": list(self.table_t_c), "table_mg_g": list(self.table_mg_g)}

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "solubility") -> SolubilityCurve:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping with 'coefficients' or 'table_t_c'/'table_mg_g', "
                              f"got {type(d).__name__}")
        unknown = set(d) - {"unit", "coefficients", "table_t_c", "table_mg_g"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; expected coefficients or "
                              "table_t_c/table_mg_g (mg/g solvent, T in °C)")
        try:
            return cls(tuple(d.get("coefficients", ())), tuple(d.get("table_t_c", ())), tuple(d.get("table_mg_g", ())))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> SolubilityCurve:
        """Read a curve from YAML/JSON (``coefficients`` or ``table_t_c``/``table_mg_g``) or a CSV
        with columns ``T_c`` and ``solubility_mg_g``."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"solubility file {p} does not exist or is not a file")
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p)
            missing = {"T_c", "solubility_mg_g"} - set(df.columns)
            if missing:
                raise SchemaError(f"{p}: missing column(s) {sorted(missing)}; expected T_c and solubility_mg_g")
            df = df.sort_values("T_c")
            return cls(table_t_c=tuple(df["T_c"]), table_mg_g=tuple(df["solubility_mg_g"]))
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            d = json.loads(text)
        else:
            import yaml

            d = yaml.safe_load(text)
        return cls.from_dict(d, source=str(p))


def _columns(X: np.ndarray | pd.DataFrame, max_cycles: int) -> dict[str, np.ndarray]:
    names = profile_feature_names(max_cycles)
    if isinstance(X, pd.DataFrame):
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise SchemaError(f"profile features need the recipe columns {missing[:6]}{'...' if len(missing) > 6 else ''}")
        return {n: X[n].to_numpy(dtype=float) for n in names}
    X = np.atleast_2d(np.asarray(X, dtype=float))
    if X.shape[1] != len(names):
        raise SchemaError(f"profile features need {len(names)} recipe columns ({names[0]} .. {names[-1]}) for "
                          f"max_cycles={max_cycles}; got {X.shape[1]}")
    return {n: X[:, i] for i, n in enumerate(names)}


def profile_features(X: np.ndarray | pd.DataFrame, *, solubility: SolubilityCurve | None = None,
                     max_cycles: int = 4) -> pd.DataFrame:
    """Physical features of recipe rows (see the module docstring).

    Parameters
    ----------
    X : ndarray or DataFrame, shape (n, 5 + 3 (2 max_cycles + 1))
        Recipe feature vectors (:func:`crystalloop.profiles.feature_names` order).
    solubility : SolubilityCurve, optional
        ``c*(T)`` in mg/g solvent; without it only the profile features are computed.
    max_cycles : int

    Returns
    -------
    DataFrame
        One row per recipe, columns :data:`PROFILE_FEATURES` (+ :data:`SOLUBILITY_FEATURES`).
    """
    col = _columns(X, max_cycles)
    n = col["c0_mg_g"].size
    slots = 2 * max_cycles + 1
    nseg = np.rint(col["n_segments"]).astype(int)
    c0, t0 = col["c0_mg_g"], col["t_start_c"]
    prev = t0.copy()
    z = np.zeros(n)
    cool_t, heat_t, hold_t, span = z.copy(), z.copy(), z.copy(), z.copy()
    tmin, ttop = t0.copy(), t0.copy()
    amp_sum, amp_max = z.copy(), z.copy()
    first_rate = np.full(n, np.nan)
    last_rate = np.full(n, np.nan)
    min_rate = np.full(n, np.inf)
    # solubility-based accumulators
    sol = solubility
    if sol is not None:
        tsat = sol.saturation_temperature(c0)
        time_below, uc_int = z.copy(), z.copy()
        gen_first = np.full(n, np.nan)
        gen_max, gen_sum, gen_time = z.copy(), z.copy(), z.copy()
        dfrac_max, dfrac_sum = z.copy(), z.copy()
        dfrac_first = np.full(n, np.nan)
        full = z.copy()
    for k in range(1, slots + 1):
        used = k <= nseg
        T, r, h = col[f"T{k}_c"], col[f"rate{k}_c_min"], col[f"hold{k}_min"]
        dT = np.where(used, T - prev, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dur = np.where(used & (r > 0), np.abs(dT) / np.where(r > 0, r, 1.0), 0.0)
        cooling = used & (dT < 0)
        heating = used & (dT > 0)
        cool_t += np.where(cooling, dur, 0.0)
        heat_t += np.where(heating, dur, 0.0)
        hold_t += np.where(used, h, 0.0)
        span += np.where(cooling, -dT, 0.0)
        amp_sum += np.where(heating, dT, 0.0)
        amp_max = np.maximum(amp_max, np.where(heating, dT, 0.0))
        tmin = np.where(used, np.minimum(tmin, T), tmin)
        ttop = np.where(heating, np.maximum(ttop, T), ttop)
        first_rate = np.where(cooling & np.isnan(first_rate), r, first_rate)
        last_rate = np.where(cooling, r, last_rate)
        min_rate = np.where(cooling, np.minimum(min_rate, r), min_rate)
        if sol is not None:
            cs_prev, cs_T = sol(prev), sol(T)
            # time below T_sat(c0) in this segment (ramp part by linear interpolation, hold at T)
            lo, hi = np.minimum(prev, T), np.maximum(prev, T)
            with np.errstate(divide="ignore", invalid="ignore"):
                f_below = np.where(hi > lo, np.clip((tsat - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0),
                                   (T < tsat).astype(float))
            d_below = np.where(used, dur * f_below, 0.0)
            # ∫ max(0, T_sat - T) dt over the ramp: mean undercooling of its part below T_sat
            t_lo = np.minimum(hi, tsat)
            uc = np.where(used, d_below * np.maximum(tsat - 0.5 * (lo + t_lo), 0.0), 0.0)
            uc += np.where(used & (T < tsat), h * (tsat - T), 0.0)
            time_below += d_below + np.where(used & (T < tsat), h, 0.0)
            uc_int += uc
            # supersaturation generated by cooling: the drop of c* below c0, per hour below T_sat
            drop = np.minimum(cs_prev, c0) - np.minimum(cs_T, c0)
            with np.errstate(divide="ignore", invalid="ignore"):
                gen = np.where(cooling & (d_below > 0), drop / c0 / np.where(d_below > 0, d_below, 1.0) * 60.0, 0.0)
            dur = np.where(cooling, d_below, dur)  # generation is averaged over the time below T_sat
            gen_first = np.where(cooling & np.isnan(gen_first), gen, gen_first)
            gen_max = np.maximum(gen_max, gen)
            gen_sum += np.where(cooling, gen * dur, 0.0)
            gen_time += np.where(cooling, dur, 0.0)
            # heating from prev (the bottom) to T (the top): crystal mass present at the bottom is
            # c0 - c*(bottom) (equilibrium); heating can dissolve c*(top) - c*(bottom) of it
            present = c0 - cs_prev
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(heating & (present > 0), np.clip((cs_T - cs_prev) / np.where(present > 0, present, 1.0), 0.0, 1.0), 0.0)
            dfrac_max = np.maximum(dfrac_max, frac)
            dfrac_sum += frac
            dfrac_first = np.where(heating & np.isnan(dfrac_first), frac, dfrac_first)
            full = np.maximum(full, np.where(heating & (frac >= 1.0 - 1e-9), 1.0, 0.0))
        prev = np.where(used, T, prev)
    out = {
        "c0_mg_g": c0, "seed_loading": col["seed_loading"], "t_start_c": t0, "n_cycles": col["n_cycles"],
        "batch_time_min": cool_t + heat_t + hold_t, "cooling_time_min": cool_t, "heating_time_min": heat_t,
        "hold_time_min": hold_t, "T_min_c": tmin, "T_final_c": prev, "T_top_c": ttop,
        "heat_amplitude_sum_c": amp_sum, "heat_amplitude_max_c": amp_max,
        "cool_rate_first_c_min": np.nan_to_num(first_rate), "cool_rate_last_c_min": np.nan_to_num(last_rate),
        "cool_rate_mean_c_min": np.divide(span, cool_t, out=np.zeros(n), where=cool_t > 0),
        "cool_rate_min_c_min": np.where(np.isfinite(min_rate), min_rate, 0.0),
        "cooling_span_c": span,
    }
    if sol is not None:
        out.update({
            "T_sat_c": tsat,
            "time_supersat_min": time_below,
            "undercooling_integral_c_h": uc_int / 60.0,
            "undercooling_start_c": tsat - t0,
            "yield_theoretical": np.clip(1.0 - sol(prev) / c0, 0.0, 1.0),
            "supersat_gen_first": np.nan_to_num(gen_first),
            "supersat_gen_max": gen_max,
            "supersat_gen_mean": np.divide(gen_sum, gen_time, out=np.zeros(n), where=gen_time > 0),
            "dissolved_frac_max": dfrac_max, "dissolved_frac_sum": dfrac_sum,
            "dissolved_frac_first": np.nan_to_num(dfrac_first), "full_dissolution": full,
            "heat_above_sat_c": np.maximum(ttop - tsat, 0.0) * (col["n_cycles"] > 0),
        })
    return pd.DataFrame(out)


class ProfileFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: recipe vectors -> :func:`profile_features`.

    Parameters
    ----------
    solubility : SolubilityCurve or dict, optional
        ``c*(T)`` (mg/g solvent, T in °C); a dict is read with :meth:`SolubilityCurve.from_dict`
        (so the transformer's parameters are JSON, for model folders without pickle).
    max_cycles : int
        Cycle slots of the recipe vectors.
    columns : sequence of str, optional
        Keep only these output features (default: all).

    Attributes
    ----------
    feature_names_out_ : list of str
    n_features_in_ : int
    """

    def __init__(self, solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4,
                 columns: Sequence[str] | None = None) -> None:
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.columns = columns

    def _curve(self) -> SolubilityCurve | None:
        s = self.solubility
        if s is None or isinstance(s, SolubilityCurve):
            return s
        return SolubilityCurve.from_dict(s)

    def fit(self, X, y=None) -> ProfileFeatures:
        F = profile_features(X, solubility=self._curve(), max_cycles=self.max_cycles)
        names = list(F.columns)
        if self.columns is not None:
            bad = [c for c in self.columns if c not in names]
            if bad:
                raise ConfigError(f"unknown profile feature(s) {bad}; available: {names}")
            names = list(self.columns)
        self.feature_names_out_ = names
        self.n_features_in_ = len(profile_feature_names(self.max_cycles))
        return self

    def transform(self, X) -> np.ndarray:
        F = profile_features(X, solubility=self._curve(), max_cycles=self.max_cycles)
        return F[self.feature_names_out_].to_numpy(dtype=float)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)
