"""How one batch is run: :class:`RunOptions`, checked once, before anything touches a device or the store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from crystalloop.control.controller import CONTROLLERS, Controller, check_controller
from crystalloop.control.safety import SAFE_STATES, Watchdog
from crystalloop.errors import ConfigError
from crystalloop.limits import ThermostatLimits

__all__ = ["RunOptions", "COUNTS_SOURCES"]

#: where DNC gets its counts
COUNTS_SOURCES = ("counter", "camera")


def _positive(name: str, value: Any, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0 s, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RunOptions:
    """Settings of one run (everything but the recipe, the backend and the store).

    Every field is validated on construction, so a bad value is refused before a device is
    opened or a run is created in the store.

    Attributes
    ----------
    controller : {"track", "pid", "nmpc", "dnc", "ssc"} or Controller
        A name (built by :func:`~crystalloop.control.make_controller` with
        ``controller_options``) or an object implementing
        :class:`~crystalloop.control.Controller`.
    controller_options : mapping
        Options of a named controller (``kp=``, ``counts_setpoint=``, ``delta_c_setpoint=``...).
    sample_interval_s : float
        Period of reading every sensor and writing to the store, s.
    control_interval_s : float or None
        Control period, s (default: the sample interval).
    image_interval_s : float or None
        Camera period, s (None: no images).
    image_dir : path or None
        Folder for the PNGs (default ``<store folder>/images/run_<id>``).
    limits : ThermostatLimits or None
        Extra software limits, intersected with the device's and the recipe's.
    recipe_margin_c : float
        Room around the recipe's temperature span the limits allow (°C, for PID/NMPC overdrive).
    safe_state : {"hold", "stop"}
        What the thermostat does on a fault, a signal or Ctrl-C.
    watchdog : Watchdog or None
    duration_s : float or None
        Stop after this run time, s (default: the controller's duration).
    counts_from : {"counter", "camera"}
        Where DNC gets its counts: the backend's particle counter or image counts of the camera.
    kind : str or None
        The run's kind in the store (default: the controller's name; ``"campaign"``,
        ``"simulation"``...).
    meta : mapping
        Stored with the run.
    commit_interval_s : float
        Longest wall time, s, that read samples may wait in memory before they are committed
        to the store. The default 0 commits every sample instant as it is read (a killed
        process loses nothing already read). With 1 s, every instant of a real-time run is
        still committed as it is read, while a virtual-clock run commits about once a second
        instead of once per instant (``crystalloop simulate`` and campaign batches: 3-4 times
        faster on sim://; a killed simulation is simply run again).
    """

    controller: str | Controller = "track"
    controller_options: Mapping[str, Any] = field(default_factory=dict)
    sample_interval_s: float = 60.0
    control_interval_s: float | None = None
    image_interval_s: float | None = None
    image_dir: str | Path | None = None
    limits: ThermostatLimits | None = None
    recipe_margin_c: float = 10.0
    safe_state: str = "hold"
    watchdog: Watchdog | None = None
    duration_s: float | None = None
    counts_from: str = "counter"
    kind: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    commit_interval_s: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.controller, str):
            if self.controller not in CONTROLLERS:
                raise ConfigError(f"unknown controller {self.controller!r}; expected one of {', '.join(CONTROLLERS)}")
        else:
            check_controller(self.controller)
            if self.controller_options:
                raise ConfigError(f"controller_options {sorted(self.controller_options)} are for a named controller; "
                                  f"configure the {type(self.controller).__name__} object itself")
        if not isinstance(self.controller_options, Mapping):
            raise ConfigError(f"controller_options must be a dict, got {type(self.controller_options).__name__}")
        _positive("sample_interval_s", self.sample_interval_s, optional=False)
        for name in ("control_interval_s", "image_interval_s", "duration_s"):
            _positive(name, getattr(self, name))
        if self.limits is not None and not isinstance(self.limits, ThermostatLimits):
            raise ConfigError(f"limits must be a ThermostatLimits, got {type(self.limits).__name__}")
        m = self.recipe_margin_c
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and m >= 0):
            raise ConfigError(f"recipe_margin_c must be a finite number >= 0 °C, got {m!r}")
        if self.safe_state not in SAFE_STATES:
            raise ConfigError(f"safe_state must be one of {', '.join(SAFE_STATES)}, got {self.safe_state!r}")
        if self.watchdog is not None and not isinstance(self.watchdog, Watchdog):
            raise ConfigError(f"watchdog must be a Watchdog, got {type(self.watchdog).__name__}")
        if self.counts_from not in COUNTS_SOURCES:
            raise ConfigError(f"counts_from must be one of {', '.join(COUNTS_SOURCES)}, got {self.counts_from!r}")
        if self.kind is not None and (not isinstance(self.kind, str) or not self.kind.strip()):
            raise ConfigError(f"kind must be a non-empty string or None, got {self.kind!r}")
        c = self.commit_interval_s
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c >= 0):
            raise ConfigError(f"commit_interval_s must be a finite number >= 0 s, got {c!r}")
        if not isinstance(self.meta, Mapping):
            raise ConfigError(f"meta must be a dict, got {type(self.meta).__name__}")

    @property
    def controller_name(self) -> str:
        """The controller's name (stored with the run)."""
        return self.controller if isinstance(self.controller, str) else str(self.controller.name)

    @property
    def control_period_s(self) -> float:
        """The control period actually used, s."""
        return self.control_interval_s if self.control_interval_s is not None else float(self.sample_interval_s)

    def with_(self, **changes: Any) -> RunOptions:
        """A copy with some fields changed (validated again)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown run option(s) {unknown}; RunOptions has {sorted(known)}")
        return replace(self, **changes)
