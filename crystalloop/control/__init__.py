"""Control: execute recipes and feedback controllers safely on any backend.

* :mod:`~crystalloop.control.safety`: :class:`SafeThermostat` (limits, software ramping,
  watchdog with safe state) in front of every thermostat.
* :mod:`~crystalloop.control.pid`: :class:`PID` (anti-windup, rate limit, bumpless),
  :class:`ProfileTracker` and :class:`CascadePID` on the reactor temperature.
* :mod:`~crystalloop.control.nmpc`: :class:`NMPCController` (CasADi/Ipopt, multiple
  shooting, warm-started, falls back to tracking);
  :mod:`~crystalloop.control.identify`: fit its thermal model to logged data.
* :mod:`~crystalloop.control.dnc`: :class:`DirectNucleationController` from particle counts;
  :mod:`~crystalloop.control.ssc`: :class:`SupersaturationController` from concentration.
* :mod:`~crystalloop.control.controller`: the :class:`Controller` protocol the runner talks
  to, implemented by every controller above; :func:`make_controller` by name.
* :mod:`~crystalloop.control.runner`: :func:`run` a recipe or controller on a backend URL
  with :class:`RunOptions`, logging everything to the experiment store; the loop itself is
  :class:`~crystalloop.control.loop.RunLoop`, step by step;
  :mod:`~crystalloop.control.plots`: :func:`plot_samples` / :func:`plot_stored_run`, every
  logged channel of a run against time.

Single-batch execution only: the closed loop over many batches is :mod:`crystalloop.campaign`.
"""

from crystalloop.control.controller import Controller, ControllerBase
from crystalloop.control.dnc import DirectNucleationController, ImageCounter, dnc_mode
from crystalloop.control.identify import identify_thermal_model, simulate_thermal_model
from crystalloop.control.loop import RunLoop
from crystalloop.control.nmpc import NMPCController, ThermalModel, thermal_model_from_params
from crystalloop.control.options import RunOptions
from crystalloop.control.pid import PID, CascadePID, Observation, ProfileTracker
from crystalloop.control.plots import plot_samples, plot_stored_run
from crystalloop.control.runner import (
    CONTROLLERS,
    RunResult,
    continuation_of,
    make_controller,
    run,
    run_status,
    tracking_metrics,
)
from crystalloop.control.safety import SAFE_STATES, SafeThermostat, Watchdog
from crystalloop.control.ssc import SupersaturationController

__all__ = [
    "PID", "CascadePID", "ProfileTracker", "Observation",
    "NMPCController", "ThermalModel", "thermal_model_from_params",
    "identify_thermal_model", "simulate_thermal_model",
    "DirectNucleationController", "ImageCounter", "dnc_mode", "SupersaturationController",
    "SafeThermostat", "Watchdog", "SAFE_STATES",
    "Controller", "ControllerBase", "RunOptions", "RunLoop",
    "run", "run_status", "continuation_of", "make_controller", "tracking_metrics", "RunResult", "CONTROLLERS",
    "plot_samples", "plot_stored_run",
]
