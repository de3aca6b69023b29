"""ThermocycleProfile: the recipe shared by the twin, the optimizer, the controllers and the simulator.

A profile starts at ``t_start_c`` and runs an ordered list of segments that alternate
cooling and heating, starting with cooling. Each segment ramps linearly to ``target_c``
at ``rate_c_min`` (°C/min, a positive magnitude) and then holds for ``hold_min``.
A *cycle* is one cooling segment followed by one heating segment; a profile with
``n`` heating segments has ``n`` cycles and at most ``2 n + 1`` segments.

Units: temperatures in °C, rates in °C/min, holds in min, times in s, initial
concentration in mg solute / g solvent, seed loading as seed mass / initially
dissolved solute mass (dimensionless).

Feature vector (fixed length for ``max_cycles``; seed 003 represents profiles this way)::

    c0_mg_g, seed_loading, t_start_c, n_segments, n_cycles,
    T1_c, rate1_c_min, hold1_min, ..., T{S}_c, rate{S}_c_min, hold{S}_min

with ``S = 2 * max_cycles + 1`` segment slots. Unused slots are encoded explicitly:
``n_segments`` says how many slots are used, and an unused slot repeats the last used
temperature with rate 0 and hold 0 (a segment that does nothing), never a 0 °C sentinel,
because 0 °C is a legal temperature.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ProfileError
from crystalloop.limits import ThermostatLimits

__all__ = [
    "Segment",
    "ProfileBounds",
    "DEFAULT_BOUNDS",
    "ThermocycleProfile",
    "feature_names",
    "profiles_to_frame",
    "profiles_from_frame",
]


@dataclass(frozen=True)
class Segment:
    """One ramp of a profile: to ``target_c`` at ``rate_c_min`` (>0), then hold ``hold_min``."""

    target_c: float
    rate_c_min: float
    hold_min: float = 0.0


@dataclass(frozen=True)
class ProfileBounds:
    """Bounds on profile parameters (DOMAIN.md §1, seed 003 Table 2). Each is ``(low, high)``."""

    c0_mg_g: tuple[float, float] = (24.8, 55.2)
    seed_loading: tuple[float, float] = (0.05, 0.15)
    temperature_c: tuple[float, float] = (0.0, 70.0)
    cooling_rate_c_min: tuple[float, float] = (0.05, 0.3)
    heating_rate_c_min: tuple[float, float] = (0.5, 1.0)
    hold_min: tuple[float, float] = (0.0, 600.0)
    max_cycles: int = 4

    def __post_init__(self) -> None:
        for name in ("c0_mg_g", "seed_loading", "temperature_c", "cooling_rate_c_min",
                     "heating_rate_c_min", "hold_min"):
            lo, hi = getattr(self, name)
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ProfileError(
                    f"Bound '{name}' needs finite low <= high, got ({lo}, {hi})"
                )
        if int(self.max_cycles) != self.max_cycles or self.max_cycles < 0:
            raise ProfileError(f"max_cycles must be a whole number >= 0, got {self.max_cycles!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileBounds:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ProfileError(f"Unknown bound name(s) {sorted(unknown)}; expected some of {sorted(known)}")
        kw = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()}
        return cls(**kw)


DEFAULT_BOUNDS = ProfileBounds()


def _n_slots(max_cycles: int) -> int:
    return 2 * int(max_cycles) + 1


def feature_names(max_cycles: int = 4) -> list[str]:
    """Names of the fixed-length feature vector for ``max_cycles`` cycles."""
    names = ["c0_mg_g", "seed_loading", "t_start_c", "n_segments", "n_cycles"]
    for k in range(1, _n_slots(max_cycles) + 1):
        names += [f"T{k}_c", f"rate{k}_c_min", f"hold{k}_min"]
    return names


def _finite(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ProfileError(f"{what} must be finite, got {v}")
    return v


@dataclass(frozen=True)
class ThermocycleProfile:
    """A thermocycle recipe.

    Parameters
    ----------
    c0_mg_g : float
        Initial solute concentration, mg solute per g solvent.
    seed_loading : float
        Seed mass divided by the initially dissolved solute mass.
    t_start_c : float
        Start temperature, °C (the solution is held here until the first segment).
    segments : sequence of Segment
        Alternating cooling/heating ramps, starting with cooling.
    name : str
        Free-text label.

    Raises
    ------
    ProfileError
        Non-finite numbers, non-positive rates, negative holds, a segment that does not
        change temperature, or directions that do not alternate starting with cooling.
        Bounds and thermostat limits are checked by :meth:`validate`.

    Examples
    --------
    >>> p = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(30.0, 0.2), Segment(45.0, 0.8),
    ...                                           Segment(10.0, 0.1, hold_min=30)])
    >>> p.n_cycles, round(p.batch_time_s / 60, 1)
    (1, 548.8)
    >>> float(p.setpoint_at(0.0)), float(p.setpoint_at(p.batch_time_s))
    (60.0, 10.0)
    """

    c0_mg_g: float
    seed_loading: float
    t_start_c: float
    segments: tuple[Segment, ...]
    name: str = ""
    _knots: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "c0_mg_g", _finite(self.c0_mg_g, "c0_mg_g"))
        object.__setattr__(self, "seed_loading", _finite(self.seed_loading, "seed_loading"))
        object.__setattr__(self, "t_start_c", _finite(self.t_start_c, "t_start_c"))
        if self.c0_mg_g <= 0:
            raise ProfileError(f"c0_mg_g must be > 0 mg/g solvent, got {self.c0_mg_g}")
        if self.seed_loading < 0:
            raise ProfileError(f"seed_loading must be >= 0, got {self.seed_loading}")
        segs = []
        for i, s in enumerate(self.segments, start=1):
            if isinstance(s, dict):
                s = _segment_from_dict(s, f"segment {i}")
            elif isinstance(s, (tuple, list)) and not isinstance(s, Segment):
                s = Segment(*s)
            if not isinstance(s, Segment):
                raise ProfileError(f"segment {i} must be a Segment, dict or tuple, got {type(s).__name__}")
            t = _finite(s.target_c, f"segment {i} target_c")
            r = _finite(s.rate_c_min, f"segment {i} rate_c_min")
            h = _finite(s.hold_min, f"segment {i} hold_min")
            if r <= 0:
                raise ProfileError(f"segment {i}: rate_c_min must be > 0 °C/min (a magnitude), got {r}")
            if h < 0:
                raise ProfileError(f"segment {i}: hold_min must be >= 0 min, got {h}")
            segs.append(Segment(t, r, h))
        if not segs:
            raise ProfileError("a profile needs at least one (cooling) segment, got none")
        object.__setattr__(self, "segments", tuple(segs))
        prev = self.t_start_c
        for i, s in enumerate(segs, start=1):
            want_cool = i % 2 == 1
            if s.target_c == prev:
                raise ProfileError(
                    f"segment {i} ({'cooling' if want_cool else 'heating'}) does not change the "
                    f"temperature: target {s.target_c} °C equals the previous {prev} °C; use hold_min "
                    f"on the previous segment for a hold"
                )
            if want_cool and s.target_c > prev:
                raise ProfileError(
                    f"segment {i} must cool (segments alternate cooling/heating, starting with "
                    f"cooling): target {s.target_c} °C is above the previous temperature {prev} °C"
                )
            if not want_cool and s.target_c < prev:
                raise ProfileError(
                    f"segment {i} must heat (segments alternate cooling/heating, starting with "
                    f"cooling): target {s.target_c} °C is below the previous temperature {prev} °C"
                )
            prev = s.target_c
        # knots of the piecewise-linear setpoint trajectory
        times, temps = [0.0], [self.t_start_c]
        prev, t = self.t_start_c, 0.0
        for s in segs:
            t += abs(s.target_c - prev) / s.rate_c_min * 60.0
            times.append(t)
            temps.append(s.target_c)
            if s.hold_min > 0:
                t += s.hold_min * 60.0
                times.append(t)
                temps.append(s.target_c)
            prev = s.target_c
        object.__setattr__(self, "_knots", (np.asarray(times), np.asarray(temps)))

    # ---------------------------------------------------------------- structure
    @property
    def n_segments(self) -> int:
        return len(self.segments)

    @property
    def n_cycles(self) -> int:
        """Number of heating segments (cool–heat pairs)."""
        return len(self.segments) // 2

    @property
    def end_temperature_c(self) -> float:
        return self.segments[-1].target_c

    def directions(self) -> list[str]:
        """``"cool"``/``"heat"`` per segment."""
        return ["cool" if i % 2 == 0 else "heat" for i in range(len(self.segments))]

    # ---------------------------------------------------------------- trajectory
    @property
    def batch_time_s(self) -> float:
        """Duration of all ramps and holds, in seconds."""
        return float(self._knots[0][-1])

    @property
    def batch_time_min(self) -> float:
        return self.batch_time_s / 60.0

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """Breakpoints ``(time_s, setpoint_c)`` of the piecewise-linear setpoint trajectory."""
        t, y = self._knots
        return t.copy(), y.copy()

    def setpoint_at(self, t_s: float | np.ndarray) -> np.ndarray:
        """Setpoint in °C at time(s) ``t_s`` (s). Before 0: start temperature; after the end: final."""
        t, y = self._knots
        return np.interp(np.asarray(t_s, dtype=float), t, y)

    def segment_at(self, t_s: float | np.ndarray) -> np.ndarray:
        """1-based segment index active at ``t_s`` (0 before the start, n+1 after the end)."""
        ends, prev, acc = [], self.t_start_c, 0.0
        for s in self.segments:
            acc += abs(s.target_c - prev) / s.rate_c_min * 60.0 + s.hold_min * 60.0
            ends.append(acc)
            prev = s.target_c
        t_s = np.asarray(t_s, dtype=float)
        idx = np.searchsorted(np.asarray(ends), t_s, side="left") + 1
        return np.where(t_s < 0, 0, idx)

    def trajectory(self, dt_s: float = 60.0) -> pd.DataFrame:
        """Setpoint trajectory sampled every ``dt_s`` seconds (plus every knot), as a DataFrame
        with columns ``time_s``, ``setpoint_c``, ``segment``."""
        if not dt_s > 0:
            raise ProfileError(f"dt_s must be > 0 s, got {dt_s}")
        grid = np.arange(0.0, self.batch_time_s, dt_s)
        t = np.unique(np.concatenate([grid, self._knots[0]]))
        return pd.DataFrame(
            {"time_s": t, "setpoint_c": self.setpoint_at(t), "segment": self.segment_at(t)}
        )

    # ---------------------------------------------------------------- feasibility
    def violations(
        self,
        bounds: ProfileBounds | None = DEFAULT_BOUNDS,
        limits: ThermostatLimits | None = None,
    ) -> list[str]:
        """Every violated bound or limit, as readable messages (empty = feasible).

        ``limits`` (:class:`crystalloop.limits.ThermostatLimits`) adds the thermostat's
        range and ramp limit.
        """
        out: list[str] = []
        if bounds is not None:
            def chk(value: float, bound: tuple[float, float], what: str, unit: str) -> None:
                lo, hi = bound
                if value < lo - 1e-9:
                    out.append(f"{what} {value:g} {unit} is below the lower bound {lo:g} {unit}")
                elif value > hi + 1e-9:
                    out.append(f"{what} {value:g} {unit} exceeds the upper bound {hi:g} {unit}")

            chk(self.c0_mg_g, bounds.c0_mg_g, "initial concentration c0_mg_g", "mg/g")
            chk(self.seed_loading, bounds.seed_loading, "seed_loading", "")
            chk(self.t_start_c, bounds.temperature_c, "start temperature t_start_c", "°C")
            if self.n_cycles > bounds.max_cycles or self.n_segments > _n_slots(bounds.max_cycles):
                out.append(
                    f"profile has {self.n_cycles} cycles ({self.n_segments} segments); at most "
                    f"{bounds.max_cycles} cycles ({_n_slots(bounds.max_cycles)} segments) allowed"
                )
            for i, (s, d) in enumerate(zip(self.segments, self.directions(), strict=True), start=1):
                kind = "cooling" if d == "cool" else "heating"
                chk(s.target_c, bounds.temperature_c, f"segment {i} ({kind}) target", "°C")
                rb = bounds.cooling_rate_c_min if d == "cool" else bounds.heating_rate_c_min
                chk(s.rate_c_min, rb, f"segment {i} ({kind}) rate", "°C/min")
                chk(s.hold_min, bounds.hold_min, f"segment {i} ({kind}) hold", "min")
        if limits is not None:
            out.extend(limits.violations(self))
        return out

    def validate(self, bounds: ProfileBounds | None = DEFAULT_BOUNDS, limits: ThermostatLimits | None = None) -> ThermocycleProfile:
        """Raise :class:`ProfileError` listing every violated bound/limit; return self if feasible."""
        v = self.violations(bounds, limits)
        if v:
            label = f"profile {self.name!r}" if self.name else "profile"
            raise ProfileError(f"{label} is infeasible: " + "; ".join(v))
        return self

    def is_feasible(self, bounds: ProfileBounds | None = DEFAULT_BOUNDS, limits: ThermostatLimits | None = None) -> bool:
        return not self.violations(bounds, limits)

    # ---------------------------------------------------------------- features
    def to_features(self, max_cycles: int = 4) -> np.ndarray:
        """Fixed-length feature vector (see module docstring); shape ``(5 + 3 S,)``."""
        slots = _n_slots(max_cycles)
        if self.n_segments > slots:
            raise ProfileError(
                f"profile has {self.n_segments} segments ({self.n_cycles} cycles) but the feature "
                f"vector holds at most {slots} segments (max_cycles={max_cycles})"
            )
        x = [self.c0_mg_g, self.seed_loading, self.t_start_c, float(self.n_segments), float(self.n_cycles)]
        last = self.t_start_c
        for k in range(slots):
            if k < self.n_segments:
                s = self.segments[k]
                x += [s.target_c, s.rate_c_min, s.hold_min]
                last = s.target_c
            else:
                x += [last, 0.0, 0.0]
        return np.asarray(x, dtype=float)

    @classmethod
    def from_features(cls, x: Sequence[float] | np.ndarray, max_cycles: int = 4, name: str = "") -> ThermocycleProfile:
        """Rebuild a profile from :meth:`to_features` output (``n_segments`` is rounded)."""
        x = np.asarray(x, dtype=float).ravel()
        slots = _n_slots(max_cycles)
        if x.size != 5 + 3 * slots:
            raise ProfileError(
                f"feature vector has {x.size} values; expected {5 + 3 * slots} for max_cycles={max_cycles}"
            )
        n = int(round(x[3]))
        if not 1 <= n <= slots:
            raise ProfileError(f"feature n_segments={x[3]:g} must be a whole number in 1..{slots}")
        segs = [Segment(x[5 + 3 * k], x[6 + 3 * k], x[7 + 3 * k]) for k in range(n)]
        return cls(x[0], x[1], x[2], tuple(segs), name=name)

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name:
            d["name"] = self.name
        d.update(c0_mg_g=self.c0_mg_g, seed_loading=self.seed_loading, t_start_c=self.t_start_c)
        d["segments"] = [
            {"target_c": s.target_c, "rate_c_min": s.rate_c_min, **({"hold_min": s.hold_min} if s.hold_min else {})}
            for s in self.segments
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "recipe") -> ThermocycleProfile:
        if not isinstance(d, dict):
            raise ProfileError(f"{source}: expected a mapping with c0_mg_g, seed_loading, t_start_c, segments; got {type(d).__name__}")
        required = ("c0_mg_g", "seed_loading", "t_start_c", "segments")
        missing = [k for k in required if k not in d]
        if missing:
            raise ProfileError(f"{source}: missing field(s) {missing}; a recipe needs {list(required)}")
        unknown = set(d) - set(required) - {"name", "description"}
        if unknown:
            raise ProfileError(f"{source}: unknown field(s) {sorted(unknown)}; expected {list(required)} and optional 'name'")
        segs = d["segments"]
        if not isinstance(segs, list):
            raise ProfileError(f"{source}: 'segments' must be a list of {{target_c, rate_c_min, hold_min}}, got {segs!r}")
        try:
            return cls(
                d["c0_mg_g"], d["seed_loading"], d["t_start_c"],
                tuple(_segment_from_dict(s, f"{source}: segment {i}") for i, s in enumerate(segs, start=1)),
                name=str(d.get("name", "")),
            )
        except ProfileError as e:
            if str(e).startswith(source):
                raise
            raise ProfileError(f"{source}: {e}") from None

    def to_file(self, path: str | Path) -> Path:
        """Save as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
        path = Path(path)
        d = self.to_dict()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
        elif path.suffix.lower() == ".json":
            path.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
        else:
            raise ProfileError(f"recipe file {path}: unsupported extension {path.suffix!r}; use .yaml, .yml or .json")
        return path

    @classmethod
    def from_file(cls, path: str | Path) -> ThermocycleProfile:
        """Load a YAML or JSON recipe; errors name the file and the field."""
        path = Path(path)
        if path.is_dir():
            raise ProfileError(f"recipe file {path} is a directory; give a YAML or JSON recipe file")
        if not path.is_file():
            raise ProfileError(f"recipe file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ProfileError(f"recipe file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at position "
                               f"{e.start}); save it as a UTF-8 YAML or JSON file") from None
        try:
            if path.suffix.lower() == ".json":
                d = json.loads(text)
            else:
                import yaml

                d = yaml.safe_load(text)
        except Exception as e:  # parser errors of either format
            raise ProfileError(f"recipe file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {e}") from None
        return cls.from_dict(d, source=f"recipe file {path}")

    def with_(self, **changes: Any) -> ThermocycleProfile:
        """A copy with fields replaced (validated again)."""
        return replace(self, **changes)

    def __str__(self) -> str:
        parts = [f"{self.t_start_c:g}"]
        for s in self.segments:
            parts.append(f"→{s.target_c:g}@{s.rate_c_min:g}" + (f"(+{s.hold_min:g}min)" if s.hold_min else ""))
        head = f"{self.name}: " if self.name else ""
        return (f"{head}c0={self.c0_mg_g:g} mg/g, seed={self.seed_loading:g}, "
                f"{self.n_cycles} cycles, {''.join(parts)} °C, {self.batch_time_min:.0f} min")


def _segment_from_dict(s: Any, where: str) -> Segment:
    if isinstance(s, Segment):
        return s
    if not isinstance(s, dict):
        raise ProfileError(f"{where}: expected a mapping with target_c, rate_c_min[, hold_min], got {s!r}")
    missing = [k for k in ("target_c", "rate_c_min") if k not in s]
    if missing:
        raise ProfileError(f"{where}: missing field(s) {missing}")
    unknown = set(s) - {"target_c", "rate_c_min", "hold_min"}
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {sorted(unknown)}; expected target_c, rate_c_min, hold_min")
    return Segment(_finite(s["target_c"], f"{where} target_c"), _finite(s["rate_c_min"], f"{where} rate_c_min"),
                   _finite(s.get("hold_min", 0.0), f"{where} hold_min"))


def profiles_to_frame(profiles: Iterable[ThermocycleProfile], max_cycles: int = 4) -> pd.DataFrame:
    """Feature table (one row per profile, columns :func:`feature_names`)."""
    rows = [p.to_features(max_cycles) for p in profiles]
    cols = feature_names(max_cycles)
    return pd.DataFrame(np.vstack(rows) if rows else np.empty((0, len(cols))), columns=cols)


def profiles_from_frame(df: pd.DataFrame, max_cycles: int = 4) -> list[ThermocycleProfile]:
    """Rebuild profiles from a feature table; errors name the row and column."""
    cols = feature_names(max_cycles)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ProfileError(f"feature table is missing column(s) {missing}")
    out = []
    for i, (idx, row) in enumerate(df[cols].iterrows()):
        try:
            out.append(ThermocycleProfile.from_features(row.to_numpy(dtype=float), max_cycles))
        except ProfileError as e:
            raise ProfileError(f"row {idx!r} (position {i}): {e}") from None
    return out
