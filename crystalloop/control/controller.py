"""What the runner needs of a controller: the :class:`Controller` protocol, and building one by name.

The runner (:mod:`crystalloop.control.runner`) talks to every controller through this
protocol only. A controller sees an :class:`~crystalloop.control.pid.Observation` at each
control instant and answers with a thermostat setpoint; it says which measurements it needs
besides the temperatures, how long the batch lasts, when it is finished, and reports events
and solver wall times. :func:`make_controller` builds the shipped ones by name
(:data:`CONTROLLERS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crystalloop.errors import ConfigError

if TYPE_CHECKING:
    from crystalloop.control.pid import Observation

__all__ = ["Controller", "ControllerBase", "CONTROLLERS", "MEASUREMENTS", "EventSink", "check_controller"]

#: names :func:`~crystalloop.control.factory.make_controller` builds
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
