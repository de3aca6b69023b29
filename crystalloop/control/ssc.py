"""Supersaturation control (SSC, concentration feedback) from in-situ concentration.

The law (DOMAIN.md §4): with the measured concentration ``c`` (kg solute / kg solvent, ATR-FTIR or
UV-like) and a supersaturation setpoint ``Δc_sp``, the temperature setpoint is the temperature at
which the solubility equals ``c − Δc_sp``::

    T_sp = c*⁻¹(c − Δc_sp)

rate-limited to ``max_rate_c_min`` and clipped to ``[t_min_c, t_max_c]``. As crystals grow and
``c`` falls, ``T_sp`` follows the solubility curve down at constant supersaturation — fast where
growth is fast, slow where it is slow — until ``t_min_c``; the batch ends after ``final_hold_min``
there. ``c*`` is the solubility curve of the compound (the virtual crystallizer's for ``sim://``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np

from crystalloop.control._feedback import FeedbackLaw
from crystalloop.control.pid import Observation
from crystalloop.errors import ConfigError

__all__ = ["SupersaturationController"]


class SupersaturationController(FeedbackLaw):
    """Supersaturation (concentration-feedback) control.

    Parameters
    ----------
    solubility : callable(T_c) -> float
        Solubility ``c*(T)`` in kg/kg, increasing with temperature over ``[t_min_c, t_max_c]``.
    delta_c_setpoint : float
        Wanted supersaturation ``c − c*`` in kg/kg (> 0).
    t_min_c, t_max_c : float
        Setpoint range, °C; ``t_min_c`` is the end temperature.
    max_rate_c_min : float
        Largest setpoint change rate, °C/min (cooling and heating).
    filter_window : int
        Moving average over concentration readings.
    final_hold_min, max_duration_min : float
        Hold at ``t_min_c`` before the end; hard end of the batch.

    Attributes
    ----------
    history_ : list of tuple
        ``(time_s, c_filtered, T_target_c, setpoint_c)`` per control step.
    """

    name = "ssc"
    measurements = ("conc_kg_kg",)

    def __init__(
        self,
        solubility: Callable[[float], float],
        delta_c_setpoint: float,
        *,
        t_min_c: float,
        t_max_c: float,
        max_rate_c_min: float = 0.5,
        filter_window: int = 3,
        final_hold_min: float = 30.0,
        max_duration_min: float = 24 * 60.0,
    ) -> None:
        if not callable(solubility):
            raise ConfigError(f"solubility must be a callable T_c -> c* (kg/kg), got {type(solubility).__name__}")
        if not (np.isfinite(delta_c_setpoint) and delta_c_setpoint > 0):
            raise ConfigError(f"delta_c_setpoint must be a supersaturation > 0 kg/kg, got {delta_c_setpoint!r}")
        if not (np.isfinite(t_min_c) and np.isfinite(t_max_c)) or t_min_c >= t_max_c:
            raise ConfigError(f"SSC needs finite t_min_c < t_max_c, got t_min_c={t_min_c} °C, t_max_c={t_max_c} °C")
        if not (np.isfinite(max_rate_c_min) and max_rate_c_min > 0):
            raise ConfigError(f"SSC max_rate_c_min must be > 0 °C/min, got {max_rate_c_min!r}")
        if int(filter_window) != filter_window or filter_window < 1:
            raise ConfigError(f"SSC filter_window must be a whole number >= 1, got {filter_window!r}")
        lo, hi = float(solubility(t_min_c)), float(solubility(t_max_c))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
            raise ConfigError(f"solubility must increase over [{t_min_c:g}, {t_max_c:g}] °C, got c*={lo:.4g} and "
                              f"{hi:.4g} kg/kg at the ends")
        self.solubility = solubility
        self.delta_c_setpoint = float(delta_c_setpoint)
        self.t_min_c, self.t_max_c = float(t_min_c), float(t_max_c)
        self.max_rate_c_min = float(max_rate_c_min)
        self.filter_window = int(filter_window)
        self.final_hold_min = float(final_hold_min)
        self.max_duration_min = float(max_duration_min)
        self._c: deque[float] = deque(maxlen=self.filter_window)
        self.setpoint_ = math.nan
        self.history_: list[tuple[float, float, float, float]] = []

    def saturation_temperature(self, c_kg_kg: float) -> float:
        """``c*⁻¹(c)`` in °C, clipped to ``[t_min_c, t_max_c]`` (bisection on the solubility curve)."""
        lo, hi = self.t_min_c, self.t_max_c
        if c_kg_kg <= self.solubility(lo):
            return lo
        if c_kg_kg >= self.solubility(hi):
            return hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.solubility(mid) < c_kg_kg:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def reset(self, obs: Observation) -> None:
        self._start(obs)
        self._c.clear()

    def setpoint(self, obs: Observation) -> float:
        dt_min = self._tick(obs)
        if np.isfinite(obs.conc_kg_kg):
            self._c.append(float(obs.conc_kg_kg))
        if self._c:
            c = float(np.mean(self._c))
            target = self.saturation_temperature(c - self.delta_c_setpoint)
            step = self.max_rate_c_min * dt_min
            self.setpoint_ = float(np.clip(target, self.setpoint_ - step, self.setpoint_ + step))
            self.setpoint_ = float(min(max(self.setpoint_, self.t_min_c), self.t_max_c))
        else:
            c, target = math.nan, math.nan
        self._track_end_hold(obs, self.setpoint_ <= self.t_min_c + 1e-9)
        self.history_.append((float(obs.time_s), c, target, self.setpoint_))
        return self.setpoint_
