"""What the runner needs of a controller: the :class:`Controller` protocol, and building one by name.

The runner (:mod:`crystalloop.control.runner`) talks to every controller through this
protocol only. A controller sees an :class:`~crystalloop.control.pid.Observation` at each
control instant and answers with a thermostat setpoint; it says which measurements it needs
besides the temperatures, how long the batch lasts, when it is finished, and reports events
and solver wall times. :func:`make_controller` builds the shipped ones by name
(:data:`CONTROLLERS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crystalloop.errors import ConfigError
from crystalloop.hardware.base import GroundTruth
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ThermocycleProfile

if TYPE_CHECKING:
    from crystalloop.control.pid import Observation

__all__ = ["Controller", "ControllerBase", "CONTROLLERS", "MEASUREMENTS", "EventSink", "make_controller",
           "check_controller"]

#: names :func:`make_controller` builds
CONTROLLERS = ("track", "pid", "nmpc", "dnc", "ssc")
#: measurement channels a controller may ask for besides the temperatures
MEASUREMENTS = ("counts", "conc_kg_kg")

EventSink = Callable[[float, str, str], None]


@runtime_checkable
class Controller(Protocol):
    """A feedback law or recipe follower the runner can execute.

    Attributes
    ----------
    name : str
        Short name, stored with the run (``"track"``, ``"nmpc"``, ...).
    measurements : tuple of str
        Channels needed besides the temperatures, from :data:`MEASUREMENTS`
        (``"counts"``: a particle counter or image counts; ``"conc_kg_kg"``: a concentration
        sensor). The runner refuses a backend that lacks one before the run starts.
    duration_s : float
        Longest run time in seconds (``inf`` when the controller has no natural end; the
        runner then needs ``duration_s``).
    solve_times_s : sequence of float
        Wall time of each optimization solve in seconds (empty for controllers that do not
        optimize).
    on_event : callable(time_s, level, message) or None
        Set by the runner; the controller reports fallbacks and warnings through it
        (``level`` ``"info"``, ``"warning"`` or ``"error"``; ``time_s`` run time in s).
    """

    name: str
    measurements: tuple[str, ...]
    on_event: EventSink | None

    @property
    def duration_s(self) -> float: ...

    @property
    def solve_times_s(self) -> Sequence[float]: ...

    def reset(self, obs: Observation) -> None:
        """Start (or restart) at ``obs``, the state before the first control step."""
        ...

    def reference(self, t_s: float) -> float:
        """Reactor temperature wanted at run time ``t_s`` (s), °C (what tracking is judged against)."""
        ...

    def setpoint(self, obs: Observation) -> float:
        """One control step: the thermostat setpoint in °C for this observation."""
        ...

    def finished(self, obs: Observation) -> bool:
        """Whether the batch is over at ``obs``."""
        ...


class ControllerBase:
    """Defaults of the :class:`Controller` protocol for the shipped controllers: no extra
    measurements, no solver, events go to ``on_event`` when the runner has set it."""

    name: str = "controller"
    measurements: tuple[str, ...] = ()
    on_event: EventSink | None = None

    @property
    def solve_times_s(self) -> Sequence[float]:
        return ()

    def _emit(self, t_s: float, level: str, message: str) -> None:
        if self.on_event is not None:
            self.on_event(float(t_s), level, message)


_MEMBERS = ("name", "measurements", "on_event", "duration_s", "solve_times_s", "reset", "reference", "setpoint",
            "finished")


def check_controller(controller: Any) -> Controller:
    """Return ``controller`` if it implements :class:`Controller`, else raise a ConfigError
    naming what it lacks."""
    if isinstance(controller, Controller):
        bad = [m for m in controller.measurements if m not in MEASUREMENTS]
        if bad:
            raise ConfigError(f"controller {controller.name!r} asks for measurements {bad}; the runner provides "
                              f"{list(MEASUREMENTS)} besides the temperatures")
        return controller
    missing = [m for m in _MEMBERS if not hasattr(controller, m)]
    raise ConfigError(f"controller must be one of {', '.join(CONTROLLERS)} or an object implementing "
                      f"crystalloop.control.Controller; {type(controller).__name__} lacks {missing} "
                      f"(subclass ControllerBase for the defaults)")


def make_controller(kind: str, profile: ThermocycleProfile, *, ground_truth: GroundTruth | None = None,
                    dt_s: float = 60.0, limits: ThermostatLimits | None = None, **options: Any) -> Controller:
    """Build a controller by name for ``profile``.

    Parameters
    ----------
    kind : {"track", "pid", "nmpc", "dnc", "ssc"}
    profile : ThermocycleProfile
        The recipe (reference trajectory; for DNC/SSC: start temperature, end temperature,
        rates).
    ground_truth : GroundTruth, optional
        The backend's ground truth (simulated backends): NMPC takes its thermal model and SSC
        its solubility curve from it unless ``model=`` / ``solubility=`` is given.
    dt_s : float
        Control interval, s.
    limits : ThermostatLimits, optional
        Setpoint range and rate for the controller's own constraints.
    **options
        Passed to the controller (e.g. ``kp=``, ``horizon=``, ``counts_setpoint=``,
        ``delta_c_setpoint=``, ``model=``, ``solubility=``).

    Raises
    ------
    ConfigError
        Unknown name, an option the controller does not take, or a model it needs and
        the backend cannot give.
    """
    if kind not in CONTROLLERS:
        raise ConfigError(f"unknown controller {kind!r}; expected one of {', '.join(CONTROLLERS)}")
    lim = (limits.min_c, limits.max_c) if limits is not None else (-20.0, 80.0)
    rate = limits.max_rate_c_min if limits is not None and math.isfinite(limits.max_rate_c_min) else 5.0
    if kind == "track":
        from crystalloop.control.pid import ProfileTracker

        if options:
            raise ConfigError(f"controller 'track' takes no options, got {sorted(options)}")
        return ProfileTracker(profile)
    if kind == "pid":
        from crystalloop.control.pid import CascadePID

        options.setdefault("setpoint_limits", lim)
        options.setdefault("rate_limit_c_min", rate)
        return CascadePID(profile, **options)
    if kind == "nmpc":
        from crystalloop.control.nmpc import NMPCController

        model = options.pop("model", None)
        if model is None:
            if ground_truth is None:
                raise ConfigError("controller 'nmpc' needs a thermal model: pass model=ThermalModel(...) "
                                  "(identified for this reactor) or use a simulated backend (sim://)")
            model = ground_truth.thermal_model()
            if model is None:
                raise ConfigError("controller 'nmpc' on sim://?thermal=ideal has nothing to control (the reactor "
                                  "follows the setpoint exactly); use the jacketed thermal model")
        options.setdefault("setpoint_limits", lim)
        options.setdefault("rate_limit_c_min", rate)
        options.setdefault("dt_s", dt_s)
        return NMPCController(profile, model, **options)
    if kind == "ssc":
        from crystalloop.control.ssc import SupersaturationController

        sol = options.pop("solubility", None)
        if sol is None:
            if ground_truth is None:
                raise ConfigError("controller 'ssc' needs solubility= (a callable T_c -> c* in kg/kg) "
                                  "on a backend without ground truth")
            sol = ground_truth.solubility_kg_kg
        if "delta_c_setpoint" not in options:
            raise ConfigError("controller 'ssc' needs delta_c_setpoint= (wanted supersaturation c - c*, kg/kg)")
        options.setdefault("t_min_c", profile.end_temperature_c)
        options.setdefault("t_max_c", profile.t_start_c)
        options.setdefault("max_rate_c_min", rate)
        return SupersaturationController(sol, options.pop("delta_c_setpoint"), **options)
    from crystalloop.control.dnc import DirectNucleationController

    if "counts_setpoint" not in options:
        raise ConfigError("controller 'dnc' needs counts_setpoint= (wanted particle count per measurement) "
                          "and band= (half width of the dead band)")
    options.setdefault("band", 0.1 * options["counts_setpoint"])
    options.setdefault("t_min_c", profile.end_temperature_c)
    options.setdefault("t_max_c", profile.t_start_c)
    options.setdefault("cooling_rate_c_min", profile.segments[0].rate_c_min)
    if len(profile.segments) > 1:
        options.setdefault("heating_rate_c_min", profile.segments[1].rate_c_min)
    return DirectNucleationController(options.pop("counts_setpoint"), options.pop("band"), **options)
