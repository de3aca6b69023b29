"""Where a twin can be trusted: distance to the measured recipes, profile structures run, dissolution.

A twin fitted on 20–40 runs knows the neighbourhood of those runs. NSGA-II left alone pushes to
the corners of the design space, where the twin extrapolates and the plant disagrees (issue 16:
a designed recipe heated to 64.6 °C and dissolved its product; the twin had never seen a run do
that). :class:`ValidityDomain` gives the design three checks, each a pymoo inequality ``g <= 0``:

* **distance** to the nearest measured recipe with the same number of segments, in units of the
  design bounds (RMS over the recipe's active variables: ``c0``, seed loading, start temperature
  and each used segment's temperature, rate and hold, each divided by the width of its bound).
  ``max_distance="auto"`` allows as far as the measured recipes lie from each other (the 90th
  percentile of their leave-one-out nearest-neighbour distances);
* **structure**: a recipe whose number of segments no measured run had is outside the domain;
* **dissolution**: a recipe that heats above the saturation temperature of all its solute
  (``c*(T) >= c0 (1 + seed loading)``: dissolved solute plus seeds, so every crystal dissolves)
  needs a solubility curve to be judged; without one, heating back to the recipe's own start
  temperature (where the seeds were charged into an undersaturated solution) stands in for it.
  Either is allowed only as far as a measured run of the same structure went: a recipe may heat
  above its dissolution temperature by at most the largest excess among the measured recipes
  with its number of segments (0 °C when none of them did).

:meth:`ValidityDomain.table` gives the same quantities per recipe, for the designed front.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, OptimizationError
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds, feature_names

__all__ = ["ValidityDomain", "solubility_polynomial", "solubility_table", "Solubility"]

#: c*(T): temperature in °C (array) -> solubility in mg solute / g solvent (array)
Solubility = Callable[[np.ndarray], np.ndarray]

_FALLBACK_DISTANCE = 0.15


def solubility_polynomial(coefficients: Sequence[float], *, unit: Literal["kg/kg", "mg/g"] = "kg/kg") -> Solubility:
    """``c*(T) = a0 + a1 T + a2 T² + ...`` with ``T`` in °C, as a function returning mg/g.

    Examples
    --------
    >>> c = solubility_polynomial([8.0e-3, 2.83e-4, 9.17e-6])  # the default kinetic set, kg/kg
    >>> round(float(c(50.0)), 2)
    45.07
    """
    a = np.asarray([float(v) for v in coefficients])
    if a.ndim != 1 or len(a) == 0 or not np.isfinite(a).all():
        raise ConfigError(f"solubility coefficients must be finite numbers a0, a1, ...; got {list(coefficients)!r}")
    if unit not in ("kg/kg", "mg/g"):
        raise ConfigError(f"solubility unit must be 'kg/kg' or 'mg/g', got {unit!r}")
    scale = 1000.0 if unit == "kg/kg" else 1.0

    def c_star(T_c):
        return scale * np.polynomial.polynomial.polyval(np.asarray(T_c, dtype=float), a)

    return c_star


def solubility_table(temperature_c: Sequence[float], solubility_mg_g: Sequence[float]) -> Solubility:
    """Solubility from measured points (e.g. clear points), linear between them and beyond the ends."""
    T = np.asarray(temperature_c, dtype=float)
    c = np.asarray(solubility_mg_g, dtype=float)
    if T.ndim != 1 or T.shape != c.shape or len(T) < 2 or not (np.isfinite(T).all() and np.isfinite(c).all()):
        raise ConfigError(f"a solubility table needs >= 2 finite (T °C, c mg/g) pairs; got {len(T)} temperatures "
                          f"and {len(c)} solubilities")
    order = np.argsort(T)
    T, c = T[order], c[order]
    if np.any(np.diff(T) <= 0):
        raise ConfigError(f"solubility table temperatures must be distinct, got {T.tolist()}")

    def c_star(T_c):
        x = np.asarray(T_c, dtype=float)
        lo = c[0] + (x - T[0]) * (c[1] - c[0]) / (T[1] - T[0])
        hi = c[-1] + (x - T[-1]) * (c[-1] - c[-2]) / (T[-1] - T[-2])
        return np.where(x < T[0], lo, np.where(x > T[-1], hi, np.interp(x, T, c)))

    return c_star


def _slots(F: np.ndarray, max_cycles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Temperatures, rates and holds of every segment slot, shape (n, 2 max_cycles + 1) each."""
    S = 2 * max_cycles + 1
    block = F[:, 5:5 + 3 * S].reshape(len(F), S, 3)
    return block[:, :, 0], block[:, :, 1], block[:, :, 2]


@dataclass
class ValidityDomain:
    """The measured recipes a twin learned from, and the checks that keep a design near them.

    Parameters
    ----------
    features : ndarray, shape (n_runs, n_features)
        Profile feature vectors of the measured recipes (``feature_names(max_cycles)`` order).
    max_cycles : int
    bounds : ProfileBounds
        Design bounds; their widths scale the distance.
    run_ids : list of str, optional
    solubility : callable, optional
        ``c*(T °C) -> mg/g`` (:func:`solubility_polynomial`, :func:`solubility_table`).
    max_distance : float or "auto" or None
        Largest allowed distance to the nearest same-structure measured recipe (fraction of the
        bound widths, RMS); ``None`` = no distance limit.

    Attributes
    ----------
    max_distance_ : float or None
        The limit in force (resolved from ``"auto"``).
    structures_seen_ : list of int
        Numbers of segments of the measured recipes.
    dissolving_seen_ : bool
        Whether a measured recipe heats above its dissolution temperature.
    excess_allowed_c_ : dict
        Number of segments → °C a recipe may heat above its dissolution temperature (the largest
        excess among measured recipes of that structure, at least 0).
    """

    features: np.ndarray
    max_cycles: int
    bounds: ProfileBounds = DEFAULT_BOUNDS
    run_ids: list[str] = field(default_factory=list)
    solubility: Solubility | None = None
    max_distance: float | str | None = "auto"

    def __post_init__(self) -> None:
        F = np.atleast_2d(np.asarray(self.features, dtype=float))
        fn = feature_names(int(self.max_cycles))
        if F.shape[1] != len(fn) or len(F) == 0:
            raise OptimizationError(f"the measured recipes have shape {F.shape}; expected (n >= 1, {len(fn)}) "
                                    f"profile features (feature_names({self.max_cycles}))")
        self.features = F
        if not self.run_ids:
            self.run_ids = [f"run {i + 1}" for i in range(len(F))]
        self.structures_seen_ = sorted({int(v) for v in np.rint(F[:, 3])})
        ex = self.peak_excess_c(F)
        self.dissolving_seen_ = bool(np.any(ex >= 0))
        nseg = np.rint(F[:, 3]).astype(int)
        self.excess_allowed_c_ = {int(s): float(max(0.0, ex[nseg == s].max())) for s in self.structures_seen_}
        if self.max_distance == "auto":
            d = self._loo_distances()
            d = d[np.isfinite(d)]
            self.max_distance_ = float(np.quantile(d, 0.9)) if len(d) else _FALLBACK_DISTANCE
        elif self.max_distance is None:
            self.max_distance_ = None
        else:
            v = float(self.max_distance)
            if not (np.isfinite(v) and v > 0):
                raise OptimizationError(f"max_distance must be > 0 (fraction of the bound widths), 'auto' or None; "
                                        f"got {self.max_distance!r}")
            self.max_distance_ = v

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, max_cycles: int, **kw) -> ValidityDomain:
        """From a DoE-like table with the profile feature columns (and optionally ``run_id``)."""
        fn = feature_names(int(max_cycles))
        missing = [c for c in fn if c not in frame.columns]
        if missing:
            raise OptimizationError(f"the measured recipes lack feature column(s) {missing[:5]} "
                                    f"(feature_names({max_cycles}))")
        ids = frame["run_id"].astype(str).tolist() if "run_id" in frame.columns else []
        return cls(frame[fn].to_numpy(dtype=float), int(max_cycles), run_ids=ids, **kw)

    # ------------------------------------------------------------------ distance
    def _scaled(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled active variables (n, 3 + 3 S) and their mask (slots past n_segments are inactive)."""
        b = self.bounds
        T, r, h = _slots(F, int(self.max_cycles))
        S = T.shape[1]
        w_T = max(b.temperature_c[1] - b.temperature_c[0], 1e-9)
        w_c = max(b.cooling_rate_c_min[1] - b.cooling_rate_c_min[0], 1e-9)
        w_h = max(b.heating_rate_c_min[1] - b.heating_rate_c_min[0], 1e-9)
        w_hold = max(b.hold_min[1] - b.hold_min[0], 1e-9)
        w_rate = np.where(np.arange(S) % 2 == 0, w_c, w_h)
        head = np.column_stack([F[:, 0] / max(b.c0_mg_g[1] - b.c0_mg_g[0], 1e-9),
                                F[:, 1] / max(b.seed_loading[1] - b.seed_loading[0], 1e-9),
                                F[:, 2] / w_T])
        Z = np.hstack([head, T / w_T, r / w_rate, h / w_hold])
        active = np.arange(S)[None, :] < np.rint(F[:, 3])[:, None]
        mask = np.hstack([np.ones((len(F), 3), dtype=bool), active, active, active])
        return Z, mask

    def distance(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance of each recipe to the nearest measured recipe with the same number of segments.

        Returns
        -------
        distance : ndarray, shape (n,)
            RMS over the active variables of the differences divided by the bound widths;
            ``inf`` when no measured recipe has that number of segments.
        nearest : ndarray of int, shape (n,)
            Index of that measured recipe (-1 when none).
        """
        F = np.atleast_2d(np.asarray(F, dtype=float))
        Z, mask = self._scaled(F)
        D, dmask = self._scaled(self.features)
        nseg, dseg = np.rint(F[:, 3]), np.rint(self.features[:, 3])
        dist = np.full(len(F), np.inf)
        near = np.full(len(F), -1)
        for s in np.unique(nseg):
            rows, cand = np.flatnonzero(nseg == s), np.flatnonzero(dseg == s)
            if len(cand) == 0:
                continue
            m = mask[rows[0]]
            diff = Z[rows][:, None, m] - D[cand][None, :, m]
            d = np.sqrt(np.mean(diff ** 2, axis=2))
            j = np.argmin(d, axis=1)
            dist[rows] = d[np.arange(len(rows)), j]
            near[rows] = cand[j]
        return dist, near

    def _loo_distances(self) -> np.ndarray:
        out = np.full(len(self.features), np.inf)
        for i in range(len(self.features)):
            others = np.delete(np.arange(len(self.features)), i)
            if len(others) == 0:
                continue
            sub = ValidityDomain.__new__(ValidityDomain)
            sub.features, sub.max_cycles, sub.bounds = self.features[others], self.max_cycles, self.bounds
            out[i] = sub.distance(self.features[i:i + 1])[0][0]
        return out

    # ------------------------------------------------------------------ dissolution
    def peak_excess_c(self, F: np.ndarray) -> np.ndarray:
        """°C by which each recipe's hottest heating target exceeds its dissolution temperature
        (>= 0: the product dissolves); ``-inf`` for recipes without heating.

        With a solubility curve the dissolution temperature solves ``c*(T) = c0 (1 + seed loading)``
        (bisection on the bound range); without one it is the recipe's start temperature.
        """
        F = np.atleast_2d(np.asarray(F, dtype=float))
        T, _, _ = _slots(F, int(self.max_cycles))
        S = T.shape[1]
        heating = (np.arange(S)[None, :] % 2 == 1) & (np.arange(S)[None, :] < np.rint(F[:, 3])[:, None])
        peak = np.where(heating, T, -np.inf).max(axis=1)
        return peak - self.dissolution_temperature_c(F)

    def dissolution_temperature_c(self, F: np.ndarray) -> np.ndarray:
        """Temperature (°C) at which all solute of each recipe (dissolved + seeds) is dissolved."""
        F = np.atleast_2d(np.asarray(F, dtype=float))
        if self.solubility is None:
            return F[:, 2].copy()
        total = F[:, 0] * (1.0 + F[:, 1])
        lo = np.full(len(F), self.bounds.temperature_c[0] - 50.0)
        hi = np.full(len(F), self.bounds.temperature_c[1] + 50.0)
        for _ in range(50):  # c*(T) increases with T: bisection, vectorized
            mid = 0.5 * (lo + hi)
            above = np.asarray(self.solubility(mid), dtype=float) >= total
            hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    # ------------------------------------------------------------------ constraints and report
    def labels(self) -> list[str]:
        """One label per column of :meth:`constraints`."""
        out = []
        if self.max_distance_ is not None:
            out.append(f"distance to the nearest measured recipe <= {self.max_distance_:.3g} (fraction of the bounds)")
        out.append(f"number of segments among those measured {self.structures_seen_}")
        out.append("heating above the saturation temperature of c0 (1 + seed loading) no further than measured "
                   "runs of the same structure" if self.solubility is not None else
                   "heating above the start temperature (no solubility curve given) no further than measured "
                   "runs of the same structure")
        return out

    def _excess_allowed(self, F: np.ndarray) -> np.ndarray:
        return np.array([self.excess_allowed_c_.get(int(s), 0.0) for s in np.rint(F[:, 3])])

    def constraints(self, F: np.ndarray) -> np.ndarray:
        """``G <= 0`` columns (see :meth:`labels`), shape (n, n_constraints)."""
        F = np.atleast_2d(np.asarray(F, dtype=float))
        cols = []
        dist, _ = self.distance(F)
        if self.max_distance_ is not None:
            cols.append(np.where(np.isfinite(dist), dist - self.max_distance_, 1.0))
        cols.append(np.where(np.isin(np.rint(F[:, 3]), self.structures_seen_), 0.0, 1.0))
        ex = self.peak_excess_c(F)
        cols.append(np.where(np.isfinite(ex), ex - self._excess_allowed(F), -1.0))
        return np.column_stack(cols)

    def table(self, F: np.ndarray) -> pd.DataFrame:
        """Per recipe: ``distance_to_doe``, ``nearest_run``, ``structure_seen``,
        ``dissolution_temperature_c``, ``heating_peak_excess_c``, ``dissolves``, ``dissolution_seen``
        (no further above the dissolution temperature than a measured run of its structure), ``inside_domain``."""
        F = np.atleast_2d(np.asarray(F, dtype=float))
        dist, near = self.distance(F)
        ex = self.peak_excess_c(F)
        out = pd.DataFrame({
            "distance_to_doe": dist,
            "nearest_run": [self.run_ids[j] if j >= 0 else "" for j in near],
            "structure_seen": np.isin(np.rint(F[:, 3]), self.structures_seen_),
            "dissolution_temperature_c": self.dissolution_temperature_c(F),
            "heating_peak_excess_c": np.where(np.isfinite(ex), ex, np.nan),
            "dissolves": ex >= 0,
            "dissolution_seen": ex <= self._excess_allowed(F),
        })
        out["inside_domain"] = np.all(self.constraints(F) <= 0, axis=1)
        return out
