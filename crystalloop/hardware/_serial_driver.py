"""Shared plumbing of the serial thermostat drivers (JULABO, Huber, LAUDA).

Not public: each driver module exposes its own class and ``open_*`` factory.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from crystalloop.errors import (
    CapabilityWarning,
    CommandNotSupported,
    ConfigError,
    DeviceAlarm,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import (
    BackendURL,
    Capability,
    Clock,
    Crystallizer,
    Reading,
    RealClock,
    ThermostatLimits,
    ThermostatStatus,
)
from crystalloop.hardware.transport import LINE_OPTIONS, LineSettings, Transport

__all__ = ["DeviceInfo", "CapabilitySpec", "SerialThermostat", "open_serial_thermostat", "decode_ascii",
           "format_celsius"]

_T = TypeVar("_T")
#: driver operations written to a trace (CALL/RET/ERR lines) and replayed from it
TRACED_OPERATIONS = ("initialize", "get_setpoint", "set_setpoint", "read_bath", "read_process",
                     "start", "stop", "status", "keepalive", "close")

_PRINTABLE = re.compile(rb"^[\x20-\x7e]*$")
_DRIVER_OPTIONS = frozenset({"name", "min_c", "max_c", "max_rate_c_min", "verify", "setpoint_tolerance_c", "trace",
                             "comm_timeout_s", "safe_setpoint_c"})
# keyword arguments a generic caller (the runner) may pass to any backend; the simulator uses them
_IGNORED_KWARGS = frozenset({"recipe", "seed", "kinetics", "thermal"})


@dataclass(frozen=True)
class DeviceInfo:
    """Identity of a connected device.

    Attributes
    ----------
    vendor : str
        ``"JULABO"``, ``"Huber"`` or ``"LAUDA"``.
    model : str
        Model as reported by the device (or given by the user where the protocol has no
        identification command).
    version : str
        Firmware version as reported ("" if unknown).
    raw : str
        The raw identification reply.
    """

    vendor: str
    model: str
    version: str = ""
    raw: str = ""


@dataclass(frozen=True)
class CapabilitySpec:
    """A function a driver needs or uses when present (one row of the capability table).

    Attributes
    ----------
    name : str
        Short name (see :class:`~crystalloop.hardware.base.Capability`).
    commands : str
        Protocol commands or registers.
    essential : bool
        Needed to run a recipe.
    what : str
        Readable description, used in warnings (``"setpoint limits"``).
    fallback : str
        What the driver does when the unit lacks it (warnings say it).
    in_protocol : bool
        False when the brand's protocol has no such command at all: listed as absent,
        without a warning.
    warn : bool
        Whether a unit lacking it gets a :class:`~crystalloop.errors.CapabilityWarning`
        (False for functions whose absence changes nothing in a run: identification,
        the control-sensor query, the device ramp, the communication watchdog; the probe
        table still shows them).
    """

    name: str
    commands: str
    essential: bool
    what: str
    fallback: str = ""
    in_protocol: bool = True
    warn: bool = True


def _traced(name: str, fn: Callable[..., _T]) -> Callable[..., _T]:
    """Wrap a driver operation: one at a time (a keep-alive never splits a write from its
    read-back), and, with a trace, recorded as CALL, then RET or ERR."""

    @functools.wraps(fn)
    def wrapper(self: SerialThermostat, *args: Any) -> _T:
        with self._op_lock:
            try:
                trace = self.transport.trace
                if trace is None or trace.depth:
                    return fn(self, *args)
                from crystalloop.hardware.trace import encode_result

                trace.event("CALL", " ".join([name] + [repr(float(a)) for a in args]))
                trace.depth += 1
                try:
                    out = fn(self, *args)
                except BaseException as exc:
                    trace.depth -= 1
                    trace.event("ERR", f"{type(exc).__name__}: {exc}")
                    raise
                trace.depth -= 1
                trace.event("RET", encode_result(out))
                return out
            finally:
                self._last_op_s = time.monotonic()

    return wrapper


def decode_ascii(line: bytes, what: str, where: str) -> str:
    """Decode a reply as printable ASCII or raise :class:`ProtocolError`."""
    if not isinstance(line, bytes | bytearray):
        raise ProtocolError(f"{where}: expected bytes for {what}, got {type(line).__name__}")
    if not _PRINTABLE.match(line):
        raise ProtocolError(
            f"{where}: reply {bytes(line[:40])!r}{'...' if len(line) > 40 else ''} to {what} contains non-printable bytes "
            f"(line noise or wrong line settings?)"
        )
    return line.decode("ascii").strip()


def format_celsius(value_c: float) -> str:
    """Format a temperature with at most 2 and at least 1 decimal: 55.5, 20.0, -5.25."""
    text = f"{round(float(value_c), 2):.2f}"
    if text.endswith("0"):
        text = text[:-1]
    return "0.0" if text in ("-0.0",) else text


def parse_float(text: str, *, what: str, where: str, lo: float = -1000.0, hi: float = 1000.0) -> float:
    """Parse a plain decimal number (no exponent, no inf/nan) within [lo, hi]."""
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
        raise ProtocolError(f"{where}: expected a number for {what}, got {text!r}")
    value = float(text)
    if not (lo <= value <= hi):
        raise ProtocolError(f"{where}: {what} = {value} is outside the plausible range [{lo}, {hi}]")
    return value


class SerialThermostat:
    """Base class: naming, limits, readings, identification with a line-settings diagnosis.

    Subclasses implement ``_identify()``, ``_probe()``, ``_read_device_limits()`` and the
    :class:`~crystalloop.hardware.base.Thermostat` methods, and list their functions in
    :attr:`CAPABILITIES`. Constructing a driver does no I/O; :meth:`initialize` identifies
    the device, probes what this unit has (once; the result is remembered for the session,
    see :meth:`capabilities`) and reads its limits. An optional function the unit answers
    with the brand's "unknown command / not available" reply is marked absent with one
    :class:`~crystalloop.errors.CapabilityWarning` naming the fallback; an essential one
    failing is an error.
    """

    vendor = "device"
    DEFAULT_SETTINGS = LineSettings()
    #: shown when the first exchange fails: which line settings the vendor's models use
    LINE_HINT = ""
    #: the capability table of the brand (needed and optional functions)
    CAPABILITIES: tuple[CapabilitySpec, ...] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for name in TRACED_OPERATIONS:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "__wrapped__", None):
                setattr(cls, name, _traced(name, fn))

    def __init__(
        self,
        transport: Transport,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        min_c: float | None = None,
        max_c: float | None = None,
        max_rate_c_min: float = math.inf,
        verify: bool = True,
        setpoint_tolerance_c: float = 0.06,
        comm_timeout_s: float = 120.0,
        safe_setpoint_c: float | None = None,
    ) -> None:
        self.transport = transport
        self._op_lock = threading.RLock()
        self._last_op_s = time.monotonic()
        self._keepalive_stop: threading.Event | None = None
        self.clock = clock if clock is not None else transport.clock
        self.name = name or self.vendor.lower()
        self.verify = bool(verify)
        if not setpoint_tolerance_c >= 0:
            raise ConfigError(
                f"setpoint_tolerance_c={setpoint_tolerance_c!r} for thermostat '{self.name}' "
                f"must be >= 0 °C"
            )
        self.setpoint_tolerance_c = float(setpoint_tolerance_c)
        try:
            self.comm_timeout_s = float(comm_timeout_s)
        except (TypeError, ValueError):
            self.comm_timeout_s = math.nan
        if not (self.comm_timeout_s == 0 or 1 <= self.comm_timeout_s <= 999):
            raise ConfigError(f"comm_timeout_s={comm_timeout_s!r} for thermostat '{self.name}' must be 0 "
                              f"(do not arm) or 1..999 s")
        #: setpoint the unit's communication watchdog falls back to, °C (None: the one found at connect)
        self.safe_setpoint_c = None if safe_setpoint_c is None else float(safe_setpoint_c)
        self._user_min_c = None if min_c is None else float(min_c)
        self._user_max_c = None if max_c is None else float(max_c)
        self._max_rate = float(max_rate_c_min)
        given = self._user_min_c is not None or self._user_max_c is not None or math.isfinite(self._max_rate)
        self.limits = ThermostatLimits(
            min_c=self._user_min_c if self._user_min_c is not None else -math.inf,
            max_c=self._user_max_c if self._user_max_c is not None else math.inf,
            max_rate_c_min=self._max_rate,
            source="url" if given else "",
        )
        self.device_limits: ThermostatLimits | None = None
        self.info = DeviceInfo(self.vendor, model="", version="")
        self._specs = {spec.name: spec for spec in self.CAPABILITIES}
        self._caps: dict[str, Capability] = {}
        self._reset_capabilities()
        #: last start/stop this session commanded and the device accepted (None: unknown)
        self.commanded_running: bool | None = None

    # -- capabilities ----------------------------------------------------------------------

    def _reset_capabilities(self) -> None:
        self._caps = {
            spec.name: Capability(spec.name, spec.commands, spec.essential,
                                  None if spec.in_protocol else False,
                                  "" if spec.in_protocol else spec.fallback)
            for spec in self.CAPABILITIES
        }

    def capabilities(self) -> tuple[Capability, ...]:
        """The capability table of the connected unit (probed by :meth:`initialize`)."""
        return tuple(self._caps.values())

    def has(self, name: str) -> bool | None:
        """Whether the unit has capability ``name`` (None: not probed)."""
        return self._caps[name].present

    def _found(self, name: str, detail: str = "") -> None:
        self._caps[name] = Capability(name, self._specs[name].commands, self._specs[name].essential, True, detail)

    def _absent(self, name: str, why: str) -> None:
        """Mark ``name`` absent for the session and warn once, naming the fallback."""
        spec = self._specs[name]
        if self._caps[name].present is False:
            return
        self._caps[name] = Capability(name, spec.commands, spec.essential, False, f"{why}; {spec.fallback}")
        if not spec.warn:
            return
        warnings.warn(CapabilityWarning(
            f"{self.where}: {spec.what} ({spec.commands}) not available on this unit ({why}); "
            f"{spec.fallback}"), stacklevel=3)

    def _optional(self, name: str, fn: Callable[[], _T], fallback: _T, detail: Callable[[_T], str] | None = None) -> _T:
        """Run an optional query; a "not supported" reply marks ``name`` absent and gives ``fallback``."""
        if self._caps[name].present is False:
            return fallback
        try:
            out = fn()
        except CommandNotSupported as exc:
            if self._caps[name].present is True:  # found at connect, gone now: a fault, not a model difference
                raise
            self._absent(name, _short(exc))
            return fallback
        if self._caps[name].present is None:
            self._found(name, detail(out) if detail is not None else "")
        return out

    def _essential(self, name: str, fn: Callable[[], _T], detail: Callable[[_T], str] | None = None) -> _T:
        """Run an essential query; "not supported" becomes a clear :class:`DeviceAlarm`."""
        try:
            out = fn()
        except CommandNotSupported as exc:
            spec = self._specs[name]
            raise DeviceAlarm(
                f"{self.where} does not support {spec.what} ({spec.commands}), which the driver needs: "
                f"{_short(exc)}. Check the unit is in remote mode and that its firmware speaks this protocol"
            ) from exc
        self._found(name, detail(out) if detail is not None else "")
        return out

    # -- helpers ---------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``"JULABO 'julabo' on /dev/ttyUSB0"``: prefix for every message."""
        return f"{self.vendor} '{self.name}' on {self.transport.url}"

    def _reading(self, value_c: float, channel: str) -> Reading:
        return Reading(value=float(value_c), time_s=self.clock.now(), channel=channel, unit="°C")

    def _diagnose(self, exc: Exception) -> Exception:
        settings = self.transport.settings
        kind = DeviceTimeout if isinstance(exc, DeviceTimeout) else ProtocolError
        return kind(
            f"No valid reply from {self.vendor} on {self.transport.url} at {settings.describe()}; "
            f"check baud rate/line settings: {self.LINE_HINT}; also check the cable (null-modem "
            f"vs straight), that the device is on and in remote mode. Cause: {exc}"
        )

    # -- life cycle ------------------------------------------------------------------------

    def initialize(self) -> SerialThermostat:
        """Identify the device and read its limits; returns ``self``.

        Raises
        ------
        DeviceTimeout, ProtocolError
            No sensible reply to the first command, with a diagnosis of likely line-settings
            problems (baud rate, data bits, parity).
        LimitError
            User limits (``min_c``/``max_c``) lie outside the device's own limits.
        """
        self._reset_capabilities()
        try:
            self.info = self._identify()
        except (DeviceTimeout, ProtocolError) as exc:
            if getattr(exc, "wrong_device", False):
                raise
            raise self._diagnose(exc) from exc
        self._probe()
        self.device_limits = self._read_device_limits()
        self.limits = self._combine_limits(self.device_limits)
        self._arm_comm_watchdog()
        return self

    def _identify(self) -> DeviceInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def _probe(self) -> None:  # pragma: no cover - abstract
        """Query every readable function once and fill the capability table."""
        raise NotImplementedError

    def _arm_comm_watchdog(self) -> None:
        """Arm the device's own communication watchdog where the unit has one (default: none)."""

    def keepalive(self) -> float:
        """One harmless exchange (reads the setpoint, °C) that restarts the unit's communication timeout."""
        return self.get_setpoint()

    def _start_keepalive(self, timeout_s: float) -> float | None:
        """While connected, talk to the unit at least every ``timeout_s / 3`` of wall time.

        The unit's communication watchdog then trips only when this process is gone (crashed,
        killed, unplugged), not because a run samples less often than the timeout. Only on a
        real clock (a virtual clock has no wall-time silence). Returns the period, s, or None.
        """
        if not isinstance(self.clock, RealClock) or (self._keepalive_stop is not None
                                                     and not self._keepalive_stop.is_set()):
            return None
        period = max(timeout_s / 3.0, 0.05)
        stop = self._keepalive_stop = threading.Event()

        def run() -> None:
            while not stop.wait(period / 4):
                if time.monotonic() - self._last_op_s < period or not self._op_lock.acquire(blocking=False):
                    continue  # the run is talking anyway
                try:
                    self.keepalive()
                except Exception:  # noqa: BLE001 - the run's own next exchange reports a lost unit
                    pass
                finally:
                    self._op_lock.release()

        threading.Thread(target=run, name=f"keepalive-{self.name}", daemon=True).start()
        return period

    def stop_keepalive(self) -> None:
        """Stop talking on our own: the unit's communication watchdog trips after its timeout."""
        if self._keepalive_stop is not None:
            self._keepalive_stop.set()

    def _read_device_limits(self) -> ThermostatLimits | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _combine_limits(self, device: ThermostatLimits | None) -> ThermostatLimits:
        if device is None:
            return self.limits
        lo, hi = device.min_c, device.max_c
        if self._user_min_c is not None:
            if self._user_min_c < device.min_c:
                raise LimitError(
                    f"min_c={self._user_min_c:.2f} °C for {self.where} is below the device's "
                    f"lower limit {device.min_c:.2f} °C"
                )
            lo = self._user_min_c
        if self._user_max_c is not None:
            if self._user_max_c > device.max_c:
                raise LimitError(
                    f"max_c={self._user_max_c:.2f} °C for {self.where} exceeds the device's "
                    f"upper limit {device.max_c:.2f} °C"
                )
            hi = self._user_max_c
        given = self._user_min_c is not None or self._user_max_c is not None or math.isfinite(self._max_rate)
        return ThermostatLimits(min_c=lo, max_c=hi, max_rate_c_min=min(self._max_rate, device.max_rate_c_min),
                                source="device+url" if given else "device")

    def reconnect(self) -> SerialThermostat:
        """Reopen the port after :class:`~crystalloop.errors.DeviceDisconnected` and identify again.

        Raises
        ------
        DeviceDisconnected
            The port is still gone.
        """
        self.transport.reopen()
        return self.initialize()

    def _process_or_bath(self, read_external: Callable[[], float]) -> Reading:
        """``T_reactor_c`` from the external sensor, or from the bath sensor where none is wired."""
        if self._caps["external"].present is False:
            return self._reading(self.read_bath().value, "T_reactor_c")
        value = self._optional("external", read_external, math.nan)
        if math.isnan(value):
            return self._reading(self.read_bath().value, "T_reactor_c")
        return self._reading(value, "T_reactor_c")

    def check(self) -> ThermostatStatus:
        """Read the status; raise :class:`DeviceAlarm` with the decoded text if any alarm is active."""
        status = self.status()  # type: ignore[attr-defined]
        if status.alarms:
            raise DeviceAlarm(f"{self.where} reports: " + "; ".join(status.alarms))
        return status

    def close(self) -> None:
        """Close the port (the thermostat keeps its last setpoint and state; a unit with an armed
        communication watchdog goes to its safe setpoint after its timeout)."""
        self.stop_keepalive()
        with self._op_lock:
            self.transport.close()

    def __enter__(self) -> SerialThermostat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        model = f" {self.info.model}" if self.info.model else ""
        return (
            f"<{type(self).__name__}{model} '{self.name}' on {self.transport.url}, "
            f"{self.limits.min_c:g}..{self.limits.max_c:g} °C>"
        )


def _short(exc: BaseException) -> str:
    """The device's reply part of a driver error ("in_sp_03 answered -08 INVALID COMMAND")."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith(("JULABO", "Huber", "LAUDA")) and ": " in text else text


for _name in TRACED_OPERATIONS:  # the base class's own operations (initialize) are traced too
    if _name in SerialThermostat.__dict__:
        setattr(SerialThermostat, _name, _traced(_name, SerialThermostat.__dict__[_name]))


def split_options(
    options: Mapping[str, Any], extra: frozenset[str], *, vendor: str, url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split URL/keyword options into line settings and driver options; reject unknown keys."""
    known = LINE_OPTIONS | _DRIVER_OPTIONS | extra
    unknown = sorted(k for k in options if k not in known and k not in _IGNORED_KWARGS)
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(repr(k) for k in unknown)} for {vendor} backend "
            f"{url!r}; expected some of: {', '.join(sorted(known))}"
        )
    line = {k: v for k, v in options.items() if k in LINE_OPTIONS}
    driver = {k: v for k, v in options.items() if k in _DRIVER_OPTIONS | extra}
    for key in ("min_c", "max_c", "max_rate_c_min", "setpoint_tolerance_c", "comm_timeout_s", "safe_setpoint_c"):
        if key in driver and isinstance(driver[key], str):
            try:
                driver[key] = float(driver[key])
            except ValueError:
                raise ConfigError(
                    f"{key}={driver[key]!r} for {vendor} backend {url!r} is not a number"
                ) from None
    if "verify" in driver and isinstance(driver["verify"], str):
        text = driver["verify"].strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"verify={driver['verify']!r} for {vendor} backend must be true/false")
        driver["verify"] = text in ("1", "true", "yes", "on")
    return line, driver


def open_serial_thermostat(
    cls: type[SerialThermostat],
    parsed: BackendURL,
    clock: Clock | None,
    kw: dict[str, Any],
    extra_options: frozenset[str] = frozenset(),
) -> Crystallizer:
    """Shared body of ``open_julabo``/``open_huber``/``open_lauda``."""
    clock = clock if clock is not None else RealClock()
    transport: Transport | None = kw.pop("transport", None)
    port = kw.pop("port", None) or parsed.target
    limits = kw.pop("limits", None)
    if limits is not None:
        if not isinstance(limits, ThermostatLimits):
            raise ConfigError(
                f"limits= for {cls.vendor} backend {parsed.url!r} must be a ThermostatLimits, "
                f"got {type(limits).__name__}"
            )
        given = {"min_c": limits.min_c, "max_c": limits.max_c, "max_rate_c_min": limits.max_rate_c_min}
        kw = {**{k: v for k, v in given.items() if math.isfinite(v)}, **kw}
    options = {**parsed.options, **kw}
    line, driver_opts = split_options(options, extra_options, vendor=cls.vendor, url=parsed.url)
    trace_target = driver_opts.pop("trace", None)
    if transport is None:
        settings = cls.DEFAULT_SETTINGS.with_options(line, device=cls.vendor)
        transport = Transport.open(port, settings=settings, device=cls.vendor, clock=clock)
    try:
        if trace_target:
            from crystalloop.hardware.trace import TraceWriter, without_trace

            transport.trace = TraceWriter(trace_target, url=without_trace(parsed.url), clock=clock)
        thermostat = cls(transport, clock=clock, **driver_opts)
        thermostat.initialize()
    except BaseException:
        transport.close()
        raise
    meta = {
        "vendor": cls.vendor,
        "model": thermostat.info.model,
        "version": thermostat.info.version,
        "port": transport.url,
        "line_settings": transport.settings.describe(),
        "limits_c": (thermostat.limits.min_c, thermostat.limits.max_c),
        "capabilities": {c.name: c.present for c in thermostat.capabilities()},
    }
    return Crystallizer(url=parsed.url, clock=clock, thermostat=thermostat, meta=meta)
