"""Clock and end-of-batch logic shared by the measurement-feedback laws (DNC, SSC).

A feedback law keeps its setpoint in ``[t_min_c, t_max_c]``; the batch ends once the setpoint
has stayed at ``t_min_c`` for ``final_hold_min`` or at ``max_duration_min`` at the latest.
"""

from __future__ import annotations

import numpy as np

from crystalloop.control.controller import ControllerBase
from crystalloop.control.pid import Observation
from crystalloop.errors import ConfigError


class FeedbackLaw(ControllerBase):
    """Mixin implementing :class:`~crystalloop.control.controller.Controller` for a feedback
    law on a measurement: the subclass sets ``name``, ``t_min_c``, ``t_max_c``, ``final_hold_min`` and
    ``max_duration_min``, calls :meth:`_start` from ``reset``, :meth:`_tick` at the top of
    ``setpoint`` and :meth:`_track_end_hold` after moving the setpoint."""

    name: str
    t_min_c: float
    t_max_c: float
    final_hold_min: float
    max_duration_min: float
    setpoint_: float
    history_: list
    _t_last: float | None = None
    _t_at_min: float | None = None

    @property
    def duration_s(self) -> float:
        """Longest run time, s (``max_duration_min``)."""
        return self.max_duration_min * 60.0

    def reference(self, t_s: float) -> float:
        """The feedback law's current setpoint, °C (it has no recipe trajectory to follow)."""
        return self.setpoint_

    def _start(self, obs: Observation) -> None:
        """Setpoint from the current setpoint (or reactor temperature), clipped; clock restarted."""
        start = obs.T_set_c if np.isfinite(obs.T_set_c) else obs.T_reactor_c
        if not np.isfinite(start):
            raise ConfigError(f"{self.name.upper()} reset needs a finite current setpoint or reactor temperature")
        self.setpoint_ = float(min(max(start, self.t_min_c), self.t_max_c))
        self.history_ = []
        self._t_last = float(obs.time_s)
        self._t_at_min = None

    def _tick(self, obs: Observation) -> float:
        """Minutes since the previous control step (resets on the first call)."""
        if self._t_last is None:
            self.reset(obs)
        dt_min = max(obs.time_s - self._t_last, 0.0) / 60.0
        self._t_last = float(obs.time_s)
        return dt_min

    def _track_end_hold(self, obs: Observation, at_min: bool) -> None:
        """Start (or keep) the final-hold clock while ``at_min``, clear it otherwise."""
        if not at_min:
            self._t_at_min = None
        elif self._t_at_min is None:
            self._t_at_min = float(obs.time_s)

    def finished(self, obs: Observation) -> bool:
        if obs.time_s >= self.duration_s:
            return True
        return self._t_at_min is not None and obs.time_s - self._t_at_min >= self.final_hold_min * 60.0
