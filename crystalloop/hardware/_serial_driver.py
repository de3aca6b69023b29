"""Shared plumbing of the serial thermostat drivers (JULABO, Huber, LAUDA).

Not public: each driver module exposes its own class and ``open_*`` factory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crystalloop.errors import (
    ConfigError,
    DeviceAlarm,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import (
    BackendURL,
    Clock,
    Crystallizer,
    Reading,
    RealClock,
    ThermostatLimits,
    ThermostatStatus,
)
from crystalloop.hardware.transport import LINE_OPTIONS, LineSettings, Transport

__all__ = ["DeviceInfo", "SerialThermostat", "open_serial_thermostat", "decode_ascii", "format_celsius"]

_PRINTABLE = re.compile(rb"^[\x20-\x7e]*$")
_DRIVER_OPTIONS = frozenset({"name", "min_c", "max_c", "max_rate_c_min", "verify", "setpoint_tolerance_c"})
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

    Subclasses implement ``_identify()``, ``_read_device_limits()`` and the
    :class:`~crystalloop.hardware.base.Thermostat` methods. Constructing a driver does
    no I/O; :meth:`initialize` identifies the device and reads its limits.
    """

    vendor = "device"
    DEFAULT_SETTINGS = LineSettings()
    #: shown when the first exchange fails: which line settings the vendor's models use
    LINE_HINT = ""

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
    ) -> None:
        self.transport = transport
        self.clock = clock if clock is not None else transport.clock
        self.name = name or self.vendor.lower()
        self.verify = bool(verify)
        if not setpoint_tolerance_c >= 0:
            raise ConfigError(
                f"setpoint_tolerance_c={setpoint_tolerance_c!r} for thermostat '{self.name}' "
                f"must be >= 0 °C"
            )
        self.setpoint_tolerance_c = float(setpoint_tolerance_c)
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
        try:
            self.info = self._identify()
        except (DeviceTimeout, ProtocolError) as exc:
            if getattr(exc, "wrong_device", False):
                raise
            raise self._diagnose(exc) from exc
        self.device_limits = self._read_device_limits()
        self.limits = self._combine_limits(self.device_limits)
        return self

    def _identify(self) -> DeviceInfo:  # pragma: no cover - abstract
        raise NotImplementedError

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

    def check(self) -> ThermostatStatus:
        """Read the status; raise :class:`DeviceAlarm` with the decoded text if any alarm is active."""
        status = self.status()  # type: ignore[attr-defined]
        if status.alarms:
            raise DeviceAlarm(f"{self.where} reports: " + "; ".join(status.alarms))
        return status

    def close(self) -> None:
        """Close the port (the thermostat keeps its last setpoint and state)."""
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
    for key in ("min_c", "max_c", "max_rate_c_min", "setpoint_tolerance_c"):
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
        kw = {"min_c": limits.min_c, "max_c": limits.max_c, "max_rate_c_min": limits.max_rate_c_min, **kw}
    options = {**parsed.options, **kw}
    line, driver_opts = split_options(options, extra_options, vendor=cls.vendor, url=parsed.url)
    if transport is None:
        settings = cls.DEFAULT_SETTINGS.with_options(line, device=cls.vendor)
        transport = Transport.open(port, settings=settings, device=cls.vendor, clock=clock)
    try:
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
    }
    return Crystallizer(url=parsed.url, clock=clock, thermostat=thermostat, meta=meta)
