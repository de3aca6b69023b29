"""Decision variables of the thermocycle design problem, vectorized.

A :class:`DesignSpace` maps a 2-D array of decision vectors (one row per candidate)
to the twin's feature matrix, batch times, feasibility constraints and
:class:`~crystalloop.profiles.ThermocycleProfile` objects, without building a Python
object per candidate: the optimizer evaluates whole generations at once.

Decision vector layout (names follow :func:`crystalloop.profiles.feature_names`)::

    c0_mg_g, seed_loading, t_start_c, [n_cycles], T1_c .. TS_c, rate1_c_min .. rateS_c_min,
    [hold1_min .. holdS_min]

``S`` is the number of segment slots: ``2 n + 1`` for an ``n``-cycle instance (cool,
heat, ..., final cool) or ``2 n`` when ``final_cooling=False``. In the mixed formulation
``n_cycles`` is itself a variable (rounded to a whole number) and ``S`` covers the
largest number of cycles; slots past a row's own number of segments are unused and
encoded as :meth:`ThermocycleProfile.to_features` encodes them (last temperature
repeated, rate 0, hold 0).

Odd segments cool and even segments heat (the paper's Eqs. 2–4). The space states
this as inequality constraints ``G <= 0`` (:meth:`DesignSpace.alternation_constraints`),
and :meth:`DesignSpace.repair` and :meth:`DesignSpace.sample` produce vectors that
satisfy them, so every candidate the default algorithm evaluates is a valid profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystalloop.errors import InfeasibleError, OptimizationError
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import (
    DEFAULT_BOUNDS,
    ProfileBounds,
    Segment,
    ThermocycleProfile,
    feature_names,
)

__all__ = ["DesignSpace"]



#: numerical slack on the alternation constraints (°C), so that a repaired step of exactly
#: ``min_step_c`` is feasible despite rounding
_STEP_TOL = 1e-6


@dataclass(frozen=True)
class DesignSpace:
    """Decision variables and feasibility of one design instance.

    Parameters
    ----------
    n_cycles : int or (int, int)
        Number of cool–heat cycles of every profile, or ``(low, high)`` for the mixed
        formulation where the number of cycles is a decision variable.
    bounds : ProfileBounds
        Bounds on concentration, seed loading, temperatures, rates and holds
        (DOMAIN.md §1 by default).
    limits : ThermostatLimits, optional
        Thermostat setpoint range (°C) and ramp capability (°C/min)
        (:class:`crystalloop.limits.ThermostatLimits`); they tighten the bounds.
    holds : bool
        Whether each segment's hold time is a decision variable (within
        ``bounds.hold_min``); otherwise every hold is 0 min.
    final_cooling : bool
        Whether each profile ends with a cooling segment after its last heating
        segment (``2 n + 1`` segments, the default) or ends on the last heating (``2 n``).
    min_step_c : float
        Smallest temperature change of a segment, °C (a segment must change the temperature).

    Raises
    ------
    OptimizationError
        Negative or reversed cycle numbers, ``min_step_c <= 0``.
    InfeasibleError
        Bounds and thermostat limits that leave no feasible profile (names both).
    """

    n_cycles: int | tuple[int, int]
    bounds: ProfileBounds = DEFAULT_BOUNDS
    limits: ThermostatLimits | None = None
    holds: bool = False
    final_cooling: bool = True
    min_step_c: float = 1.0

    def __post_init__(self) -> None:
        nc = self.n_cycles
        if isinstance(nc, (tuple, list)):
            if len(nc) != 2:
                raise OptimizationError(f"n_cycles range must be (low, high), got {nc!r}")
            lo, hi = (int(v) for v in nc)
            if lo != nc[0] or hi != nc[1] or lo < 0 or lo > hi:
                raise OptimizationError(
                    f"n_cycles range must be whole numbers 0 <= low <= high, got {tuple(nc)!r}"
                )
            object.__setattr__(self, "n_cycles", (lo, hi) if lo < hi else lo)
        else:
            if int(nc) != nc or nc < 0:
                raise OptimizationError(f"n_cycles must be a whole number >= 0, got {nc!r}")
            object.__setattr__(self, "n_cycles", int(nc))
        if self.max_n_cycles > self.bounds.max_cycles:
            raise OptimizationError(
                f"{self.max_n_cycles} cycles requested but the bounds allow at most "
                f"max_cycles={self.bounds.max_cycles}"
            )
        if not (np.isfinite(self.min_step_c) and self.min_step_c > 0):
            raise OptimizationError(f"min_step_c must be > 0 °C, got {self.min_step_c}")
        if self.limits is not None and not isinstance(self.limits, ThermostatLimits):
            raise OptimizationError(
                f"limits must be a crystalloop.limits.ThermostatLimits (setpoint range °C, ramp °C/min), "
                f"got {type(self.limits).__name__}"
            )
        self._check_box()

    # ------------------------------------------------------------------ structure
    @property
    def mixed(self) -> bool:
        """Whether the number of cycles is a decision variable."""
        return isinstance(self.n_cycles, tuple)

    @property
    def min_n_cycles(self) -> int:
        return self.n_cycles[0] if self.mixed else self.n_cycles

    @property
    def max_n_cycles(self) -> int:
        return self.n_cycles[1] if self.mixed else self.n_cycles

    @property
    def label(self) -> str:
        """Instance label: ``"2 cycles"`` or ``"1-4 cycles (mixed)"``."""
        if self.mixed:
            return f"{self.min_n_cycles}-{self.max_n_cycles} cycles (mixed)"
        return f"{self.n_cycles} cycle" + ("" if self.n_cycles == 1 else "s")

    def _n_seg(self, n_cycles: np.ndarray | int) -> np.ndarray | int:
        n = np.asarray(n_cycles)
        seg = 2 * n + (1 if self.final_cooling else 0)
        out = np.maximum(seg, 1)  # 0 cycles: one linear cooling segment
        return int(out) if out.ndim == 0 else out

    @property
    def n_slots(self) -> int:
        """Segment slots in a decision vector."""
        return int(self._n_seg(self.max_n_cycles))

    @property
    def _offset(self) -> int:
        return 4 if self.mixed else 3

    @property
    def n_var(self) -> int:
        return self._offset + self.n_slots * (3 if self.holds else 2)

    @property
    def var_names(self) -> list[str]:
        """Names of the decision variables, in order."""
        s = range(1, self.n_slots + 1)
        names = ["c0_mg_g", "seed_loading", "t_start_c"] + (["n_cycles"] if self.mixed else [])
        names += [f"T{k}_c" for k in s] + [f"rate{k}_c_min" for k in s]
        if self.holds:
            names += [f"hold{k}_min" for k in s]
        return names

    def _temperature_range(self) -> tuple[float, float]:
        lo, hi = self.bounds.temperature_c
        if self.limits is not None:
            lo, hi = max(lo, float(self.limits.min_c)), min(hi, float(self.limits.max_c))
        return lo, hi

    def _rate_range(self, heating: bool) -> tuple[float, float]:
        lo, hi = self.bounds.heating_rate_c_min if heating else self.bounds.cooling_rate_c_min
        if self.limits is not None:
            hi = min(hi, float(self.limits.max_rate_c_min))
        return lo, hi

    def _check_box(self) -> None:
        dev = f"the {self.limits.source} limits" if self.limits is not None and self.limits.source else "the thermostat limits"
        tlo, thi = self._temperature_range()
        if thi - tlo < self.min_step_c:
            b = self.bounds.temperature_c
            lim = (f" and {dev} [{self.limits.min_c:g}, {self.limits.max_c:g}] °C"
                   if self.limits is not None else "")
            raise InfeasibleError(
                f"no feasible profile: the temperature bounds [{b[0]:g}, {b[1]:g}] °C{lim} leave "
                f"[{tlo:g}, {thi:g}] °C, too narrow for one segment of at least {self.min_step_c:g} °C"
            )
        for heating in (False, True):
            lo, hi = self._rate_range(heating)
            if lo > hi:
                kind = "heating" if heating else "cooling"
                raise InfeasibleError(
                    f"no feasible profile: the {kind} rate lower bound {lo:g} °C/min exceeds the "
                    f"ramp limit {self.limits.max_rate_c_min:g} °C/min of {dev}"
                )

    def bounds_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds ``(xl, xu)`` of the decision variables, shape ``(n_var,)``."""
        b = self.bounds
        tlo, thi = self._temperature_range()
        xl = [b.c0_mg_g[0], b.seed_loading[0], tlo]
        xu = [b.c0_mg_g[1], b.seed_loading[1], thi]
        if self.mixed:
            xl.append(self.min_n_cycles)
            xu.append(self.max_n_cycles)
        xl += [tlo] * self.n_slots
        xu += [thi] * self.n_slots
        for k in range(self.n_slots):
            lo, hi = self._rate_range(heating=k % 2 == 1)
            xl.append(lo)
            xu.append(hi)
        if self.holds:
            xl += [b.hold_min[0]] * self.n_slots
            xu += [b.hold_min[1]] * self.n_slots
        return np.asarray(xl, dtype=float), np.asarray(xu, dtype=float)

    # ------------------------------------------------------------------ decoding
    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.ndim != 2 or X.shape[1] != self.n_var:
            raise OptimizationError(
                f"decision matrix must have shape (n, {self.n_var}) for {self.label}, got {X.shape}"
            )
        return X

    def n_cycles_of(self, X: np.ndarray) -> np.ndarray:
        """Number of cycles per row (rounded and clipped in the mixed formulation)."""
        X = self._check_X(X)
        if not self.mixed:
            return np.full(len(X), self.n_cycles, dtype=int)
        return np.clip(np.rint(X[:, 3]), self.min_n_cycles, self.max_n_cycles).astype(int)

    def _parts(self, X: np.ndarray) -> tuple[np.ndarray, ...]:
        X = self._check_X(X)
        o, s = self._offset, self.n_slots
        temps = X[:, o:o + s]
        rates = X[:, o + s:o + 2 * s]
        holds = X[:, o + 2 * s:o + 3 * s] if self.holds else np.zeros_like(temps)
        n_seg = np.broadcast_to(self._n_seg(self.n_cycles_of(X)), (len(X),))
        used = np.arange(s)[None, :] < n_seg[:, None]
        return X, temps, rates, holds, n_seg, used

    def features(self, X: np.ndarray, max_cycles: int | None = None) -> np.ndarray:
        """Feature matrix in :func:`crystalloop.profiles.feature_names` order.

        Equals ``np.vstack([p.to_features(max_cycles) for p in self.to_profiles(X)])``
        (tested), computed with array operations only.

        Parameters
        ----------
        X : ndarray, shape (n, n_var)
        max_cycles : int, optional
            Cycles the feature vector holds (the twin's ``max_cycles``); default
            ``bounds.max_cycles``.

        Returns
        -------
        ndarray, shape (n, 5 + 3 (2 max_cycles + 1))
        """
        max_cycles = self.bounds.max_cycles if max_cycles is None else int(max_cycles)
        slots = 2 * max_cycles + 1
        if self.n_slots > slots:
            raise OptimizationError(
                f"{self.label} need {self.n_slots} segments but features for max_cycles="
                f"{max_cycles} hold only {slots}"
            )
        X, temps, rates, holds, n_seg, used = self._parts(X)
        n = len(X)
        last_t = temps[np.arange(n), n_seg - 1]
        T = np.empty((n, slots))
        R = np.zeros((n, slots))
        H = np.zeros((n, slots))
        T[:, :] = last_t[:, None]
        s = self.n_slots
        T[:, :s] = np.where(used, temps, last_t[:, None])
        R[:, :s] = np.where(used, rates, 0.0)
        H[:, :s] = np.where(used, holds, 0.0)
        out = np.empty((n, 5 + 3 * slots))
        out[:, 0:3] = X[:, 0:3]
        out[:, 3] = n_seg
        out[:, 4] = n_seg // 2
        out[:, 5::3] = T
        out[:, 6::3] = R
        out[:, 7::3] = H
        return out

    def feature_names(self, max_cycles: int | None = None) -> list[str]:
        return feature_names(self.bounds.max_cycles if max_cycles is None else max_cycles)

    def batch_time_min(self, X: np.ndarray) -> np.ndarray:
        """Batch time (all ramps and holds) per row, min; equals ``ThermocycleProfile.batch_time_min``."""
        X, temps, rates, holds, n_seg, used = self._parts(X)
        prev = np.concatenate([X[:, 2:3], temps[:, :-1]], axis=1)
        ramp = np.abs(temps - prev) / np.where(rates > 0, rates, np.inf)
        return np.sum(np.where(used, ramp + holds, 0.0), axis=1)

    def alternation_constraints(self, X: np.ndarray) -> np.ndarray:
        """Paper Eqs. 2–4 as ``G <= 0``, one column per segment slot.

        Cooling slot ``k``: ``T_k - T_{k-1} + min_step_c <= 0``; heating slot:
        ``T_{k-1} - T_k + min_step_c <= 0``; unused slots give ``-min_step_c`` (satisfied).
        """
        X, temps, rates, holds, n_seg, used = self._parts(X)
        prev = np.concatenate([X[:, 2:3], temps[:, :-1]], axis=1)
        sign = np.where(np.arange(self.n_slots) % 2 == 0, 1.0, -1.0)  # cool: T_k - T_prev < 0
        g = sign[None, :] * (temps - prev) + (self.min_step_c - _STEP_TOL)
        return np.where(used, g, -self.min_step_c)

    # ------------------------------------------------------------------ sampling and repair
    def repair(self, X: np.ndarray) -> np.ndarray:
        """Project rows onto the feasible set: clip to the bounds, round ``n_cycles``, and clip
        each temperature into the range its direction allows given the previous one."""
        X = self._check_X(X).copy()
        xl, xu = self.bounds_arrays()
        X = np.clip(X, xl, xu)
        if self.mixed:
            X[:, 3] = self.n_cycles_of(X)
        tlo, thi = self._temperature_range()
        step = self.min_step_c
        o = self._offset
        X[:, 2] = np.clip(X[:, 2], tlo + step, thi)
        prev = X[:, 2]
        for k in range(self.n_slots):
            col = X[:, o + k]
            if k % 2 == 0:
                col = np.clip(col, tlo, prev - step)
            else:
                col = np.clip(col, prev + step, thi)
            X[:, o + k] = col
            prev = col
        return X

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random feasible decision vectors: each temperature uniform in the range its
        direction allows given the previous one; everything else uniform in its bounds."""
        xl, xu = self.bounds_arrays()
        X = xl + rng.random((n, self.n_var)) * (xu - xl)
        tlo, thi = self._temperature_range()
        step = self.min_step_c
        o = self._offset
        if self.mixed:  # equal share of every number of cycles
            X[:, 3] = rng.integers(self.min_n_cycles, self.max_n_cycles + 1, size=n)
        X[:, 2] = tlo + step + rng.random(n) * (thi - tlo - step)
        prev = X[:, 2]
        for k in range(self.n_slots):
            u = rng.random(n)
            if k % 2 == 0:
                col = tlo + u * (prev - step - tlo)
            else:
                col = prev + step + u * (thi - prev - step)
            X[:, o + k] = col
            prev = col
        return X

    # ------------------------------------------------------------------ profiles
    def to_profiles(self, X: np.ndarray, names: list[str] | None = None) -> list[ThermocycleProfile]:
        """Rows as :class:`ThermocycleProfile` objects (for results, not for the inner loop)."""
        X, temps, rates, holds, n_seg, used = self._parts(X)
        out = []
        for i in range(len(X)):
            segs = tuple(Segment(float(temps[i, k]), float(rates[i, k]), float(holds[i, k]))
                         for k in range(int(n_seg[i])))
            out.append(ThermocycleProfile(float(X[i, 0]), float(X[i, 1]), float(X[i, 2]), segs,
                                          name=names[i] if names else ""))
        return out

    def from_profiles(self, profiles: list[ThermocycleProfile]) -> np.ndarray:
        """Encode profiles as decision vectors (e.g. to seed the population with DoE runs).

        Raises
        ------
        OptimizationError
            A profile whose number of segments does not fit this instance.
        """
        X = np.zeros((len(profiles), self.n_var))
        o, s = self._offset, self.n_slots
        for i, p in enumerate(profiles):
            want = (self._n_seg(p.n_cycles) if self.min_n_cycles <= p.n_cycles <= self.max_n_cycles
                    else None)
            if want != p.n_segments:
                raise OptimizationError(
                    f"profile {i} ({p.n_cycles} cycles, {p.n_segments} segments) does not fit "
                    f"{self.label} with final_cooling={self.final_cooling}"
                )
            X[i, :3] = p.c0_mg_g, p.seed_loading, p.t_start_c
            if self.mixed:
                X[i, 3] = p.n_cycles
            temps = [sg.target_c for sg in p.segments]
            X[i, o:o + s] = temps + [temps[-1]] * (s - len(temps))
            rates = [sg.rate_c_min for sg in p.segments]
            lo_r = [self._rate_range(heating=k % 2 == 1)[0] for k in range(s)]
            X[i, o + s:o + 2 * s] = rates + lo_r[len(rates):]
            if self.holds:
                X[i, o + 2 * s:o + 2 * s + len(p.segments)] = [sg.hold_min for sg in p.segments]
        return X
