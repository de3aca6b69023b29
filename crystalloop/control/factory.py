"""Build a controller by name: the one place that knows every shipped controller.

Kept apart from :mod:`~crystalloop.control.controller` (the protocol every controller
implements), so the controllers depend on the protocol and this factory on them, without a cycle.
"""

from __future__ import annotations

import math
from typing import Any

from crystalloop.control.controller import CONTROLLERS, Controller
from crystalloop.control.dnc import DirectNucleationController
from crystalloop.control.nmpc import NMPCController
from crystalloop.control.pid import CascadePID, ProfileTracker
from crystalloop.control.ssc import SupersaturationController
from crystalloop.errors import ConfigError
from crystalloop.hardware.base import GroundTruth
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ThermocycleProfile

__all__ = ["make_controller"]


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
        if options:
            raise ConfigError(f"controller 'track' takes no options, got {sorted(options)}")
        return ProfileTracker(profile)
    if kind == "pid":
        options.setdefault("setpoint_limits", lim)
        options.setdefault("rate_limit_c_min", rate)
        return CascadePID(profile, **options)
    if kind == "nmpc":
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
