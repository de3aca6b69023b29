"""Setpoint limits of a thermostat: one type for device, recipe, user and safety limits.

A :class:`ThermostatLimits` is a setpoint range in °C and a largest setpoint change rate in
°C/min, with the ``source`` the numbers came from (``"device"``, ``"recipe"``, ``"user"``,
``"url"``, or several joined with ``+`` after :meth:`ThermostatLimits.intersect`). The same
object describes what a thermostat can do (its limits, including its ramp capability),
what a recipe needs, and what the software safety layer allows; every check names the
value, the limit, the unit, the source and the device.

It sits beside :mod:`crystalloop.profiles` at the bottom of the dependency graph, so the
hardware drivers, the safety layer and the design code all accept the one type.

Examples
--------
>>> device = ThermostatLimits(-20.0, 80.0, 5.0, source="device")
>>> run = device.intersect(ThermostatLimits(10.0, 60.0, source="recipe"))
>>> run
ThermostatLimits(min_c=10.0, max_c=60.0, max_rate_c_min=5.0, source='device+recipe')
>>> run.check_setpoint(65.0, "julabo")
Traceback (most recent call last):
...
crystalloop.errors.LimitError: Setpoint 65.00 °C exceeds the upper limit 60.00 °C (device+recipe limits) of thermostat 'julabo'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import Protocol

from crystalloop.errors import ConfigError, LimitError

__all__ = ["ThermostatLimits", "Recipe"]


class _Segment(Protocol):
    target_c: float
    rate_c_min: float


class Recipe(Protocol):
    """What the limit checks read of a recipe (:class:`crystalloop.profiles.ThermocycleProfile`
    has it): start temperature °C, segments with target °C and rate °C/min, a name.

    A protocol, so this module does not import :mod:`crystalloop.profiles` (which imports it).
    """

    name: str
    t_start_c: float

    @property
    def segments(self) -> Sequence[_Segment]: ...

_TOL = 1e-9


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(float(value))


@dataclass(frozen=True)
class ThermostatLimits:
    """Setpoint range and ramp capability of a thermostat, with where they come from.

    Attributes
    ----------
    min_c, max_c : float
        Lowest and highest allowed setpoint in °C (``-inf``/``inf`` = not limited).
    max_rate_c_min : float
        Largest setpoint change rate in °C/min (``inf`` = not limited). For a device this
        is its ramp capability: how fast its bath can follow a setpoint change.
    source : str
        Where the numbers come from (``"device"``, ``"recipe"``, ``"user"``, ``"url"``, …),
        named in every error; empty when unlabelled (a consumer such as the safety layer
        then labels a thermostat's own limits ``"device"``).

    Raises
    ------
    ConfigError
        A field that is not a number, ``min_c >= max_c`` or ``max_rate_c_min <= 0``.
    """

    min_c: float = -math.inf
    max_c: float = math.inf
    max_rate_c_min: float = math.inf
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ConfigError(f"ThermostatLimits.source must be a string, got {self.source!r}")
        for name in ("min_c", "max_c", "max_rate_c_min"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ConfigError(f"ThermostatLimits.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not self.min_c < self.max_c:
            raise ConfigError(
                f"ThermostatLimits need min_c < max_c, got min_c={self.min_c:g} °C, "
                f"max_c={self.max_c:g} °C{self._label}"
            )
        if not self.max_rate_c_min > 0:
            raise ConfigError(
                f"ThermostatLimits.max_rate_c_min must be > 0 °C/min, got {self.max_rate_c_min:g}{self._label}"
            )

    @property
    def _label(self) -> str:
        return f" ({self.source} limits)" if self.source else ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_recipe(
        cls, profile: Recipe, *, margin_c: float = 10.0, rate_factor: float = 3.0
    ) -> ThermostatLimits:
        """Limits derived from a recipe.

        Its temperature span widened by ``margin_c`` on each side (room for a cascade or
        NMPC controller to overdrive the jacket) and ``rate_factor`` times its fastest ramp.

        Parameters
        ----------
        profile : ThermocycleProfile
            (any :class:`Recipe`)
        margin_c : float
            Widening on each side, °C (>= 0).
        rate_factor : float
            Multiple of the recipe's fastest rate allowed (>= 1).
        """
        if not (_is_number(margin_c) and margin_c >= 0) or not (_is_number(rate_factor) and rate_factor >= 1):
            raise ConfigError(
                f"for_recipe needs margin_c >= 0 °C and rate_factor >= 1, got margin_c={margin_c!r}, "
                f"rate_factor={rate_factor!r}"
            )
        temps = [profile.t_start_c] + [s.target_c for s in profile.segments]
        rates = [s.rate_c_min for s in profile.segments]
        rate = max(rates) * rate_factor if rates else math.inf
        return cls(min(temps) - margin_c, max(temps) + margin_c, rate, source="recipe")

    def intersect(self, other: ThermostatLimits) -> ThermostatLimits:
        """The tighter of two sets of limits (sources joined with ``+``).

        Raises
        ------
        LimitError
            The two ranges do not overlap.
        """
        if not isinstance(other, ThermostatLimits):
            raise ConfigError(f"intersect needs ThermostatLimits, got {type(other).__name__}")
        lo, hi = max(self.min_c, other.min_c), min(self.max_c, other.max_c)
        if not lo < hi:
            raise LimitError(
                f"{self.source or 'the'} limits [{self.min_c:g}, {self.max_c:g}] °C and "
                f"{other.source or 'the other'} limits [{other.min_c:g}, {other.max_c:g}] °C do not overlap"
            )
        source = "+".join(s for s in (self.source, other.source) if s)
        return ThermostatLimits(lo, hi, min(self.max_rate_c_min, other.max_rate_c_min), source=source)

    def with_source(self, source: str) -> ThermostatLimits:
        """The same numbers under another ``source`` label."""
        return replace(self, source=source)

    # ------------------------------------------------------------------ checks
    @property
    def bounded(self) -> bool:
        """True when both ends of the setpoint range are finite."""
        return math.isfinite(self.min_c) and math.isfinite(self.max_c)

    def describe(self) -> str:
        """``"[-20, 80] °C, <= 5 °C/min (device limits)"``."""
        rate = "any rate" if math.isinf(self.max_rate_c_min) else f"<= {self.max_rate_c_min:g} °C/min"
        return f"[{self.min_c:g}, {self.max_c:g}] °C, {rate}{self._label}"

    def check_setpoint(self, value_c: float, device: str = "thermostat") -> float:
        """Return ``value_c`` as float, or raise :class:`LimitError` naming value, limit and device.

        Parameters
        ----------
        value_c : float
            Setpoint, °C.
        device : str
            Thermostat name for the message.
        """
        try:
            value = float(value_c)
        except (TypeError, ValueError):
            raise LimitError(f"Setpoint {value_c!r} for thermostat '{device}' is not a number") from None
        if not math.isfinite(value):
            raise LimitError(f"Setpoint {value} °C for thermostat '{device}' is not a finite number")
        if value > self.max_c + _TOL:
            raise LimitError(f"Setpoint {value:.2f} °C exceeds the upper limit {self.max_c:.2f} °C"
                             f"{self._label} of thermostat '{device}'")
        if value < self.min_c - _TOL:
            raise LimitError(f"Setpoint {value:.2f} °C is below the lower limit {self.min_c:.2f} °C"
                             f"{self._label} of thermostat '{device}'")
        return value

    def check_rate(self, rate_c_min: float, device: str = "thermostat") -> float:
        """Return ``|rate_c_min|``, or raise :class:`LimitError` if it exceeds the ramp limit."""
        rate = abs(float(rate_c_min))
        if not math.isfinite(rate) or rate > self.max_rate_c_min * (1 + 1e-6) + _TOL:
            raise LimitError(f"Setpoint ramp {rate:.3g} °C/min exceeds the ramp limit "
                             f"{self.max_rate_c_min:.3g} °C/min{self._label} of thermostat '{device}'")
        return rate

    def violations(self, profile: Recipe, device: str | None = None) -> list[str]:
        """Every temperature and ramp of ``profile`` outside these limits, as readable messages.

        ``device`` names the thermostat in the messages (default: just "thermostat")."""
        dev = ("thermostat" if device is None else f"thermostat '{device}'") + self._label
        out: list[str] = []
        for i, temp in enumerate([profile.t_start_c] + [s.target_c for s in profile.segments]):
            where = "start temperature" if i == 0 else f"segment {i} target"
            if temp > self.max_c + _TOL:
                out.append(f"{where} {temp:g} °C exceeds the upper limit {self.max_c:g} °C of {dev}")
            if temp < self.min_c - _TOL:
                out.append(f"{where} {temp:g} °C is below the lower limit {self.min_c:g} °C of {dev}")
        for i, seg in enumerate(profile.segments, start=1):
            if seg.rate_c_min > self.max_rate_c_min * (1 + 1e-6) + _TOL:
                out.append(f"segment {i} rate {seg.rate_c_min:g} °C/min exceeds the ramp limit "
                           f"{self.max_rate_c_min:g} °C/min of {dev}")
        return out

    def check_profile(self, profile: Recipe, device: str = "thermostat") -> None:
        """Raise :class:`LimitError` listing every temperature or ramp of ``profile`` outside the limits."""
        problems = self.violations(profile, device)
        if problems:
            label = f"recipe {profile.name!r}" if profile.name else "recipe"
            raise LimitError(f"{label} is incompatible with the limits: " + "; ".join(problems))
