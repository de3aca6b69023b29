"""Run a whole recipe on the virtual crystallizer: :func:`simulate` → :class:`SimResult`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, ProfileError
from crystalloop.hardware.base import Frame, ThermostatLimits
from crystalloop.hardware.sim.kinetics import KineticParams
from crystalloop.hardware.sim.plant import CameraOptics, VirtualCrystallizer
from crystalloop.hardware.sim.thermal import ThermalParams
from crystalloop.profiles import ProfileBounds, ThermocycleProfile

__all__ = ["SimResult", "simulate", "default_recipe_path"]


def default_recipe_path() -> Path:
    """The shipped 3-cycle example recipe (``examples/recipes/three_cycle.yaml``, also packaged)."""
    from importlib import resources

    packaged = Path(str(resources.files("crystalloop") / "data" / "recipes" / "three_cycle.yaml"))
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "examples" / "recipes" / "three_cycle.yaml"


@dataclass
class SimResult:
    """Outcome of :func:`simulate`.

    Attributes
    ----------
    cqas : dict
        ``D10_um, D50_um, D90_um, DoA_pct, crystallinity_pct, yield_pct, batch_time_min``.
    timeseries : DataFrame
        One row per sample: ``time_s, T_set_c, T_bath_c, T_jacket_c, T_reactor_c, conc_kg_kg,
        csat_kg_kg, supersaturation, counts, transmissivity_pct, crystal_mass_kg,
        amorphous_mass_kg, number_per_m3, agglomerate_per_m3, mass_balance_error`` (true values;
        ``counts`` and ``transmissivity_pct`` are noisy sensor readings, ``conc_meas_kg_kg`` and
        ``T_reactor_meas_c`` the noisy probe/Pt100 readings).
    psd : DataFrame
        Final PSD (:func:`~crystalloop.hardware.sim.cqa.psd_frame`).
    frames : list of Frame
        Probe images (empty unless ``image_interval_s`` was given).
    profile : ThermocycleProfile
    kinetics : KineticParams
        The batch's kinetics (with its seeded variability applied).
    seed : int
    stats : dict
        Integration statistics (steps, rejected steps, mass-balance error, ledger).
    """

    cqas: dict[str, float]
    timeseries: pd.DataFrame
    psd: pd.DataFrame
    frames: list[Frame]
    profile: ThermocycleProfile
    kinetics: KineticParams
    seed: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def mass_balance_error(self) -> float:
        return float(self.stats.get("mass_balance_error", np.nan))

    def __repr__(self) -> str:
        c = ", ".join(f"{k}={v:.4g}" for k, v in self.cqas.items())
        return f"SimResult({self.kinetics.name!r}, seed={self.seed}, {c}, {len(self.frames)} frames)"


def simulate(
    profile: ThermocycleProfile | dict | str,
    *,
    kinetics: str | KineticParams = "default",
    seed: int = 0,
    n_classes: int | None = None,
    image_interval_s: float | None = None,
    sample_interval_s: float = 60.0,
    thermal: ThermalParams | str | None = None,
    limits: ThermostatLimits | None = None,
    bounds: ProfileBounds | None = None,
    variability: bool = True,
    noise: bool = True,
    limiter: str = "vanleer",
    cfl: float = 0.9,
    rel_tol: float = 0.3,
    max_dt_s: float = 120.0,
    end_hold_s: float = 0.0,
    seed_point: str = "saturation",
    camera: CameraOptics | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> SimResult:
    """Run a thermocycle recipe on the virtual crystallizer.

    The thermostat setpoint follows the profile's piecewise-linear program; the bath lags
    it, the reactor lags the jacket (unless ``thermal="ideal"``), and the population
    balance runs at the reactor temperature.

    Parameters
    ----------
    profile : ThermocycleProfile, dict or path
        The recipe (a dict or YAML/JSON path is loaded with ThermocycleProfile).
    kinetics : str or KineticParams
        Shipped name, YAML path or parameter object.
    seed : int
        Seeds the batch-to-batch kinetic variability, sensor noise and images.
    n_classes : int, optional
        Size classes (default from the kinetic set).
    image_interval_s : float, optional
        Grab a probe image every so many seconds (rendered with ``vision.render``).
    sample_interval_s : float
        Time-series sampling interval.
    thermal : ThermalParams or "ideal", optional
    limits : ThermostatLimits, optional
        Thermostat limits the recipe must respect (default: the thermal model's range).
    bounds : ProfileBounds, optional
        Also check the recipe against design bounds (e.g. ``DEFAULT_BOUNDS``); off by default
        because the simulator also runs cases outside the seed-003 design space.
    variability, noise : bool
        Seeded kinetic variability / measurement noise.
    limiter, cfl, rel_tol, max_dt_s : numerics (see :mod:`crystalloop.hardware.sim.pbm`).
    end_hold_s : float
        Extra time at the final setpoint after the program ends.
    seed_point : {"saturation", "start"}
        Charge the seeds when the reactor first cools 0.5 °C below the saturation temperature of
        ``c0`` (default, lab practice; at once if the recipe starts there) or at t = 0.
    camera : CameraOptics, optional
    progress : callable ``(t_s, t_end_s) -> None``, optional
        Called after every sample.

    Returns
    -------
    SimResult

    Raises
    ------
    ProfileError
        Infeasible recipe (bounds or thermostat limits), naming the segment and bound.
    KineticsError
        Malformed kinetic set.

    Examples
    --------
    >>> from crystalloop.profiles import ThermocycleProfile, Segment
    >>> p = ThermocycleProfile(40.0, 0.1, 50.0, [Segment(10.0, 0.2)])
    >>> r = simulate(p, seed=1)
    >>> 10 < r.cqas["D50_um"] < 500, r.mass_balance_error < 1e-10
    (True, True)
    """
    if isinstance(profile, dict):
        profile = ThermocycleProfile.from_dict(profile)
    elif isinstance(profile, str) or hasattr(profile, "__fspath__"):
        profile = ThermocycleProfile.from_file(profile)
    if not isinstance(profile, ThermocycleProfile):
        raise ProfileError(f"profile must be a ThermocycleProfile, dict or recipe file, got {type(profile).__name__}")
    th = thermal if isinstance(thermal, ThermalParams) else ThermalParams()
    if limits is None:
        limits = ThermostatLimits(th.min_c, th.max_c, th.max_ramp_c_min, source="device")
    profile.validate(bounds, limits)
    if not (np.isfinite(sample_interval_s) and sample_interval_s > 0):
        raise ConfigError(f"sample_interval_s must be > 0 s, got {sample_interval_s!r}")
    if image_interval_s is not None and not (np.isfinite(image_interval_s) and image_interval_s > 0):
        raise ConfigError(f"image_interval_s must be > 0 s or None, got {image_interval_s!r}")
    if not (np.isfinite(end_hold_s) and end_hold_s >= 0):
        raise ConfigError(f"end_hold_s must be >= 0 s, got {end_hold_s!r}")

    plant = VirtualCrystallizer(
        kinetics, c0_mg_g=profile.c0_mg_g, seed_loading=profile.seed_loading, t_start_c=profile.t_start_c,
        thermal=thermal, seed=seed, variability=variability, noise=noise, n_classes=n_classes,
        limiter=limiter, cfl=cfl, rel_tol=rel_tol, max_dt_s=max_dt_s, camera=camera, seed_point=seed_point,
    )
    plant.set_setpoint(profile)
    t_end = profile.batch_time_s + end_hold_s
    samples = np.arange(0.0, t_end, sample_interval_s)
    samples = np.append(samples, t_end)
    img_times = (np.arange(0.0, t_end + 1e-9, image_interval_s) if image_interval_s else np.empty(0))
    events = sorted({float(t) for t in samples} | {float(t) for t in img_times})
    sample_set = set(float(t) for t in samples)
    img_set = set(float(t) for t in img_times)

    rows: list[dict[str, float]] = []
    frames: list[Frame] = []
    for t in events:
        plant.advance_to(t)
        if t in sample_set:
            row = plant.truth()
            row["T_reactor_meas_c"] = plant.measure("T_reactor_c")
            row["conc_meas_kg_kg"] = plant.measure("conc_kg_kg")
            row["counts"] = plant.measure("counts")
            row["transmissivity_pct"] = plant.measure("transmissivity_pct")
            rows.append(row)
            if progress is not None:
                progress(t, t_end)
        if t in img_set:
            img, truth = plant.render_frame()
            frames.append(Frame(img, t, plant.camera.pixel_size_um, truth, {"source": "sim"}))

    cq = plant.cqas()
    cq["batch_time_min"] = t_end / 60.0
    stats = {
        "steps": plant.pbm.ledger.steps,
        "rejected_steps": plant.pbm.ledger.rejected_steps,
        "mass_balance_error": plant.pbm.mass_balance_error(),
        "n_classes": plant.pbm.grid.n,
        "l_max_um": float(plant.pbm.grid.edges_um[-1]),
        "ledger": dict(vars(plant.pbm.ledger)),
        "overflow_fraction": _overflow(plant),
        "seed_time_s": plant.seed_time_s,
    }
    return SimResult(cq, pd.DataFrame(rows), plant.psd(), frames, profile, plant.kinetics, int(seed), stats)


def _overflow(plant: VirtualCrystallizer) -> float:
    """Volume fraction of crystals in the last size class (grid too short if not ≈ 0)."""
    pbm = plant.pbm
    v = (pbm.Np + pbm.Na) * pbm.L3
    tot = v.sum()
    return float(v[-1] / tot) if tot > 0 else 0.0
