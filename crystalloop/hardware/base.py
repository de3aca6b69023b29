"""Device interfaces shared by real drivers and the virtual crystallizer.

The interfaces are small :class:`typing.Protocol` classes; the logic (limits, waiting,
ramping, safety) lives in front ends (:mod:`crystalloop.control`), in the style of
bluesky/PyLabRobot. Every reading carries a timestamp from a :class:`Clock`, real or
virtual, so the same runner code drives a lab thermostat in real time or the virtual
crystallizer many times faster than real time.

Backends are chosen by URL only (``sim://``, ``julabo:///dev/ttyUSB0``,
``huber://192.168.0.5:8101``, ``lauda://COM3``): see :func:`connect`.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from crystalloop.errors import BackendError
from crystalloop.limits import ThermostatLimits

__all__ = [
    "Clock",
    "RealClock",
    "VirtualClock",
    "Reading",
    "Frame",
    "ThermostatLimits",
    "ThermostatStatus",
    "Thermostat",
    "Capability",
    "ReportsCapabilities",
    "Camera",
    "TransmissivitySensor",
    "ConcentrationSensor",
    "ParticleCounter",
    "Stirrer",
    "GroundTruth",
    "Crystallizer",
    "BackendURL",
    "parse_backend_url",
    "register_backend",
    "registered_backends",
    "connect",
    "is_simulated",
]


# --------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Source of every timestamp and every wait.

    ``now()`` returns seconds since the clock's epoch (the start of the run for a
    :class:`VirtualClock`, the time of construction for a :class:`RealClock`).
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time (monotonic), measured from construction."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return f"RealClock(now={self.now():.3f} s)"


class VirtualClock:
    """Simulated time: :meth:`sleep` advances time instantly.

    Simulated devices integrate their dynamics lazily up to :meth:`now` whenever they
    are read or written, so a run on a virtual clock is deterministic and runs as fast
    as the model integrates.

    Parameters
    ----------
    start_s : float
        Initial time in seconds.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = float(start_s)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds < 0 or not np.isfinite(seconds):
            raise ValueError(f"VirtualClock.sleep needs a finite duration >= 0 s, got {seconds!r}")
        with self._lock:
            self._t += float(seconds)

    def advance_to(self, t_s: float) -> None:
        """Jump forward to ``t_s`` (never backwards)."""
        with self._lock:
            if t_s > self._t:
                self._t = float(t_s)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._t:.3f} s)"


# --------------------------------------------------------------------------------------------
# Readings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One timestamped measurement.

    Attributes
    ----------
    value : float
        The measured value in ``unit``.
    time_s : float
        Timestamp from the device's clock, in seconds.
    channel : str
        Store channel name, e.g. ``"T_reactor_c"``, ``"T_jacket_c"``, ``"conc_kg_kg"``.
    unit : str
        Unit of ``value`` (``"°C"``, ``"kg/kg"``, ``"%"``, ``"#/frame"``).
    """

    value: float
    time_s: float
    channel: str
    unit: str = ""


@dataclass
class Frame:
    """One camera image with its physical pixel size and timestamp.

    Attributes
    ----------
    image : ndarray, shape (rows, cols) or (rows, cols, 3)
        The image, (row, col) order.
    time_s : float
        Timestamp from the camera's clock, in seconds.
    pixel_size_um : float
        Edge length of one pixel in micrometres.
    truth : pandas.DataFrame or None
        Ground-truth particle list for rendered images (None for real cameras).
    meta : dict
        Anything else the backend knows (exposure, depth of field, ...).
    """

    image: np.ndarray
    time_s: float
    pixel_size_um: float
    truth: Any = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ThermostatStatus:
    """Decoded device status.

    Attributes
    ----------
    running : bool
        Circulation/temperature control is on.
    code : int
        The device's raw status code (0 when the protocol has none).
    message : str
        Readable status text (e.g. ``"03 REMOTE START"``).
    alarms : tuple of str
        Active alarms/warnings in readable form; empty when healthy.
    """

    running: bool
    code: int = 0
    message: str = ""
    alarms: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.alarms


# --------------------------------------------------------------------------------------------
# Device protocols
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Thermostat(Protocol):
    """A circulating thermostat (bath) whose jacket flow sets the reactor temperature."""

    name: str
    limits: ThermostatLimits
    clock: Clock

    def get_setpoint(self) -> float:
        """Current setpoint in °C as the device reports it."""
        ...

    def set_setpoint(self, value_c: float) -> None:
        """Write a setpoint in °C (raises :class:`LimitError` outside ``limits``)."""
        ...

    def read_bath(self) -> Reading:
        """Bath/internal (jacket inflow) temperature, channel ``T_jacket_c``."""
        ...

    def read_process(self) -> Reading:
        """Process/external (Pt100 in the reactor) temperature, channel ``T_reactor_c``."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> ThermostatStatus: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Capability:
    """One function of a device and whether the connected unit has it.

    Attributes
    ----------
    name : str
        Short name: ``"setpoint"``, ``"bath"``, ``"external"``, ``"start_stop"``,
        ``"limits"``, ``"status"``, ``"faults"``, ``"mode"``, ``"version"``,
        ``"control_sensor"``, ``"device_ramp"``, ``"comm_watchdog"``.
    commands : str
        The protocol commands or registers behind it (``"in_sp_03, in_sp_04"``).
    essential : bool
        The driver cannot run a recipe without it (a failure is an error, not a warning).
    present : bool or None
        What the probe at connect found; ``None`` when it was not probed (write-only
        commands, which are checked when first used).
    detail : str
        What was found, or the fallback in use when absent.
    """

    name: str
    commands: str
    essential: bool
    present: bool | None
    detail: str = ""


@runtime_checkable
class ReportsCapabilities(Protocol):
    """A device that probes its optional functions at connect and remembers them."""

    def capabilities(self) -> tuple[Capability, ...]:
        """The capability table of the connected unit, in a fixed order."""
        ...


@runtime_checkable
class Camera(Protocol):
    """An imaging probe (PVM/EasyViewer-like) or microscope camera."""

    name: str
    pixel_size_um: float

    def grab(self) -> Frame: ...

    def close(self) -> None: ...


@runtime_checkable
class TransmissivitySensor(Protocol):
    """Light transmission through the suspension, in % (100 = clear)."""

    name: str

    def read(self) -> Reading: ...

    def close(self) -> None: ...


@runtime_checkable
class ConcentrationSensor(Protocol):
    """In-situ solute concentration (ATR-FTIR/UV-like), in kg solute / kg solvent."""

    name: str

    def read(self) -> Reading: ...

    def close(self) -> None: ...


@runtime_checkable
class ParticleCounter(Protocol):
    """Particle counts per measurement (FBRM-like chord counts or image counts)."""

    name: str

    def read(self) -> Reading: ...

    def close(self) -> None: ...


@runtime_checkable
class Stirrer(Protocol):
    """Overhead stirrer or stirrer bar."""

    name: str

    def set_speed_rpm(self, rpm: float) -> None: ...

    def get_speed_rpm(self) -> float: ...

    def close(self) -> None: ...


@runtime_checkable
class GroundTruth(Protocol):
    """What a simulated backend knows and a real crystallizer cannot tell: the true state.

    An optional ability: a backend that simulates the batch (``sim://``) offers it as
    :attr:`Crystallizer.ground_truth`; a real crystallizer has ``ground_truth=None`` and its
    CQAs come from measurements (images, an offline lab). Values are those of the batch at
    the backend clock's current time.
    """

    def cqas(self) -> dict[str, float]:
        """True critical quality attributes now, unit-suffixed names (``D50_um``, ``DoA_pct``,
        ``crystallinity_pct``, ``yield_pct``, ``batch_time_min``, ...)."""
        ...

    def psd(self) -> Any:
        """True particle size distribution now (pandas DataFrame of size classes, µm)."""
        ...

    def solubility_kg_kg(self, T_c: float) -> float:
        """Solubility c* (kg solute / kg solvent) at ``T_c`` °C."""
        ...

    def thermal_model(self) -> Any:
        """The true thermal parameters of thermostat and jacketed vessel
        (:class:`~crystalloop.hardware.sim.thermal.ThermalParams`), or None when the reactor
        follows the setpoint exactly (an ideal thermal model: nothing for a controller to
        compensate)."""
        ...


@dataclass
class Crystallizer:
    """The devices of one crystallizer, as opened from a backend URL.

    Any device the backend does not have is ``None``. ``ground_truth`` is the optional
    :class:`GroundTruth` of a simulated backend (None on real hardware). ``plant`` holds the
    simulator object itself for ``sim://`` (for simulator tests and benchmarks only;
    orchestration code uses ``ground_truth``).
    """

    url: str
    clock: Clock
    thermostat: Thermostat
    camera: Camera | None = None
    transmissivity: TransmissivitySensor | None = None
    concentration: ConcentrationSensor | None = None
    counter: ParticleCounter | None = None
    stirrer: Stirrer | None = None
    plant: Any = None
    meta: dict = field(default_factory=dict)
    ground_truth: GroundTruth | None = None

    def sensors(self) -> dict[str, Any]:
        """The present single-value sensors by role name."""
        out = {}
        for role in ("transmissivity", "concentration", "counter"):
            dev = getattr(self, role)
            if dev is not None:
                out[role] = dev
        return out

    def close(self) -> None:
        for dev in (
            self.camera,
            self.transmissivity,
            self.concentration,
            self.counter,
            self.stirrer,
            self.thermostat,
        ):
            if dev is not None:
                try:
                    dev.close()
                except Exception:  # closing must never mask the original error
                    pass

    def __enter__(self) -> Crystallizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Backend URLs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL.

    ``julabo:///dev/ttyUSB0?baudrate=4800`` → scheme ``julabo``, target ``/dev/ttyUSB0``,
    options ``{"baudrate": "4800"}``; ``huber://10.0.0.5:8101`` → target ``10.0.0.5:8101``;
    ``sim://?seed=3&kinetics=pharmapy`` → empty target.
    """

    url: str
    scheme: str
    target: str
    options: dict[str, str]


def parse_backend_url(url: str) -> BackendURL:
    """Split a backend URL into scheme, target (port, host:port or path) and options."""
    if not isinstance(url, str) or "://" not in url:
        raise BackendError(
            f"Backend URL {url!r} is malformed: expected 'SCHEME://TARGET[?opt=value...]', "
            f"e.g. 'sim://', 'julabo:///dev/ttyUSB0', 'huber://192.168.0.5:8101'"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    target = (parts.netloc + parts.path) if parts.netloc else parts.path
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return BackendURL(url=url, scheme=scheme, target=target, options=options)


# scheme -> "module:function" (imported lazily so that drivers are optional at import time)
_BACKENDS: dict[str, str | Callable[..., Crystallizer]] = {
    "sim": "crystalloop.hardware.sim.devices:open_sim",
    "julabo": "crystalloop.hardware.julabo:open_julabo",
    "huber": "crystalloop.hardware.huber:open_huber",
    "lauda": "crystalloop.hardware.lauda:open_lauda",
}


# schemes whose backend simulates the batch: connect() hands them the recipe and the batch seed
_SIMULATED: set[str] = {"sim"}


def register_backend(scheme: str, factory: str | Callable[..., Crystallizer], *, simulated: bool = False) -> None:
    """Register a backend factory ``factory(parsed: BackendURL, clock=None, **kw) -> Crystallizer``.

    ``factory`` may be a callable or a ``"module:function"`` string imported on first use.
    A ``simulated`` backend also receives ``recipe=`` and ``seed=`` from :func:`connect`.
    """
    _BACKENDS[scheme.lower()] = factory
    if simulated:
        _SIMULATED.add(scheme.lower())
    else:
        _SIMULATED.discard(scheme.lower())


def is_simulated(url: str) -> bool:
    """Whether the backend behind ``url`` simulates the batch (takes its initial charge from
    the recipe, offers :class:`GroundTruth`) rather than driving a real crystallizer.

    Raises
    ------
    BackendError
        Malformed URL or unknown scheme.
    """
    parsed = _known(url)
    return parsed.scheme in _SIMULATED


def registered_backends() -> list[str]:
    """URL schemes that :func:`connect` understands."""
    return sorted(_BACKENDS)


def _resolve(factory: str | Callable[..., Crystallizer]) -> Callable[..., Crystallizer]:
    if callable(factory):
        return factory
    module_name, _, func = factory.partition(":")
    return getattr(importlib.import_module(module_name), func)


def _known(url: str) -> BackendURL:
    parsed = parse_backend_url(url)
    if parsed.scheme not in _BACKENDS:
        raise BackendError(
            f"Unknown backend URL scheme {parsed.scheme!r} in {url!r}; expected one of "
            f"{', '.join(s + '://' for s in registered_backends())}"
        )
    return parsed


def connect(url: str, *, clock: Clock | None = None, recipe: Any = None, seed: int | None = None,
            **kwargs: Any) -> Crystallizer:
    """Open the crystallizer behind a backend URL.

    Parameters
    ----------
    url : str
        ``sim://`` (virtual crystallizer; options such as ``?seed=1&kinetics=pharmapy``),
        ``julabo://PORT``, ``huber://HOST:PORT`` or ``huber://PORT``, ``lauda://PORT``.
        Any pyserial URL works as a port (``loop://``, ``socket://host:port``).
    clock : Clock, optional
        Defaults to a :class:`VirtualClock` for ``sim://`` and a :class:`RealClock` otherwise.
    recipe : ThermocycleProfile, optional
        The batch about to run. A simulated backend charges its virtual vessel from it
        (initial concentration, seed loading, start temperature); on real hardware the
        operator charges the vessel and the recipe is not passed to the driver.
    seed : int, optional
        Seed of this batch for a simulated backend (batch-to-batch variability), combined
        with a ``seed=`` in the URL; ignored by real hardware.
    **kwargs
        Passed to the backend factory (e.g. ``recipe=`` for the simulator).

    Raises
    ------
    BackendError
        Unknown scheme or malformed URL; the message lists the known schemes.
    """
    parsed = _known(url)
    factory = _resolve(_BACKENDS[parsed.scheme])
    if parsed.scheme in _SIMULATED:
        if recipe is not None:
            kwargs["recipe"] = recipe
        if seed is not None:
            kwargs["batch_seed"] = int(seed)
    return factory(parsed, clock=clock, **kwargs)
