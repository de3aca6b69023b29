"""PID with anti-windup, output rate limits and bumpless transfer; cascade PID on the reactor.

The :class:`PID` is a positional-form controller sampled at irregular times (it takes the
time of each update from the run's clock, real or virtual)::

    I += Ki e dt
    v  = Kp (b r - y) + I + D,   u = sat_rate( sat(v) )
    I += (u - v) min(dt / Tt, 1)           (back-calculation anti-windup)

where ``v`` is the unsaturated output, ``sat`` clips to the output limits and ``sat_rate``
limits the output change per second. The back-calculation term bleeds the integral
whenever the applied output differs from the computed one (saturation, rate limit, or an
externally applied output passed to :meth:`PID.track`), so the integrator never winds up
and switching controllers is bumpless.

:class:`CascadePID` uses it as the outer loop of a cascade: the thermostat's own loop
keeps the bath at the setpoint, and the PID moves that setpoint so that the *reactor*
temperature follows the recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crystalloop.control.controller import ControllerBase
from crystalloop.errors import ConfigError
from crystalloop.profiles import ThermocycleProfile

__all__ = ["PID", "CascadePID", "ProfileTracker", "Observation"]


@dataclass(frozen=True)
class Observation:
    """What a controller sees at one control instant.

    Attributes
    ----------
    time_s : float
        Run time in seconds (0 at the start of the recipe).
    T_reactor_c, T_jacket_c : float
        Reactor (process) and bath/jacket temperatures in °C (NaN when not measured).
    T_set_c : float
        Setpoint currently applied to the thermostat, in °C.
    counts : float
        Particle counts per measurement (NaN when there is no counter).
    conc_kg_kg : float
        Solute concentration, kg/kg (NaN when not measured).
    """

    time_s: float
    T_reactor_c: float
    T_jacket_c: float = math.nan
    T_set_c: float = math.nan
    counts: float = math.nan
    conc_kg_kg: float = math.nan


def _check_gain(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"PID gain {name} must be a finite number >= 0, got {value!r}")
    return value


class PID:
    """Discrete PID controller with anti-windup, output rate limit and bumpless transfer.

    Parameters
    ----------
    kp : float
        Proportional gain (output units per error unit).
    ki : float
        Integral gain (output units per error unit per second).
    kd : float
        Derivative gain (output units per error unit times second). The derivative acts
        on the measurement (no derivative kick on setpoint steps), low-pass filtered.
    output_limits : (float, float)
        Lowest and highest output; ``(-inf, inf)`` for none.
    rate_limit_per_s : float
        Largest output change per second (``inf`` for none).
    setpoint_weight : float
        Weight ``b`` of the setpoint in the proportional term (1 = standard, <1 less
        overshoot on setpoint changes).
    derivative_filter_s : float
        Time constant of the first-order filter on the derivative, in seconds.
    tracking_time_s : float, optional
        Back-calculation time constant ``Tt`` in seconds; defaults to ``kp / ki`` (the
        integral time). Smaller values unwind the integrator faster.
    anti_windup : bool
        Disable only to demonstrate windup (tests, teaching).

    Examples
    --------
    >>> pid = PID(kp=2.0, ki=0.1, output_limits=(-5, 5))
    >>> pid.update(setpoint=10.0, measurement=0.0, t_s=0.0)
    5.0
    """

    def __init__(
        self,
        kp: float,
        ki: float = 0.0,
        kd: float = 0.0,
        *,
        output_limits: tuple[float, float] = (-math.inf, math.inf),
        rate_limit_per_s: float = math.inf,
        setpoint_weight: float = 1.0,
        derivative_filter_s: float = 0.0,
        tracking_time_s: float | None = None,
        anti_windup: bool = True,
    ) -> None:
        self.kp = _check_gain("kp", kp)
        self.ki = _check_gain("ki", ki)
        self.kd = _check_gain("kd", kd)
        lo, hi = (float(v) for v in output_limits)
        if not lo < hi:
            raise ConfigError(f"PID output_limits need low < high, got ({lo}, {hi})")
        self.output_limits = (lo, hi)
        rate = float(rate_limit_per_s)
        if not rate > 0:
            raise ConfigError(f"PID rate_limit_per_s must be > 0 per second, got {rate}")
        self.rate_limit_per_s = rate
        self.setpoint_weight = float(setpoint_weight)
        if derivative_filter_s < 0:
            raise ConfigError(f"derivative_filter_s must be >= 0 s, got {derivative_filter_s}")
        self.derivative_filter_s = float(derivative_filter_s)
        if tracking_time_s is None:
            tracking_time_s = self.kp / self.ki if self.ki > 0 and self.kp > 0 else 1.0
        if not tracking_time_s > 0:
            raise ConfigError(f"tracking_time_s must be > 0 s, got {tracking_time_s}")
        self.tracking_time_s = float(tracking_time_s)
        self.anti_windup = bool(anti_windup)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self, output: float | None = None, *, setpoint: float | None = None,
              measurement: float | None = None) -> None:
        """Clear the state; with ``output`` (and optionally the current setpoint and
        measurement) preset the integral so that the next output equals ``output``
        (bumpless start)."""
        self.integral_ = 0.0
        self.last_t_ = None
        self.last_y_ = None
        self.d_ = 0.0
        self.output_ = None
        self.saturated_ = False
        if output is not None:
            p = 0.0
            if setpoint is not None and measurement is not None:
                p = self.kp * (self.setpoint_weight * setpoint - measurement)
            self.integral_ = float(output) - p
            self.output_ = float(output)
            self.last_y_ = None if measurement is None else float(measurement)

    def track(self, applied_output: float, t_s: float | None = None) -> None:
        """Tell the controller which output was really applied (manual mode, another
        controller in charge, a safety clamp). The next :meth:`update` starts from it."""
        applied_output = float(applied_output)
        if self.output_ is not None:
            self.integral_ += applied_output - self.output_
        else:
            self.integral_ = applied_output
        self.output_ = applied_output
        if t_s is not None:
            self.last_t_ = float(t_s)

    # ------------------------------------------------------------------ step
    def update(
        self,
        setpoint: float,
        measurement: float,
        t_s: float,
        *,
        output_limits: tuple[float, float] | None = None,
        feedforward: float = 0.0,
    ) -> float:
        """Compute the output at time ``t_s`` (s).

        Parameters
        ----------
        setpoint, measurement : float
            Reference and measured value.
        t_s : float
            Time of this update; the first update integrates nothing.
        output_limits : (float, float), optional
            Limits for this update only (e.g. depending on a feedforward term).
        feedforward : float
            Added to the PID terms before saturation.
        """
        r, y, t = float(setpoint), float(measurement), float(t_s)
        if not (np.isfinite(r) and np.isfinite(y) and np.isfinite(t)):
            raise ConfigError(f"PID.update needs finite values, got setpoint={r}, measurement={y}, t_s={t}")
        dt = 0.0 if self.last_t_ is None else t - self.last_t_
        if dt < 0:
            raise ConfigError(f"PID.update time went backwards: t_s={t} s after {self.last_t_} s")
        lo, hi = self.output_limits if output_limits is None else output_limits
        e = r - y
        # derivative on measurement, first-order filtered
        if self.kd > 0 and self.last_y_ is not None and dt > 0:
            raw = -(y - self.last_y_) / dt
            alpha = dt / (self.derivative_filter_s + dt)
            self.d_ += alpha * (raw - self.d_)
        if dt > 0:
            self.integral_ += dt * self.ki * e
        p = self.kp * (self.setpoint_weight * r - y)
        v = feedforward + p + self.integral_ + self.kd * self.d_
        u = min(max(v, lo), hi)
        if self.output_ is not None and math.isfinite(self.rate_limit_per_s):
            step = self.rate_limit_per_s * dt
            u = min(max(u, self.output_ - step), self.output_ + step)
        u = min(max(u, lo), hi)
        self.saturated_ = abs(u - v) > 1e-12
        if self.anti_windup and dt > 0:
            # back-calculation, discretised stably (never more than the whole excess)
            self.integral_ += (u - v) * min(dt / self.tracking_time_s, 1.0)
        self.last_t_, self.last_y_, self.output_ = t, y, u
        return u

    def __repr__(self) -> str:
        return (f"PID(kp={self.kp:g}, ki={self.ki:g}, kd={self.kd:g}, output_limits={self.output_limits}, "
                f"rate_limit_per_s={self.rate_limit_per_s:g})")


class ProfileTracker(ControllerBase):
    """Plain profile tracking: the thermostat setpoint follows the recipe.

    Implements :class:`~crystalloop.control.controller.Controller`.

    Parameters
    ----------
    profile : ThermocycleProfile
        The recipe; the setpoint at run time ``t`` is ``profile.setpoint_at(t)``.
    """

    name = "track"

    def __init__(self, profile: ThermocycleProfile) -> None:
        if not isinstance(profile, ThermocycleProfile):
            raise ConfigError(f"ProfileTracker needs a ThermocycleProfile, got {type(profile).__name__}")
        self.profile = profile

    def reset(self, obs: Observation) -> None:
        """Nothing to reset; present for the common controller interface."""

    def reference(self, t_s: float) -> float:
        """Reactor temperature wanted at ``t_s``, in °C."""
        return float(self.profile.setpoint_at(t_s))

    def setpoint(self, obs: Observation) -> float:
        """Thermostat setpoint in °C for this observation."""
        return self.reference(obs.time_s)

    def finished(self, obs: Observation) -> bool:
        return obs.time_s >= self.profile.batch_time_s

    @property
    def duration_s(self) -> float:
        return self.profile.batch_time_s


class CascadePID(ProfileTracker):
    """Profile tracking with a cascade PID on the reactor temperature.

    The thermostat setpoint is ``ref(t + lead_s) + PID(ref(t) - T_reactor)``: the recipe,
    looked ahead by ``lead_s`` to compensate the jacket-to-reactor lag, plus a PID
    correction. The correction is limited so that the setpoint stays within
    ``setpoint_limits`` (anti-windup by back-calculation) and changes at most
    ``rate_limit_c_min``.

    Parameters
    ----------
    profile : ThermocycleProfile
    kp, ki, kd : float
        Gains in °C/°C, °C/(°C s), °C s/°C.
    lead_s : float
        Feedforward look-ahead in seconds (about the reactor's time constant).
    max_correction_c : float
        Largest offset of the setpoint from the feedforward, in °C.
    setpoint_limits : (float, float)
        Range of the thermostat setpoint in °C.
    rate_limit_c_min : float
        Largest setpoint change rate in °C/min.
    """

    name = "pid"

    def __init__(
        self,
        profile: ThermocycleProfile,
        *,
        kp: float = 2.0,
        ki: float = 0.004,
        kd: float = 0.0,
        lead_s: float = 120.0,
        max_correction_c: float = 10.0,
        setpoint_limits: tuple[float, float] = (-20.0, 80.0),
        rate_limit_c_min: float = 5.0,
    ) -> None:
        super().__init__(profile)
        if not max_correction_c > 0:
            raise ConfigError(f"max_correction_c must be > 0 °C, got {max_correction_c}")
        if lead_s < 0:
            raise ConfigError(f"lead_s must be >= 0 s, got {lead_s}")
        self.lead_s = float(lead_s)
        self.max_correction_c = float(max_correction_c)
        self.setpoint_limits = (float(setpoint_limits[0]), float(setpoint_limits[1]))
        if not self.setpoint_limits[0] < self.setpoint_limits[1]:
            raise ConfigError(f"setpoint_limits need low < high, got {setpoint_limits}")
        self.pid = PID(kp, ki, kd, rate_limit_per_s=rate_limit_c_min / 60.0, derivative_filter_s=30.0)

    def reset(self, obs: Observation) -> None:
        # bumpless: start from the setpoint that is applied now
        ff = float(self.profile.setpoint_at(obs.time_s + self.lead_s))
        now = obs.T_set_c if np.isfinite(obs.T_set_c) else ff
        p = self.pid.kp * (self.pid.setpoint_weight * self.reference(obs.time_s) - obs.T_reactor_c)
        self.pid.reset()
        self.pid.integral_ = now - ff - p
        self.pid.output_ = now  # output is the absolute setpoint (feedforward included)
        self.pid.last_t_ = float(obs.time_s)
        self.pid.last_y_ = float(obs.T_reactor_c)

    def setpoint(self, obs: Observation) -> float:
        ref = self.reference(obs.time_s)
        ff = float(self.profile.setpoint_at(obs.time_s + self.lead_s))
        lo = max(self.setpoint_limits[0], ff - self.max_correction_c)
        hi = min(self.setpoint_limits[1], ff + self.max_correction_c)
        if lo > hi:  # feedforward itself outside the limits
            lo = hi = min(max(ff, self.setpoint_limits[0]), self.setpoint_limits[1])
            hi = lo + 1e-9
        return self.pid.update(ref, obs.T_reactor_c, obs.time_s, output_limits=(lo, hi), feedforward=ff)
