"""Simulated devices over a :class:`~crystalloop.hardware.sim.plant.VirtualCrystallizer`.

Every device implements its :mod:`crystalloop.hardware.base` protocol and, before each read or
write, integrates the shared plant up to its clock's ``now()`` (lazy integration: with a
:class:`~crystalloop.hardware.base.VirtualClock`, ``clock.sleep`` only advances time and the
plant catches up on the next device call). Open it with ``connect("sim://?seed=3")``.

Examples
--------
>>> from crystalloop.hardware import connect
>>> cr = connect("sim://?seed=1&kinetics=default&c0_mg_g=40&t_start_c=45")
>>> cr.thermostat.set_setpoint(20.0)
>>> cr.clock.sleep(3600)
>>> 20.0 < cr.thermostat.read_process().value < 24.0
True
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

from crystalloop.errors import BackendError, DeviceDisconnected, LimitError
from crystalloop.hardware.base import (
    BackendURL,
    Clock,
    Crystallizer,
    Frame,
    Reading,
    ThermostatLimits,
    ThermostatStatus,
    VirtualClock,
)
from crystalloop.hardware.sim.plant import VirtualCrystallizer
from crystalloop.hardware.sim.thermal import ThermalParams

__all__ = [
    "open_sim", "SimGroundTruth", "SimThermostat", "SimCamera", "SimTransmissivity", "SimConcentration", "SimCounter",
    "SimStirrer",
]


class _SimDevice:
    def __init__(self, plant: VirtualCrystallizer, clock: Clock, lock: threading.RLock, name: str) -> None:
        self.plant = plant
        self.clock = clock
        self.name = name
        self._lock = lock
        self._closed = False

    def _sync(self) -> float:
        if self._closed:
            raise DeviceDisconnected(f"simulated device '{self.name}' is closed")
        t = self.clock.now()
        self.plant.advance_to(t)
        return t

    def _reading(self, channel: str, unit: str) -> Reading:
        with self._lock:
            t = self._sync()
            return Reading(float(self.plant.measure(channel)), t, channel, unit)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, t={self.plant.t_s:.1f} s)"


class SimThermostat(_SimDevice):
    """Circulating thermostat of the virtual crystallizer (bath lag, ramp limit, jacketed vessel)."""

    def __init__(self, plant, clock, lock, name="sim-thermostat", limits: ThermostatLimits | None = None):
        super().__init__(plant, clock, lock, name)
        th = plant.thermal
        self.limits = limits or ThermostatLimits(th.min_c, th.max_c, th.max_ramp_c_min, source="device")
        if self.limits.min_c < th.min_c or self.limits.max_c > th.max_c:
            raise LimitError(
                f"limits {self.limits.min_c}..{self.limits.max_c} °C of thermostat '{name}' exceed the unit's "
                f"working range {th.min_c}..{th.max_c} °C")

    def get_setpoint(self) -> float:
        with self._lock:
            self._sync()
            return self.plant.setpoint_c

    def set_setpoint(self, value_c: float) -> None:
        value = self.limits.check_setpoint(value_c, self.name)
        with self._lock:
            self._sync()
            self.plant.set_setpoint(value)

    def read_bath(self) -> Reading:
        with self._lock:
            t = self._sync()
            p = self.plant
            noise = p.rng_noise.normal(0, p.kinetics.noise["temperature_c"]) if p.noise else 0.0
            return Reading(p.T_bath_c + noise, t, "T_jacket_c", "°C")

    def read_process(self) -> Reading:
        return self._reading("T_reactor_c", "°C")

    def start(self) -> None:
        with self._lock:
            self._sync()
            self.plant.running = True

    def stop(self) -> None:
        with self._lock:
            self._sync()
            self.plant.running = False

    def status(self) -> ThermostatStatus:
        with self._lock:
            self._sync()
            p = self.plant
            alarms = []
            if not (self.limits.min_c - 5 <= p.T_bath_c <= self.limits.max_c + 5):
                alarms.append(f"EXCESS TEMPERATURE WARNING: bath {p.T_bath_c:.2f} °C outside "
                              f"{self.limits.min_c:g}..{self.limits.max_c:g} °C")
            running = p.running
            return ThermostatStatus(running, 3 if running else 2,
                                    "03 REMOTE START" if running else "02 REMOTE STOP", tuple(alarms))


class SimCamera(_SimDevice):
    """Imaging probe: renders the current suspension with ``crystalloop.vision.render``."""

    def __init__(self, plant, clock, lock, name="sim-camera"):
        super().__init__(plant, clock, lock, name)
        self.pixel_size_um = plant.camera.pixel_size_um

    def grab(self) -> Frame:
        with self._lock:
            t = self._sync()
            img, truth = self.plant.render_frame()
            return Frame(img, t, self.pixel_size_um, truth, {"source": self.name})


class SimTransmissivity(_SimDevice):
    def read(self) -> Reading:
        return self._reading("transmissivity_pct", "%")


class SimConcentration(_SimDevice):
    def read(self) -> Reading:
        return self._reading("conc_kg_kg", "kg/kg")


class SimCounter(_SimDevice):
    def read(self) -> Reading:
        return self._reading("counts", "#")


class SimGroundTruth(_SimDevice):
    """The virtual crystallizer's :class:`~crystalloop.hardware.base.GroundTruth`: the true
    state at the clock's current time (no sensor noise)."""

    def cqas(self) -> dict[str, float]:
        with self._lock:
            self._sync()
            return {k: float(v) for k, v in self.plant.cqas().items() if v is not None}

    def psd(self):
        with self._lock:
            self._sync()
            return self.plant.psd()

    def solubility_kg_kg(self, T_c: float) -> float:
        return float(self.plant.csat_kg_kg(float(T_c)))

    def thermal_model(self) -> ThermalParams | None:
        return None if self.plant.ideal_thermal else self.plant.thermal


class SimStirrer(_SimDevice):
    """Overhead stirrer (0–1000 rpm); speed is recorded (the kinetics do not depend on it)."""

    max_rpm = 1000.0

    def set_speed_rpm(self, rpm: float) -> None:
        rpm = float(rpm)
        if not 0.0 <= rpm <= self.max_rpm:
            raise LimitError(f"stirrer speed {rpm:g} rpm outside 0..{self.max_rpm:g} rpm of '{self.name}'")
        with self._lock:
            self._sync()
            self.plant.stirrer_rpm = rpm

    def get_speed_rpm(self) -> float:
        return float(self.plant.stirrer_rpm)


_INT_OPTS = ("seed", "n_classes")
_FLOAT_OPTS = ("c0_mg_g", "seed_loading", "t_start_c", "l_max_um", "max_dt_s", "rel_tol", "cfl")
_BOOL_OPTS = ("noise", "variability")
_STR_OPTS = ("kinetics", "thermal", "limiter", "seed_point")


def _parse_options(opts: dict[str, str], url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = _INT_OPTS + _FLOAT_OPTS + _BOOL_OPTS + _STR_OPTS
    for key, raw in opts.items():
        if key not in known:
            raise BackendError(f"unknown option {key!r} in backend URL {url!r}; sim:// understands {list(known)}")
        try:
            if key in _INT_OPTS:
                out[key] = int(raw)
            elif key in _FLOAT_OPTS:
                out[key] = float(raw)
            elif key in _BOOL_OPTS:
                low = raw.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                out[key] = low in ("1", "true", "yes", "on")
            else:
                out[key] = raw
        except ValueError:
            kind = "an integer" if key in _INT_OPTS else "a number" if key in _FLOAT_OPTS else "a boolean"
            raise BackendError(f"option {key}={raw!r} in backend URL {url!r} must be {kind}") from None
    if out.get("thermal") not in (None, "ideal", "jacketed"):
        raise BackendError(f"option thermal={out['thermal']!r} in {url!r} must be 'jacketed' or 'ideal'")
    if out.get("thermal") == "jacketed":
        out.pop("thermal")
    return out


def open_sim(parsed: BackendURL, clock: Clock | None = None, *, recipe: Any = None,
             limits: ThermostatLimits | None = None, thermal: ThermalParams | None = None,
             batch_seed: int | None = None, **kw: Any) -> Crystallizer:
    """Open the virtual crystallizer behind a ``sim://`` URL.

    Parameters
    ----------
    parsed : BackendURL
        ``sim://?seed=3&kinetics=default&n_classes=200`` (options: seed, kinetics, n_classes,
        c0_mg_g, seed_loading, t_start_c, l_max_um, noise, variability, thermal=ideal|jacketed,
        limiter, cfl, rel_tol, max_dt_s, seed_point=saturation|start).
    clock : Clock, optional
        Default: a new :class:`VirtualClock`.
    recipe : ThermocycleProfile, optional
        Takes the initial concentration, seed loading and start temperature from the recipe
        (the setpoints are then commanded through the thermostat by a runner).
    batch_seed : int, optional
        Seed of this batch (given by :func:`~crystalloop.hardware.base.connect` ``seed=``):
        the plant seed becomes ``url_seed * 100003 + batch_seed`` (``url_seed`` 0 if the URL
        has none), and the returned crystallizer's ``url`` carries that plant seed, so the
        stored backend URL reproduces the batch.
    limits : ThermostatLimits, optional
        Setpoint limits of the thermostat front (within the thermal model's range).
    thermal : ThermalParams, optional
    **kw
        Overrides of the URL options and any :class:`VirtualCrystallizer` keyword.

    Returns
    -------
    Crystallizer
        Devices, ``ground_truth`` (:class:`SimGroundTruth`) and ``plant`` (the
        :class:`VirtualCrystallizer` itself, for simulator tests).
    """
    url = parsed.url
    if batch_seed is not None:
        raw = dict(parsed.options)
        base = _parse_options({"seed": raw["seed"]}, url)["seed"] if "seed" in raw else 0
        raw["seed"] = str(int(base) * 100_003 + int(batch_seed))
        url = f"sim://{parsed.target}?{urlencode(raw)}"
        parsed = BackendURL(url=url, scheme=parsed.scheme, target=parsed.target, options=raw)
    opts = _parse_options(parsed.options, parsed.url)
    if parsed.target not in ("", "/"):
        raise BackendError(f"sim:// takes no target, got {parsed.target!r} in {parsed.url!r}; use options, "
                           f"e.g. 'sim://?seed=3'")
    if recipe is not None:
        opts.update(c0_mg_g=recipe.c0_mg_g, seed_loading=recipe.seed_loading, t_start_c=recipe.t_start_c)
    opts.update(kw)
    if thermal is not None:
        opts["thermal"] = thermal
    clock = clock if clock is not None else VirtualClock()
    plant = VirtualCrystallizer(**opts)
    if clock.now() != 0.0:
        plant.t_s = float(clock.now())  # the batch starts now on this clock
    lock = threading.RLock()
    return Crystallizer(
        url=parsed.url,
        clock=clock,
        thermostat=SimThermostat(plant, clock, lock, limits=limits),
        camera=SimCamera(plant, clock, lock),
        transmissivity=SimTransmissivity(plant, clock, lock, "sim-transmissivity"),
        concentration=SimConcentration(plant, clock, lock, "sim-concentration"),
        counter=SimCounter(plant, clock, lock, "sim-counter"),
        stirrer=SimStirrer(plant, clock, lock, "sim-stirrer"),
        plant=plant,
        meta={"backend": "sim", "seed": plant.seed, "kinetics": plant.kinetics.name},
        ground_truth=SimGroundTruth(plant, clock, lock, "sim-ground-truth"),
    )
