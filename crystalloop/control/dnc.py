"""Direct nucleation control (DNC) from particle counts.

The law (DOMAIN.md §4; as commonly described for FBRM/image-count DNC): with ``N`` the
filtered particle count per measurement, a count setpoint ``N_sp`` and a half band
``delta``,

* ``N > N_sp + delta`` (too many fines): **heat** at ``heating_rate_c_min`` up to
  ``t_max_c`` (kept below the saturation temperature so the seeds survive) to dissolve
  fines;
* ``N < N_sp - delta``: **cool** at ``cooling_rate_c_min`` down to ``t_min_c`` to grow the
  crystals (and nucleate if the count falls further);
* otherwise **hold** the temperature; a hold that lasts longer than ``max_hold_min``
  resumes cooling at ``cooling_rate_c_min`` (an extension of the textbook law: inside the
  band the count no longer changes once the supersaturation is consumed, so a pure hold
  would never reach the end temperature; ``max_hold_min=inf`` gives the textbook law).

The setpoint integrates the chosen rate between control instants and is clipped to
``[t_min_c, t_max_c]``. Counts are smoothed by a moving average of ``filter_window``
measurements before the comparison. The batch ends once the setpoint has sat at
``t_min_c`` for ``final_hold_min`` (or after ``max_duration_min``).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from crystalloop.control._feedback import FeedbackLaw
from crystalloop.control.pid import Observation
from crystalloop.errors import ConfigError
from crystalloop.hardware.base import Camera, Reading

__all__ = ["DirectNucleationController", "ImageCounter", "dnc_mode"]


def dnc_mode(counts: float, counts_setpoint: float, band: float) -> str:
    """The DNC decision for one (filtered) count: ``"heat"``, ``"cool"`` or ``"hold"``.

    Examples
    --------
    >>> dnc_mode(130, 100, 20), dnc_mode(70, 100, 20), dnc_mode(110, 100, 20)
    ('heat', 'cool', 'hold')
    """
    if counts > counts_setpoint + band:
        return "heat"
    if counts < counts_setpoint - band:
        return "cool"
    return "hold"


class DirectNucleationController(FeedbackLaw):
    """Direct nucleation control: keep the particle count in a band by heating and cooling.

    Parameters
    ----------
    counts_setpoint : float
        Wanted count per measurement ``N_sp`` (same units as the counter).
    band : float
        Half width ``delta`` of the dead band around the setpoint.
    t_min_c, t_max_c : float
        Temperature range of the setpoint, °C (``t_max_c`` below the saturation
        temperature; ``t_min_c`` is the end temperature of the batch).
    heating_rate_c_min, cooling_rate_c_min : float
        Ramp rates in °C/min (typically 0.1–0.5).
    filter_window : int
        Moving-average length over counts.
    max_hold_min : float
        Longest hold inside the band before cooling resumes, min (``inf``: hold forever).
    final_hold_min : float
        Hold at ``t_min_c`` before the batch ends, min.
    max_duration_min : float
        Hard end of the batch, min.

    Attributes
    ----------
    mode_ : str
        Last decision (``"heat"``, ``"cool"``, ``"hold"``).
    history_ : list of tuple
        ``(time_s, filtered_counts, mode, setpoint_c)`` for every control step.
    """

    name = "dnc"
    measurements = ("counts",)

    def __init__(
        self,
        counts_setpoint: float,
        band: float,
        *,
        t_min_c: float,
        t_max_c: float,
        heating_rate_c_min: float = 0.3,
        cooling_rate_c_min: float = 0.1,
        filter_window: int = 3,
        max_hold_min: float = 30.0,
        final_hold_min: float = 30.0,
        max_duration_min: float = 24 * 60.0,
    ) -> None:
        for nm, v in (("counts_setpoint", counts_setpoint), ("band", band)):
            if not np.isfinite(v) or v < 0:
                raise ConfigError(f"DNC {nm} must be a finite number >= 0, got {v!r}")
        if not (np.isfinite(t_min_c) and np.isfinite(t_max_c)) or t_min_c >= t_max_c:
            raise ConfigError(f"DNC needs finite t_min_c < t_max_c, got t_min_c={t_min_c} °C, t_max_c={t_max_c} °C")
        for nm, v in (("heating_rate_c_min", heating_rate_c_min), ("cooling_rate_c_min", cooling_rate_c_min)):
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"DNC {nm} must be > 0 °C/min, got {v!r}")
        if int(filter_window) != filter_window or filter_window < 1:
            raise ConfigError(f"DNC filter_window must be a whole number >= 1, got {filter_window!r}")
        if not max_hold_min > 0:
            raise ConfigError(f"DNC max_hold_min must be > 0 min (inf for a pure hold), got {max_hold_min!r}")
        if final_hold_min < 0 or not max_duration_min > 0:
            raise ConfigError(f"DNC needs final_hold_min >= 0 and max_duration_min > 0, got {final_hold_min}, {max_duration_min}")
        self.counts_setpoint = float(counts_setpoint)
        self.band = float(band)
        self.t_min_c, self.t_max_c = float(t_min_c), float(t_max_c)
        self.heating_rate_c_min = float(heating_rate_c_min)
        self.cooling_rate_c_min = float(cooling_rate_c_min)
        self.filter_window = int(filter_window)
        self.final_hold_min = float(final_hold_min)
        self.max_hold_min = float(max_hold_min)
        self._hold_since: float | None = None
        self.max_duration_min = float(max_duration_min)
        self._counts: deque[float] = deque(maxlen=self.filter_window)
        self.mode_ = "hold"
        self.setpoint_ = math.nan
        self.history_: list[tuple[float, float, str, float]] = []

    def reset(self, obs: Observation) -> None:
        """Start from the current setpoint (or reactor temperature), clipped to the range."""
        self._start(obs)
        self._counts.clear()
        self.mode_ = "hold"
        self._hold_since = None

    def filtered_counts(self) -> float:
        return float(np.mean(self._counts)) if self._counts else math.nan

    def setpoint(self, obs: Observation) -> float:
        """Apply the law at ``obs.time_s`` and return the new setpoint in °C."""
        dt_min = self._tick(obs)
        if np.isfinite(obs.counts):
            self._counts.append(float(obs.counts))
        n = self.filtered_counts()
        # without a count yet, cooling would be blind: hold
        mode = "hold" if not np.isfinite(n) else dnc_mode(n, self.counts_setpoint, self.band)
        if mode == "hold" and np.isfinite(n):
            if self._hold_since is None:
                self._hold_since = float(obs.time_s)
            if obs.time_s - self._hold_since >= self.max_hold_min * 60.0:
                mode = "cool"
        elif mode != "hold":
            self._hold_since = None
        # the step just taken used the previous mode (zero-order hold between control instants)
        if self.mode_ == "heat":
            self.setpoint_ = min(self.setpoint_ + self.heating_rate_c_min * dt_min, self.t_max_c)
        elif self.mode_ == "cool":
            self.setpoint_ = max(self.setpoint_ - self.cooling_rate_c_min * dt_min, self.t_min_c)
        self.mode_ = mode
        self._track_end_hold(obs, self.setpoint_ <= self.t_min_c + 1e-9 and mode != "heat")
        self.history_.append((float(obs.time_s), n, mode, self.setpoint_))
        return self.setpoint_


class ImageCounter:
    """A :class:`~crystalloop.hardware.base.ParticleCounter` made of a camera and the vision
    pipeline: each :meth:`read` grabs a frame and counts the particles that
    :func:`crystalloop.vision.pipeline.analyze_image` keeps (in focus, not cut by the border,
    at least ``min_size_um``).

    Parameters
    ----------
    camera : Camera
        Any camera (the virtual crystallizer's probe or a real one).
    min_size_um : float
        Smallest equivalent circular diameter counted, µm.
    settings : crystalloop.vision.pipeline.PipelineSettings, optional
        Segmentation settings (e.g. calibrated with ``crystalloop.vision.calibrate``).
    name : str

    Notes
    -----
    A frame holds far fewer particles than an FBRM measurement volume, so image counts are
    noisier (Poisson: ±√N); use ``filter_window`` > 1 in the DNC controller.
    """

    def __init__(self, camera: Camera, *, min_size_um: float = 5.0, settings=None, name: str | None = None) -> None:
        if not isinstance(camera, Camera):
            raise ConfigError(f"ImageCounter needs a Camera (grab() -> Frame), got {type(camera).__name__}")
        if not (np.isfinite(min_size_um) and min_size_um >= 0):
            raise ConfigError(f"min_size_um must be a finite number >= 0 µm, got {min_size_um!r}")
        self.camera = camera
        self.min_size_um = float(min_size_um)
        self.settings = settings
        self.name = name or f"image counts of '{camera.name}'"
        self.last_frame_ = None

    def read(self) -> Reading:
        from crystalloop.vision.pipeline import analyze_image

        frame = self.camera.grab()
        self.last_frame_ = frame
        res = analyze_image(frame.image, pixel_size_um=frame.pixel_size_um, settings=self.settings)
        kept = res.kept
        n = int((kept["ecd_um"] >= self.min_size_um).sum()) if "ecd_um" in kept else len(kept)
        return Reading(float(n), frame.time_s, "image_counts", "#/frame")

    def close(self) -> None:
        """The camera belongs to the crystallizer; nothing to close here."""
