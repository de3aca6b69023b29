"""LAUDA thermostats (Proline, Integral, Variocool, ECO …) over RS232/RS485 (``lauda://PORT``).

Protocol (LAUDA operating manuals, "Interface module RS232/485"): 8N1, 9600 baud by
default; commands end in CR (or CR LF), replies in CR LF; every command is answered —
writes with ``OK``, reads with the value, failures with ``ERR_n`` — so the driver waits
for each reply and needs no read-back.

==================  ==================================================
``OUT_SP_00_30.5``  write setpoint → ``OK``
``IN_SP_00``        setpoint, °C
``IN_PV_00``        outflow (bath) temperature, °C
``IN_PV_01``        controlled temperature, °C
``IN_PV_03``        external Pt100, °C
``IN_SP_04/05``     outflow temperature limits TiH / TiL, °C
``IN_MODE_02``      0 = unit on, 1 = standby
``START``/``STOP``  leave / enter standby → ``OK``
``STATUS``          0 = OK, −1 = error
``STAT``            fault flags ``XXXXXXX`` (error, alarm, warning, overtemperature,
                    low level, high level, external control value missing)
``TYPE``            device type; ``VERSION_R`` control-system firmware
==================  ==================================================
"""

from __future__ import annotations

import math
import re
from typing import Any

from crystalloop.errors import (
    CommandNotSupported,
    ConfigError,
    DeviceAlarm,
    DeviceError,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware._serial_driver import (
    CapabilitySpec,
    DeviceInfo,
    SerialThermostat,
    decode_ascii,
    format_celsius,
    open_serial_thermostat,
    parse_float,
)
from crystalloop.hardware.base import (
    BackendURL,
    Clock,
    Crystallizer,
    Reading,
    ThermostatLimits,
    ThermostatStatus,
)
from crystalloop.hardware.transport import LineSettings

__all__ = [
    "LAUDA_ERRORS",
    "LAUDA_STAT_FLAGS",
    "LAUDA_SETTINGS",
    "LaudaThermostat",
    "open_lauda",
    "parse_value",
    "parse_ok",
    "parse_stat",
    "parse_int",
    "parse_text",
]

#: Error replies and their texts from the LAUDA manuals.
LAUDA_ERRORS: dict[int, str] = {
    2: "wrong input (e.g. buffer overflow)",
    3: "wrong command",
    5: "syntax error in value",
    6: "illegal value",
    8: "module (external temperature) not available",
    30: "programmer, all segments occupied",
    31: "setpoint not possible, analogue setpoint input on",
    32: "TiH <= TiL",
    33: "no external sensor",
    34: "analogue value not available",
    35: "automatic is selected",
    36: "no setpoint input possible, programmer is running or paused",
    37: "no start from programmer possible, analogue setpoint input is switched on",
}

#: ``STAT`` reply characters, in order.
LAUDA_STAT_FLAGS = (
    "error",
    "alarm",
    "warning",
    "overtemperature",
    "low level",
    "high level",
    "external control value missing",
)

LAUDA_SETTINGS = LineSettings(
    baudrate=9600, bytesize=8, parity="N", stopbits=1,
    write_terminator=b"\r\n", read_terminator=b"\n", timeout_s=1.0, min_interval_s=0.0,
)

_ERR_RE = re.compile(r"ERR_(\d{1,3})")
#: Error replies meaning "this unit lacks the command or the module behind it".
NOT_SUPPORTED_ERRORS = frozenset({3, 8, 33, 34})


def _raise_if_error(text: str, command: str, where: str) -> None:
    m = _ERR_RE.fullmatch(text)
    if m:
        code = int(m.group(1))
        meaning = LAUDA_ERRORS.get(code, "unknown error")
        kind = CommandNotSupported if code in NOT_SUPPORTED_ERRORS else DeviceAlarm
        err = kind(f"{where}: {command} answered ERR_{code}: {meaning}")
        err.code = code  # type: ignore[attr-defined]
        raise err


def parse_text(line: bytes, command: str, where: str = "LAUDA") -> str:
    """Printable ASCII reply with ``ERR_n`` turned into :class:`DeviceAlarm`."""
    text = decode_ascii(line, command, where)
    _raise_if_error(text, command, where)
    if not text:
        raise ProtocolError(f"{where}: empty reply to {command}")
    return text


def parse_value(line: bytes, command: str = "IN_PV_00", where: str = "LAUDA") -> float:
    """Decode a numeric reply such as ``b"030.50"`` (°C)."""
    text = parse_text(line, command, where)
    if text == "OK":
        raise ProtocolError(f"{where}: expected a value for {command}, got 'OK' (reply to a write command)")
    return parse_float(text, what=command, where=where)


def parse_int(line: bytes, command: str, where: str = "LAUDA") -> int:
    """Decode an integer reply (``STATUS``, ``IN_MODE_02``)."""
    text = parse_text(line, command, where)
    if not re.fullmatch(r"[+-]?\d{1,3}", text):
        raise ProtocolError(f"{where}: expected an integer for {command}, got {text!r}")
    return int(text)


def parse_ok(line: bytes, command: str = "command", where: str = "LAUDA") -> None:
    """Check a write reply: ``OK`` passes, ``ERR_n`` → :class:`DeviceAlarm`, else :class:`ProtocolError`."""
    text = parse_text(line, command, where)
    if text != "OK":
        raise ProtocolError(f"{where}: expected 'OK' after {command}, got {text!r}")


def parse_stat(line: bytes, where: str = "LAUDA") -> tuple[str, ...]:
    """Decode ``STAT`` (``b"0000000"``) into the names of the active faults."""
    text = parse_text(line, "STAT", where)
    if not re.fullmatch(r"[01]{1,8}", text):
        raise ProtocolError(f"{where}: expected fault flags such as '0000000' for STAT, got {text!r}")
    return tuple(
        LAUDA_STAT_FLAGS[i] if i < len(LAUDA_STAT_FLAGS) else f"flag {i + 1}"
        for i, ch in enumerate(text)
        if ch == "1"
    )


class LaudaThermostat(SerialThermostat):
    """A LAUDA thermostat implementing :class:`~crystalloop.hardware.base.Thermostat`.

    Functions differ by line (ECO, PRO, Integral, older RE/Proline): the driver probes
    them at connect (:meth:`capabilities`) and falls back where one is missing. Where the
    unit has the interface's safety mode (PRO, Integral), the driver arms it: if the
    computer stops talking for ``comm_timeout_s``, the unit goes to ``safe_setpoint_c`` on
    its own; while connected on a real clock, the driver talks to the unit at least every
    ``comm_timeout_s / 3`` (a keep-alive read of the setpoint), so the watchdog trips when this
    process is gone, whatever the run's sampling interval.

    Parameters
    ----------
    transport : Transport
        Open transport (see :func:`open_lauda`).
    process_command : str
        Query for the process (reactor) temperature, default ``IN_PV_03`` (external Pt100).
    comm_timeout_s : float
        Communication timeout armed on units with a safety mode, s (0 = do not arm).
    safe_setpoint_c : float, optional
        Setpoint the unit falls back to when the timeout expires (default: the setpoint
        found at connect).
    **kw
        ``name``, ``clock``, ``min_c``, ``max_c``, ``max_rate_c_min``, ``verify``,
        ``setpoint_tolerance_c`` as for every serial thermostat.
    """

    vendor = "LAUDA"
    DEFAULT_SETTINGS = LAUDA_SETTINGS
    LINE_HINT = "LAUDA interfaces use 8N1 at 9600 baud by default (2400-19200 selectable in the menu)"
    CAPABILITIES = (
        CapabilitySpec("version", "TYPE, VERSION_R", False, "identification",
                       "model and firmware are recorded as unknown", warn=False),
        CapabilitySpec("setpoint", "IN_SP_00, OUT_SP_00", True, "setpoint"),
        CapabilitySpec("bath", "IN_PV_00", True, "outflow (bath) temperature"),
        CapabilitySpec("start_stop", "START, STOP", True, "start/standby"),
        CapabilitySpec("external", "IN_PV_03", False, "external Pt100 temperature",
                       "T_reactor_c is recorded from the outflow sensor (IN_PV_00)"),
        CapabilitySpec("limits", "IN_SP_04, IN_SP_05", False, "outflow limits TiH/TiL",
                       "setpoint limits come from the URL (min_c, max_c) and the recipe"),
        CapabilitySpec("status", "STATUS", False, "error state",
                       "the error state comes from the STAT fault flags"),
        CapabilitySpec("faults", "STAT", False, "fault flags",
                       "alarms come from STATUS (error yes/no, without the cause)"),
        CapabilitySpec("mode", "IN_MODE_02", False, "standby read-back",
                       "the running state is the last START/STOP this session sent"),
        CapabilitySpec("control_sensor", "IN_MODE_01", False, "control sensor (internal/external)",
                       "the control sensor is not recorded", warn=False),
        CapabilitySpec("device_ramp", "-", False, "device ramp",
                       "not probed: ramps run in software (PRO/Integral programmers are not used, so a lost "
                       "connection cannot leave a ramp running)", in_protocol=False),
        CapabilitySpec("comm_watchdog", "IN_SP_07, OUT_SP_06, OUT_SP_07", False, "communication watchdog "
                       "(safety mode)", "not armed: a lost computer leaves the last setpoint in place", warn=False),
    )

    def __init__(self, transport: Any, *, process_command: str = "IN_PV_03", **kw: Any) -> None:
        super().__init__(transport, **kw)
        if not re.fullmatch(r"IN_PV_\d\d", process_command):
            raise ConfigError(
                f"process_command={process_command!r} for thermostat '{self.name}' is invalid; "
                f"expected a LAUDA query such as 'IN_PV_03'"
            )
        self.process_command = process_command
        self._connect_setpoint_c: float | None = None
        self._armed = False

    def _value(self, command: str) -> float:
        return parse_value(self.transport.query(command), command, self.where)

    def _command(self, command: str) -> None:
        parse_ok(self.transport.query(command), command, self.where)

    def _identify(self) -> DeviceInfo:
        try:
            model = parse_text(self.transport.query("TYPE"), "TYPE", self.where)
        except CommandNotSupported as exc:  # a valid LAUDA reply: the line settings are right
            self._absent("version", _reply(exc))
            return DeviceInfo("LAUDA", model="", version="", raw="")
        if re.fullmatch(r"[+-]?[\d.]+|OK", model):
            raise ProtocolError(f"{self.where}: expected a device type for TYPE, got {model!r}")
        version = self._optional("version", lambda: parse_text(self.transport.query("VERSION_R"), "VERSION_R",
                                                               self.where), "")
        if self.has("version") is None:
            self._found("version", f"{model} {version}".strip())
        return DeviceInfo("LAUDA", model=model, version=version, raw=model)

    def _probe(self) -> None:
        self._connect_setpoint_c = self._essential("setpoint", self.get_setpoint, lambda v: f"{v:.2f} °C")
        self._essential("bath", lambda: self._value("IN_PV_00"), lambda v: f"{v:.2f} °C")
        self._optional("external", lambda: self._value(self.process_command), math.nan, lambda v: f"{v:.2f} °C")
        self._optional("status", lambda: parse_int(self.transport.query("STATUS"), "STATUS", self.where), None,
                       lambda c: "OK" if c == 0 else f"error ({c})")
        self._optional("faults", lambda: parse_stat(self.transport.query("STAT"), self.where), None,
                       lambda f: "; ".join(f) or "none")
        standby = self._optional("mode", self._standby, None, lambda sb: "standby" if sb else "on")
        if standby is not None:
            self.commanded_running = not standby
        self._optional("control_sensor", lambda: parse_int(self.transport.query("IN_MODE_01"), "IN_MODE_01",
                                                           self.where), None,
                       lambda m: "external sensor" if m else "internal (outflow) sensor")
        self._optional("comm_watchdog", lambda: self._value("IN_SP_07"), None,
                       lambda t: f"present (timeout {t:g} s before arming)")

    def _standby(self) -> bool:
        standby = parse_int(self.transport.query("IN_MODE_02"), "IN_MODE_02", self.where)
        if standby not in (0, 1):
            raise ProtocolError(f"{self.where}: expected 0 or 1 for IN_MODE_02, got {standby}")
        return bool(standby)

    def _read_device_limits(self) -> ThermostatLimits | None:
        pair = self._optional("limits", lambda: (self._value("IN_SP_04"), self._value("IN_SP_05")), None,
                              lambda p: f"{p[1]:g} .. {p[0]:g} °C")
        if pair is None:
            return None
        high, low = pair
        if not low < high:
            raise ProtocolError(
                f"{self.where}: outflow limit TiL {low} °C (IN_SP_05) is not below TiH {high} °C (IN_SP_04)"
            )
        return ThermostatLimits(min_c=low, max_c=high, source="device")

    def _arm_comm_watchdog(self) -> None:
        """Arm the safety mode: ``OUT_SP_06_<safe setpoint>``, then ``OUT_SP_07_<timeout>``."""
        if self.has("comm_watchdog") is not True or self.comm_timeout_s == 0:
            if self.has("comm_watchdog") and self.comm_timeout_s == 0:
                self._found("comm_watchdog", "present; not armed (comm_timeout_s=0)")
            return
        safe = self.safe_setpoint_c if self.safe_setpoint_c is not None else self._connect_setpoint_c
        try:
            safe = self.limits.check_setpoint(safe, self.name)
        except LimitError as exc:
            raise ConfigError(f"safe_setpoint_c for {self.where}: {exc}") from None
        self._command(f"OUT_SP_06_{format_celsius(safe)}")
        self._command(f"OUT_SP_07_{int(round(self.comm_timeout_s))}")
        self._armed = True
        period = self._start_keepalive(self.comm_timeout_s)
        kept = f"; kept alive every {period:g} s while connected" if period is not None else ""
        self._found("comm_watchdog", f"armed: {safe:.2f} °C after {int(round(self.comm_timeout_s))} s without "
                                     f"a command{kept}")

    def close(self) -> None:
        """Disarm the safety mode (``OUT_SP_07_0``: a deliberate goodbye, the unit keeps its
        setpoint, e.g. the hold at the end of a batch), then close the port. A process that
        dies without closing leaves it armed, and the unit goes to its safe setpoint."""
        self.stop_keepalive()
        with self._op_lock:
            if self._armed and self.transport.is_open:
                try:
                    self._command("OUT_SP_07_0")
                    self._armed = False
                except DeviceError:  # the unit or the port is gone: it falls back on its own
                    pass
        super().close()

    def read_bath(self) -> Reading:
        """Outflow temperature (``IN_PV_00``), channel ``T_jacket_c``."""
        return self._reading(self._value("IN_PV_00"), "T_jacket_c")

    def read_controlled(self) -> Reading:
        """Controlled temperature (``IN_PV_01``), channel ``T_controlled_c``."""
        return self._reading(self._value("IN_PV_01"), "T_controlled_c")

    def read_process(self) -> Reading:
        """External Pt100 (``IN_PV_03`` by default), channel ``T_reactor_c``.

        On a unit without the external module (see :meth:`capabilities`), the outflow
        temperature, as the capability warning at connect said.
        """
        return self._process_or_bath(lambda: self._value(self.process_command))

    def get_setpoint(self) -> float:
        """Setpoint (``IN_SP_00``), °C."""
        return self._value("IN_SP_00")

    def set_setpoint(self, value_c: float) -> None:
        """Send ``OUT_SP_00_<value>``; the device answers ``OK`` or ``ERR_n`` (DeviceAlarm)."""
        value_c = round(self.limits.check_setpoint(value_c, self.name), 2)
        self._command(f"OUT_SP_00_{format_celsius(value_c)}")

    def start(self) -> None:
        """``START``: leave standby (pump, heating, cooling on)."""
        self._command("START")
        self.commanded_running = True

    def stop(self) -> None:
        """``STOP``: standby (pump, heating, cooling off)."""
        self._command("STOP")
        self.commanded_running = False

    def status(self) -> ThermostatStatus:
        """``STATUS``, ``STAT`` fault flags and ``IN_MODE_02`` (standby) combined.

        Each part falls back where the unit lacks it (see :meth:`capabilities`).
        """
        code = self._optional("status", lambda: parse_int(self.transport.query("STATUS"), "STATUS", self.where), None)
        faults = self._optional("faults", lambda: parse_stat(self.transport.query("STAT"), self.where), None)
        standby = self._optional("mode", self._standby, None)
        if standby is None:
            running, source = bool(self.commanded_running), " (last START/STOP sent)"
        else:
            running, source = not standby, ""
        code = 0 if code is None else code
        alarms = faults if faults else (("device reports an error (STATUS -1)",) if code < 0 else ())
        message = ("on" if running else "standby") + source + ("" if code == 0 else f", STATUS {code}")
        return ThermostatStatus(running=running, code=code, message=message, alarms=tuple(alarms))


def _reply(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def open_lauda(parsed: BackendURL, clock: Clock | None = None, **kw: Any) -> Crystallizer:
    """Open a LAUDA thermostat from ``lauda://PORT[?options]`` (options as for JULABO)."""
    return open_serial_thermostat(LaudaThermostat, parsed, clock, kw, frozenset({"process_command"}))

