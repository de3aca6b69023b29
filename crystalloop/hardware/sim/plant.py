"""The virtual crystallizer plant: thermostat + jacketed vessel + population balance + sensors.

:class:`VirtualCrystallizer` couples the thermal model (:mod:`.thermal`) and the population
balance (:mod:`.pbm`) and produces the measurements the devices of :mod:`.devices` return.
It integrates lazily: :meth:`advance_to` moves the plant to a time, and the devices call it
with their clock's ``now()`` before every read or write. Randomness comes from one seed,
split into independent streams for batch-to-batch kinetic variability, sensor noise and
images, so a run is byte-identical for the same seed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError, LimitError
from crystalloop.hardware.sim.cqa import compute_cqas, psd_frame
from crystalloop.hardware.sim.kinetics import KineticParams, load_kinetics
from crystalloop.hardware.sim.pbm import PopulationBalance
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal

__all__ = ["VirtualCrystallizer", "CameraOptics"]

_K0 = 273.15


class _PiecewiseLinear:
    """Fast scalar linear interpolation through knots (constant outside)."""

    def __init__(self, t: np.ndarray, y: np.ndarray) -> None:
        self.t = [float(v) for v in t]
        self.y = [float(v) for v in y]

    def __call__(self, t_s: float) -> float:
        t, y = self.t, self.y
        if t_s <= t[0]:
            return y[0]
        if t_s >= t[-1]:
            return y[-1]
        i = bisect.bisect_right(t, t_s)
        t0, t1 = t[i - 1], t[i]
        return y[i - 1] + (y[i] - y[i - 1]) * (t_s - t0) / (t1 - t0)


class CameraOptics:
    """Imaging probe geometry (PVM/EasyViewer-like).

    Parameters
    ----------
    shape : (rows, cols)
    pixel_size_um : float
    depth_of_field_um : float
        Depth of the imaged slab; the imaged volume is ``rows·cols·px²·depth``.
    aspect_ratio : (low, high)
        Length/width of primary crystals in images.
    kind : str or mapping
        Crystal habit(s) drawn for primaries.
    """

    def __init__(self, shape=(960, 1280), pixel_size_um=1.0, depth_of_field_um=500.0,
                 aspect_ratio=(1.5, 4.0), kind="rod") -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_um = float(pixel_size_um)
        self.depth_of_field_um = float(depth_of_field_um)
        self.aspect_ratio = aspect_ratio
        self.kind = kind
        if self.pixel_size_um <= 0 or self.depth_of_field_um <= 0 or min(self.shape) < 8:
            raise ConfigError(f"camera optics need pixel_size_um > 0, depth_of_field_um > 0 and a shape "
                              f">= 8 px, got {pixel_size_um}, {depth_of_field_um}, {shape}")

    @property
    def volume_m3(self) -> float:
        r, c = self.shape
        return r * c * self.pixel_size_um**2 * self.depth_of_field_um * 1e-18


class VirtualCrystallizer:
    """A simulated batch cooling crystallizer.

    Parameters
    ----------
    kinetics : str, path, mapping or KineticParams
        Kinetic parameter set (``"default"``, ``"pharmapy"``, ``"paracetamol-ethanol"`` or a YAML path).
    c0_mg_g : float
        Initial solute concentration, mg per g solvent.
    seed_loading : float
        Seed mass / initially dissolved solute mass.
    t_start_c : float
        Initial temperature of bath, jacket and content, °C.
    thermal : ThermalParams or "ideal"
        ``"ideal"`` makes the reactor follow the setpoint exactly (analytic tests, PharmaPy case).
    seed : int
        Seed of the batch-to-batch variability, the sensor noise and the images.
    variability, noise : bool
        Switch kinetic variability / measurement noise off for exact checks.
    n_classes, l_max_um, limiter, cfl, rel_tol : see :class:`~crystalloop.hardware.sim.pbm.PopulationBalance`.
    max_dt_s : float
        Largest plant step, s (the thermal model is sub-stepped at ≤ 5 s inside).
    seed_point : {"saturation", "start"}
        When the seeds are charged: when the reactor first cools to the saturation temperature
        of ``c0`` minus ``seed_subcooling_c`` (default; at t = 0 if the start is already there),
        or at t = 0 regardless.
    seed_subcooling_c : float
        Subcooling below the saturation temperature at which seeds are charged, °C.
    camera : CameraOptics, optional
    counter_volume_m3 : float
        Suspension volume a particle-counter reading samples (FBRM-like counts).
    counter_min_um : float
        Smallest particle the counter sees.
    path_length_mm : float
        Optical path of the transmissivity probe.

    Attributes
    ----------
    t_s : float
        Plant time.
    pbm : PopulationBalance
        Ground truth population (PSD, masses).
    """

    def __init__(
        self,
        kinetics: str | KineticParams | Any = "default",
        *,
        c0_mg_g: float = 40.0,
        seed_loading: float = 0.1,
        t_start_c: float = 50.0,
        thermal: ThermalParams | str | None = None,
        seed: int = 0,
        variability: bool = True,
        noise: bool = True,
        n_classes: int | None = None,
        l_max_um: float | None = None,
        limiter: str = "vanleer",
        cfl: float = 0.9,
        rel_tol: float = 0.3,
        max_dt_s: float = 120.0,
        camera: CameraOptics | None = None,
        seed_point: str = "saturation",
        seed_subcooling_c: float = 0.5,
        counter_volume_m3: float = 2e-8,
        counter_min_um: float = 5.0,
        path_length_mm: float = 2.0,
    ) -> None:
        kin = load_kinetics(kinetics)
        if thermal is None:
            thermal = ThermalParams()
        if isinstance(thermal, str):
            if thermal != "ideal":
                raise ConfigError(f"thermal must be a ThermalParams or 'ideal', got {thermal!r}")
            self.ideal_thermal = True
            thermal = ThermalParams()
        else:
            if not isinstance(thermal, ThermalParams):
                raise ConfigError(f"thermal must be a ThermalParams or 'ideal', got {type(thermal).__name__}")
            self.ideal_thermal = False
        self.thermal = thermal
        if not (math.isfinite(max_dt_s) and max_dt_s > 0):
            raise ConfigError(f"max_dt_s must be > 0 s, got {max_dt_s!r}")
        for name, v in (("c0_mg_g", c0_mg_g), ("seed_loading", seed_loading), ("t_start_c", t_start_c)):
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
        if c0_mg_g <= 0:
            raise ConfigError(f"c0_mg_g must be > 0 mg/g solvent, got {c0_mg_g}")
        if seed_loading < 0:
            raise ConfigError(f"seed_loading must be >= 0, got {seed_loading}")
        if not thermal.min_c <= t_start_c <= thermal.max_c:
            raise LimitError(f"start temperature {t_start_c} °C lies outside the thermostat range "
                             f"{thermal.min_c}..{thermal.max_c} °C")
        self.seed = int(seed)
        ss = np.random.SeedSequence(self.seed)
        kin_ss, noise_ss, img_ss = ss.spawn(3)
        self.nominal_kinetics = kin
        self.kinetics = kin.with_variability(np.random.default_rng(kin_ss)) if variability else kin
        self.noise = bool(noise)
        self.rng_noise = np.random.default_rng(noise_ss)
        self.rng_images = np.random.default_rng(img_ss)
        self.pbm = PopulationBalance(self.kinetics, volume_L=thermal.volume_L, n_classes=n_classes,
                                     l_max_um=l_max_um, limiter=limiter, cfl=cfl, rel_tol=rel_tol)
        c0_kg_kg = c0_mg_g * 1e-3
        c0_native = c0_kg_kg if kin.basis == "kg/kg" else c0_kg_kg * kin.solvent_density_kg_m3
        seed_mass = seed_loading * c0_kg_kg * self.pbm.m_solvent_kg
        if seed_point not in ("saturation", "start"):
            raise ConfigError(f"seed_point must be 'saturation' or 'start', got {seed_point!r}")
        # seeds are charged when the cooling solution first reaches its saturation temperature minus
        # `seed_subcooling_c` (lab practice: seeding a clear undersaturated solution dissolves the
        # seeds), or at t = 0 if it already is there or with seed_point='start'
        self.seed_temperature_c = -math.inf
        if seed_mass > 0 and seed_point == "saturation":
            try:
                t_sat = self.kinetics.saturation_temperature_c(c0_mg_g)
            except Exception:  # solubility never reaches c0 in the range: seed at once
                t_sat = math.inf
            self.seed_temperature_c = t_sat - float(seed_subcooling_c)
        self.pbm.initialize(c0_native, 0.0)
        self._pending_seed_kg = seed_mass
        self.seed_time_s: float | None = None
        self.M_solute0 = self.pbm.M_solute
        if t_start_c <= self.seed_temperature_c or seed_point == "start" or seed_mass == 0:
            self._charge_seeds(0.0)
        self.c0_mg_g, self.seed_loading, self.t_start_c = float(c0_mg_g), float(seed_loading), float(t_start_c)
        self.t_s = 0.0
        self.x = (float(t_start_c),) * 3  # bath, jacket, reactor
        self._setpoint: float | Callable[[float], float] = float(t_start_c)
        self.running = True
        self.max_dt_s = float(max_dt_s)
        self._dTdt = 0.0
        self.camera = camera or CameraOptics()
        self.counter_volume_m3 = float(counter_volume_m3)
        self.counter_min_um = float(counter_min_um)
        self.path_length_mm = float(path_length_mm)
        self.stirrer_rpm = 300.0

    def _charge_seeds(self, t_s: float) -> None:
        if self._pending_seed_kg > 0:
            self.pbm.add_seeds(self._pending_seed_kg)
        self._pending_seed_kg = 0.0
        self.seed_time_s = t_s

    # ------------------------------------------------------------------ setpoint
    @property
    def setpoint_c(self) -> float:
        sp = self._setpoint
        return float(sp(self.t_s)) if callable(sp) else float(sp)

    def set_setpoint(self, value: Any) -> None:
        """Constant setpoint (°C), a :class:`~crystalloop.profiles.ThermocycleProfile` (its setpoint
        program, time measured from plant time 0) or any callable ``t_s -> °C``."""
        if hasattr(value, "knots") and hasattr(value, "segments"):
            t, y = value.knots
            self._setpoint = _PiecewiseLinear(t, y)
            return
        if callable(value):
            self._setpoint = value
            return
        v = float(value)
        if not math.isfinite(v):
            raise LimitError(f"setpoint must be a finite temperature, got {value!r}")
        self._setpoint = v

    # ------------------------------------------------------------------ integration
    @property
    def T_bath_c(self) -> float:
        return self.x[0]

    @property
    def T_jacket_c(self) -> float:
        return self.x[1]

    @property
    def T_reactor_c(self) -> float:
        return self.x[2]

    def _sp_fn(self) -> Callable[[float], float] | float:
        if not self.running:
            return self.thermal.T_ambient_c
        return self._setpoint

    def advance_to(self, t_s: float) -> None:
        """Integrate the plant from :attr:`t_s` up to ``t_s`` (never backwards)."""
        t_end = float(t_s)
        if not math.isfinite(t_end):
            raise ConfigError(f"cannot advance the plant to t = {t_s!r}")
        sp = self._sp_fn()
        pbm = self.pbm
        while self.t_s < t_end - 1e-9:
            dt_lim = min(self.max_dt_s, t_end - self.t_s)
            if self._dTdt != 0.0:
                dt_lim = min(dt_lim, max(1.0 / abs(self._dTdt), 0.5))
            if self.ideal_thermal:
                Tr = float(sp(self.t_s)) if callable(sp) else float(sp)
            else:
                Tr = self.x[2]
            dt = pbm.step(Tr + _K0, dt_lim, self._dTdt)
            t_new = self.t_s + dt
            if self.ideal_thermal:
                T = float(sp(t_new)) if callable(sp) else float(sp)
                self._dTdt = (T - Tr) / dt
                self.x = (T, T, T)
            else:
                x_new = advance_thermal(self.x, sp, self.t_s, t_new, self.thermal)
                self._dTdt = (x_new[2] - self.x[2]) / dt
                self.x = x_new
            self.t_s = t_new
            if self.seed_time_s is None and self.x[2] <= self.seed_temperature_c:
                self._charge_seeds(self.t_s)
        if self.t_s < t_end:
            self.t_s = t_end

    # ------------------------------------------------------------------ truth
    def csat_kg_kg(self, T_c: float | None = None) -> float:
        T = self.T_reactor_c if T_c is None else T_c
        cs = self.kinetics.csat(T + _K0)
        return cs if self.kinetics.basis == "kg/kg" else cs * self.pbm.V_m3 / self.pbm.m_solvent_kg

    def truth(self) -> dict[str, float]:
        """Ground-truth state (no noise) at :attr:`t_s`."""
        pbm = self.pbm
        k = self.kinetics
        T = self.T_reactor_c
        cs = k.csat(T + _K0)
        c = pbm.concentration()
        N = pbm.number()
        m_c = pbm.crystal_mass()
        return {
            "time_s": self.t_s,
            "T_set_c": self.setpoint_c,
            "T_bath_c": self.T_bath_c,
            "T_jacket_c": self.T_jacket_c,
            "T_reactor_c": T,
            "conc_kg_kg": pbm.concentration_kg_kg(),
            "csat_kg_kg": self.csat_kg_kg(),
            "supersaturation": (c - cs) / cs,
            "crystal_mass_kg": m_c,
            "amorphous_mass_kg": pbm.M_am,
            "number_per_m3": float(N.sum()) / pbm.V_m3,
            "agglomerate_per_m3": float(pbm.Na.sum()) / pbm.V_m3,
            "DoA_pct": self._doa(),
            "crystallinity_pct": 100.0 * m_c / (m_c + pbm.M_am) if m_c + pbm.M_am > 0 else float("nan"),
            "mass_balance_error": pbm.mass_balance_error(),
        }

    def _doa(self) -> float:
        pbm = self.pbm
        if pbm.P.shape[0] < 2:
            return 0.0
        big = pbm.L >= self.kinetics.doa_min_size_um
        v = pbm.P[:, big] @ pbm.L3[big]
        return 100.0 * float(v[1] / v.sum()) if v.sum() > 0 else 0.0

    def psd(self) -> pd.DataFrame:
        """Current crystalline PSD (see :func:`~crystalloop.hardware.sim.cqa.psd_frame`)."""
        self.pbm.flush_agglomeration()
        g = self.pbm.grid
        return psd_frame(g.edges_um, g.centers_um, self.pbm.Np, self.pbm.Na, self.pbm.V_m3)

    def cqas(self) -> dict[str, float]:
        """CQAs of the current state with the elapsed time as batch time."""
        self.pbm.flush_agglomeration()
        return compute_cqas(self.pbm, self.t_s, self.M_solute0)

    # ------------------------------------------------------------------ sensors (true + noise)
    def _amorphous_number(self) -> float:
        am = self.kinetics.amorphous
        if am is None or self.pbm.M_am <= 0:
            return 0.0
        m1 = self.kinetics.crystal_density_kg_m3 * math.pi / 6 * (am.size_um * 1e-6) ** 3
        return self.pbm.M_am / m1

    def transmissivity_true(self) -> float:
        """Transmission (%) from the projected particle area (Beer–Lambert, extinction efficiency 2)."""
        pbm = self.pbm
        area = float((pbm.Np + pbm.Na) @ pbm.L2) * (math.pi / 4) * 1e-12
        am = self.kinetics.amorphous
        if am is not None:
            area += self._amorphous_number() * math.pi / 4 * (am.size_um * 1e-6) ** 2
        tau = 2.0 * area / pbm.V_m3 * self.path_length_mm * 1e-3
        return 100.0 * math.exp(-tau)

    def counts_expected(self) -> float:
        """Expected particle count of one counter reading (particles ≥ ``counter_min_um``)."""
        pbm = self.pbm
        big = pbm.L >= self.counter_min_um
        n = float((pbm.Np[big] + pbm.Na[big]).sum())
        am = self.kinetics.amorphous
        if am is not None and am.size_um >= self.counter_min_um:
            n += self._amorphous_number()
        return n / pbm.V_m3 * self.counter_volume_m3

    def measure(self, channel: str) -> float:
        """One noisy measurement of ``channel`` at the current plant time.

        Channels: ``T_reactor_c``, ``T_jacket_c``, ``conc_kg_kg``, ``transmissivity_pct``, ``counts``.
        """
        nz = self.kinetics.noise
        rng = self.rng_noise
        on = self.noise
        if channel == "T_reactor_c":
            return self.T_reactor_c + (rng.normal(0, nz["temperature_c"]) if on else 0.0)
        if channel == "T_jacket_c":
            return self.T_jacket_c + (rng.normal(0, nz["temperature_c"]) if on else 0.0)
        if channel == "conc_kg_kg":
            c = self.pbm.concentration_kg_kg()
            return c * (1.0 + rng.normal(0, nz["concentration_rel"])) if on else c
        if channel == "transmissivity_pct":
            t = self.transmissivity_true()
            return float(np.clip(t + (rng.normal(0, nz["transmissivity_pct"]) if on else 0.0), 0.0, 100.0))
        if channel == "counts":
            lam = max(self.counts_expected(), 0.0)
            return float(rng.poisson(lam)) if on else lam
        raise ConfigError(f"unknown measurement channel {channel!r}; expected T_reactor_c, T_jacket_c, "
                          f"conc_kg_kg, transmissivity_pct or counts")

    # ------------------------------------------------------------------ images
    def particle_list(self, rng: np.random.Generator | None = None) -> pd.DataFrame:
        """Particles in one camera frame drawn from the current population (``vision.render`` schema)."""
        from crystalloop.vision.render import sample_particles

        rng = self.rng_images if rng is None else rng
        cam = self.camera
        pbm = self.pbm
        pbm.flush_agglomeration()
        scale = cam.volume_m3 / pbm.V_m3
        L = pbm.L
        frames = []
        common = dict(shape=cam.shape, pixel_size_um=cam.pixel_size_um, min_size_um=cam.pixel_size_um * 2)
        if pbm.Np.any():
            frames.append(sample_particles(L, pbm.Np * scale, aspect_ratio=cam.aspect_ratio,
                                           kind=cam.kind, seed=rng, **common))
        if pbm.Na.any():
            frames.append(sample_particles(L, pbm.Na * scale, aspect_ratio=(1.2, 2.0), kind="ellipse",
                                           agglomerate_fraction=1.0, seed=rng, **common))
        am = self.kinetics.amorphous
        n_am = self._amorphous_number() * scale
        if am is not None and n_am > 0:
            d = am.size_um
            frames.append(sample_particles(np.array([0.8 * d, d, 1.25 * d]), np.array([0.25, 0.5, 0.25]) * n_am,
                                           aspect_ratio=(1.0, 1.3), kind="ellipse", seed=rng, **common))
        frames = [f for f in frames if len(f)]
        if not frames:
            return sample_particles(L[:1], np.zeros(1), seed=rng, **common)
        return pd.concat(frames, ignore_index=True)

    def render_frame(self, rng: np.random.Generator | None = None):
        """A probe image of the current suspension: ``(image uint8, truth DataFrame)``."""
        from crystalloop.vision.render import render_particles

        rng = self.rng_images if rng is None else rng
        parts = self.particle_list(rng)
        cam = self.camera
        # overlap truth and fresh full-frame noise are the renderer's expensive extras: off here
        img, truth = render_particles(parts, shape=cam.shape, pixel_size_um=cam.pixel_size_um,
                                      noise_std=3.0 if self.noise else 0.0, seed=rng,
                                      overlap=False, fast_noise=True)
        return img, truth
