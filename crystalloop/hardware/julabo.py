"""JULABO circulating thermostats over RS232 (``julabo://PORT``).

Protocol (JULABO operating manuals, "Remote control"): ASCII command, a space and a value,
terminated by CR; ``in_*`` queries reply with one line ending in LF (usually CR LF);
``out_*`` commands send **no reply**, so every write is verified by reading the value
back; the device needs ≥ 250 ms between commands. Line settings vary by model
(4800 or 9600 baud, 7E1 or 8N1, RTS/CTS or XON/XOFF) and are set by URL options, e.g.
``julabo:///dev/ttyUSB0?baudrate=4800&framing=7E1&rtscts=1``.

=================  ==============================================
``version``        model and firmware, e.g. ``JULABO FP50-HE VERSION 2.0``
``status``         ``03 REMOTE START``; negative codes are alarms/errors
``in_pv_00``       bath (internal) temperature, °C
``in_pv_02``       external Pt100 temperature, °C (model dependent)
``in_sp_00``       working setpoint 1, °C; ``out_sp_00 55.5`` writes it
``in_sp_03/04``    high / low temperature warning limits, °C
``in_mode_05``     0 = stopped, 1 = started; ``out_mode_05 0|1`` writes it
=================  ==============================================

JULABO has no ramp command: ramps are run in software by :mod:`crystalloop.control`.
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
    DeviceTimeout,
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
    "JULABO_STATUS",
    "JULABO_SETTINGS",
    "JulaboThermostat",
    "open_julabo",
    "parse_temperature",
    "parse_status",
    "parse_version",
    "parse_mode",
]

#: Status codes and texts from the JULABO manuals (the device sends the text too).
JULABO_STATUS: dict[int, str] = {
    0: "MANUAL STOP",
    1: "MANUAL START",
    2: "REMOTE STOP",
    3: "REMOTE START",
    -1: "LOW LEVEL ALARM",
    -3: "EXCESS TEMPERATURE WARNING",
    -5: "WORKING SENSOR ALARM",
    -6: "SENSOR DIFFERENCE ALARM",
    -8: "INVALID COMMAND",
    -9: "COMMAND NOT ALLOWED IN CURRENT OPERATING MODE",
    -10: "VALUE TOO SMALL",
    -11: "VALUE TOO LARGE",
    -13: "VALUE EXCEEDS TEMPERATURE LIMITS",
}

#: Default line settings (9600 8N1, CR out, LF in, 250 ms between commands).
JULABO_SETTINGS = LineSettings(
    baudrate=9600,
    bytesize=8,
    parity="N",
    stopbits=1,
    write_terminator=b"\r",
    read_terminator=b"\n",
    timeout_s=1.0,
    min_interval_s=0.25,
)

#: Status codes that report a refused command rather than a fault of the unit.
COMMAND_ERRORS = frozenset({-8, -9, -10, -11, -12, -13})

_STATUS_RE = re.compile(r"(-?\d{1,3})(?:\s+(.*))?")
_NO_SENSOR = re.compile(r"-{2,}\.?-*")  # "---.--": sensor not connected


def _status_text(code: int, device_text: str) -> str:
    text = JULABO_STATUS.get(code) or device_text.strip().upper() or "UNKNOWN STATUS"
    return f"{code:03d} {text}" if code < 0 else f"{code:02d} {text}"


def parse_status(line: bytes, where: str = "JULABO") -> ThermostatStatus:
    """Decode a ``status`` reply such as ``b"03 REMOTE START"`` or ``b"-01 LOW LEVEL ALARM"``.

    Negative codes become ``alarms`` with the manual's text. Raises :class:`ProtocolError`
    for anything that is not ``<code> [text]``.
    """
    text = decode_ascii(line, "status", where)
    m = _STATUS_RE.fullmatch(text)
    if not m:
        raise ProtocolError(f"{where}: expected a status such as '03 REMOTE START', got {text!r}")
    code = int(m.group(1))
    message = _status_text(code, m.group(2) or "")
    # -08..-13 say the last command was refused (not a fault of the unit); other negatives are alarms
    alarms = (message,) if code < 0 and code not in COMMAND_ERRORS else ()
    return ThermostatStatus(running=code in (1, 3), code=code, message=message, alarms=alarms)


def parse_temperature(line: bytes, what: str = "temperature", where: str = "JULABO") -> float:
    """Decode a temperature reply such as ``b"25.34"`` (°C).

    Raises
    ------
    DeviceAlarm
        The device replied with an error status (``-08 INVALID COMMAND``) or reports the
        sensor as absent (``---.--``).
    ProtocolError
        Anything else that is not a plausible number.
    """
    text = decode_ascii(line, what, where)
    if _NO_SENSOR.fullmatch(text):
        raise DeviceAlarm(f"{where}: no sensor for {what} (device replied {text!r})")
    m = _STATUS_RE.fullmatch(text)
    if m and m.group(2) and int(m.group(1)) < 0:
        code = int(m.group(1))
        kind = CommandNotSupported if code == -8 else DeviceAlarm
        raise kind(f"{where}: {what} answered {_status_text(code, m.group(2))}")
    return parse_float(text, what=what, where=where)


def parse_mode(line: bytes, where: str = "JULABO", command: str = "in_mode_05") -> bool:
    """Decode ``in_mode_05`` (``b"1"`` → True, started) or another 0/1 mode query.

    Raises :class:`CommandNotSupported` for ``-08 INVALID COMMAND``."""
    text = decode_ascii(line, command, where)
    m = _STATUS_RE.fullmatch(text)
    if m and m.group(2) and int(m.group(1)) == -8:
        raise CommandNotSupported(f"{where}: {command} answered {_status_text(-8, m.group(2))}")
    if text not in ("0", "1"):
        raise ProtocolError(f"{where}: expected 0 or 1 for {command}, got {text!r}")
    return text == "1"


def parse_version(line: bytes, where: str = "JULABO") -> DeviceInfo:
    """Decode ``version``: ``b"JULABO FP50-HE VERSION 2.0"`` → model ``FP50-HE``, version ``2.0``."""
    text = decode_ascii(line, "version", where)
    if not text or not re.search(r"[A-Za-z]", text):
        raise ProtocolError(f"{where}: expected a model/version string, got {text!r}")
    if _STATUS_RE.fullmatch(text) or re.fullmatch(r"[+-]?[\d.]+", text):
        raise ProtocolError(f"{where}: expected a model/version string, got {text!r} (reply to another command?)")
    if re.fullmatch(r"ERR_\d+|OK", text):
        err = ProtocolError(
            f"{where}: version answered {text!r}, which is how LAUDA units reply: is this a LAUDA "
            f"thermostat (use lauda://)?"
        )
        err.wrong_device = True  # type: ignore[attr-defined]  # line settings are fine
        raise err
    m = re.search(r"\bVERSION\b\s*:?\s*(\S.*)?$", text, flags=re.IGNORECASE)
    model_part = text[: m.start()] if m else text
    version = (m.group(1) or "").strip() if m else ""
    model = re.sub(r"^JULABO\s*", "", model_part.strip(), flags=re.IGNORECASE).strip() or "JULABO"
    return DeviceInfo("JULABO", model=model, version=version, raw=text)


class JulaboThermostat(SerialThermostat):
    """A JULABO thermostat implementing :class:`~crystalloop.hardware.base.Thermostat`.

    Functions differ by model family (CORIO, PRESTO, MAGIO, older FP/F series): the driver
    probes them at connect (:meth:`capabilities`) and falls back where one is missing, e.g.
    limits from the URL and the recipe when ``in_sp_03``/``in_sp_04`` answer ``-08``.

    Parameters
    ----------
    transport : Transport
        Open transport (see :func:`open_julabo`, or :mod:`crystalloop.hardware.testing`).
    name : str, optional
        Name in messages and the store (default ``"julabo"``).
    clock : Clock, optional
        Timestamps of readings (default: the transport's clock).
    min_c, max_c : float, optional
        Narrower setpoint limits than the device's warning limits (``in_sp_04``/``in_sp_03``).
    max_rate_c_min : float
        The unit's ramp capability, °C/min (how fast its bath can follow the setpoint).
    verify : bool
        Read back every ``out_*`` (default True).
    setpoint_tolerance_c : float
        Largest read-back difference accepted, °C.
    process_command : str
        Query for the process (reactor) temperature, default ``in_pv_02``.
    """

    vendor = "JULABO"
    DEFAULT_SETTINGS = JULABO_SETTINGS
    LINE_HINT = "JULABO models use 4800 or 9600, 7E1 or 8N1, RTS/CTS or XON/XOFF handshake"
    CAPABILITIES = (
        CapabilitySpec("version", "version", False, "identification",
                       "model and firmware are recorded as unknown", warn=False),
        CapabilitySpec("setpoint", "in_sp_00, out_sp_00", True, "working setpoint"),
        CapabilitySpec("bath", "in_pv_00", True, "bath temperature"),
        CapabilitySpec("start_stop", "out_mode_05", True, "start/stop of temperature control"),
        CapabilitySpec("external", "in_pv_02", False, "external Pt100 temperature",
                       "T_reactor_c is recorded from the bath sensor (in_pv_00)"),
        CapabilitySpec("limits", "in_sp_03, in_sp_04", False, "high/low warning limits",
                       "setpoint limits come from the URL (min_c, max_c) and the recipe"),
        CapabilitySpec("status", "status", False, "status and alarm codes",
                       "the running state comes from in_mode_05 or the last start/stop; alarms are not read"),
        CapabilitySpec("mode", "in_mode_05", False, "start/stop read-back",
                       "start/stop is verified with the status code, or taken as sent"),
        CapabilitySpec("control_sensor", "in_mode_04", False, "control sensor (internal/external)",
                       "the control sensor is not recorded", warn=False),
        CapabilitySpec("device_ramp", "-", False, "device ramp",
                       "none in JULABO's remote protocol: ramps run in software", in_protocol=False),
        CapabilitySpec("comm_watchdog", "-", False, "communication watchdog",
                       "no remote command for it is known to us: a lost computer leaves the last setpoint "
                       "in place (set the unit's own timeout in its menu where the model has one)",
                       in_protocol=False),
    )

    def __init__(self, transport: Any, *, process_command: str = "in_pv_02", **kw: Any) -> None:
        super().__init__(transport, **kw)
        if not re.fullmatch(r"in_pv_\d\d", process_command):
            raise ConfigError(
                f"process_command={process_command!r} for thermostat '{self.name}' is invalid; "
                f"expected a JULABO query such as 'in_pv_02'"
            )
        self.process_command = process_command
        self._probing = False

    # -- low level -------------------------------------------------------------------------

    def _ask(self, command: str) -> bytes:
        """One query. While probing at connect, a unit that ignores an unknown ``in_*`` query
        (no reply, and ``-08 INVALID COMMAND`` in the next ``status``) is told apart from a
        lost reply, so either way of saying "unknown command" marks the function absent."""
        try:
            return self.transport.query(command)
        except DeviceTimeout as exc:
            if not self._probing:
                raise
            try:
                status = parse_status(self.transport.query("status"), where=self.where)
            except DeviceError:
                raise exc from None
            if status.code != -8:
                raise
            raise CommandNotSupported(f"{self.where}: {command} not answered; the next status reported "
                                      f"{status.message}") from exc

    def _query_temperature(self, command: str, what: str) -> float:
        return parse_temperature(self._ask(command), what=f"{what} ({command})", where=self.where)

    def _identify(self) -> DeviceInfo:
        line = self.transport.query("version")
        try:
            info = parse_version(line, where=self.where)
        except ProtocolError:
            text = line.decode("ascii", "replace").strip()
            m = _STATUS_RE.fullmatch(text)
            if not (m and int(m.group(1)) == -8):
                raise
            self._absent("version", f"version answered {text!r}")
            return DeviceInfo("JULABO", model="", version="", raw=text)
        self._found("version", f"{info.model} {info.version}".strip())
        return info

    def initialize(self) -> JulaboThermostat:
        """Identify the unit and probe its functions (see :meth:`SerialThermostat.initialize`)."""
        self._probing = True
        try:
            return super().initialize()
        finally:
            self._probing = False

    def _probe(self) -> None:
        self._essential("setpoint", self.get_setpoint, lambda v: f"{v:.2f} °C")
        self._essential("bath", lambda: self._query_temperature("in_pv_00", "bath temperature"),
                        lambda v: f"{v:.2f} °C")
        try:
            self._optional("external", lambda: self._query_temperature(self.process_command, "external temperature"),
                           math.nan, lambda v: f"{v:.2f} °C")
        except DeviceAlarm as exc:  # "---.--": the input exists, no sensor is plugged in
            self._absent("external", _no_sensor_text(exc))
        self._optional("status", lambda: parse_status(self.transport.query("status"), where=self.where),
                       None, lambda st: st.message)
        running = self._optional("mode", self.is_running, None, lambda on: "started" if on else "stopped")
        if running is not None:
            self.commanded_running = running
        self._optional("control_sensor", lambda: parse_mode(self._ask("in_mode_04"), where=self.where,
                                                            command="in_mode_04"),
                       None, lambda ext: "external sensor" if ext else "internal (bath) sensor")

    def _read_device_limits(self) -> ThermostatLimits | None:
        def read() -> tuple[float, float]:
            return (self._query_temperature("in_sp_03", "high warning limit"),
                    self._query_temperature("in_sp_04", "low warning limit"))

        pair = self._optional("limits", read, None, lambda hl: f"{hl[1]:g} .. {hl[0]:g} °C")
        if pair is None:
            return None
        high, low = pair
        if not low < high:
            raise ProtocolError(
                f"{self.where}: low warning limit {low} °C (in_sp_04) is not below the high "
                f"warning limit {high} °C (in_sp_03)"
            )
        return ThermostatLimits(min_c=low, max_c=high, source="device")

    def _read_status(self) -> ThermostatStatus | None:
        return self._optional("status", lambda: parse_status(self.transport.query("status"), where=self.where), None)

    def _explain_refusal(self, action: str, reported: str) -> Exception:
        status = self._read_status()
        if status is None:
            return ProtocolError(
                f"{self.where}: {action} not confirmed, the device reports {reported} (this unit has no "
                f"status query to say why); the command may have been lost on the line or the unit is "
                f"not in remote mode"
            )
        if status.code < 0:
            hint = " (switch the thermostat to remote control)" if status.code == -9 else ""
            return DeviceAlarm(f"{self.where} refused {action}: {status.message}{hint}")
        if status.code in (0, 1):
            return DeviceAlarm(
                f"{self.where} refused {action}: the device is in {status.message}; "
                f"switch it to remote control"
            )
        return ProtocolError(
            f"{self.where}: {action} not confirmed, the device reports {reported} "
            f"(status {status.message}); the command may have been lost on the line"
        )

    # -- Thermostat interface ------------------------------------------------------------

    def read_bath(self) -> Reading:
        """Bath temperature (``in_pv_00``), channel ``T_jacket_c``."""
        return self._reading(self._query_temperature("in_pv_00", "bath temperature"), "T_jacket_c")

    def read_process(self) -> Reading:
        """External Pt100 (``in_pv_02`` by default), channel ``T_reactor_c``.

        On a unit without an external sensor (see :meth:`capabilities`), the bath
        temperature, as the capability warning at connect said.
        """
        return self._process_or_bath(lambda: self._query_temperature(self.process_command, "external temperature"))

    def get_setpoint(self) -> float:
        """Working setpoint (``in_sp_00``), °C."""
        return self._query_temperature("in_sp_00", "setpoint")

    def set_setpoint(self, value_c: float) -> None:
        """Write ``out_sp_00 <value>`` and verify it by reading ``in_sp_00`` back.

        Raises
        ------
        LimitError
            ``value_c`` outside :attr:`limits` (nothing is sent).
        DeviceAlarm
            The device refused the value (status code decoded with the manual's text).
        ProtocolError
            The read-back differs without an alarm (command lost on the line).
        """
        value_c = round(self.limits.check_setpoint(value_c, self.name), 2)
        self.transport.write(f"out_sp_00 {format_celsius(value_c)}")
        if not self.verify:
            return
        reported = self.get_setpoint()
        if abs(reported - value_c) > self.setpoint_tolerance_c:
            raise self._explain_refusal(f"setpoint {value_c:.2f} °C", f"{reported:.2f} °C")

    def _set_mode(self, on: bool) -> None:
        self.transport.write(f"out_mode_05 {int(on)}")
        if self.verify:
            state = self._optional("mode", self.is_running, None)
            if state is None:  # no in_mode_05: the status code says REMOTE START/STOP (03/02)
                status = self._read_status()
                state = None if status is None or status.code < 0 else status.running
                if status is not None and status.code < 0:
                    raise self._explain_refusal("start" if on else "stop", status.message)
            if state is not None and state != on:
                raise self._explain_refusal("start" if on else "stop", "started" if state else "stopped")
        self.commanded_running = on
        self._found("start_stop", "verified" if self.verify else "not verified (verify=0)")

    def start(self) -> None:
        """Start temperature control (``out_mode_05 1``), verified with ``in_mode_05`` or ``status``."""
        self._set_mode(True)

    def stop(self) -> None:
        """Stop temperature control (``out_mode_05 0``), verified with ``in_mode_05`` or ``status``."""
        self._set_mode(False)

    def is_running(self) -> bool:
        """``in_mode_05`` as bool."""
        return parse_mode(self._ask("in_mode_05"), where=self.where)

    def status(self) -> ThermostatStatus:
        """Decoded ``status``; ``running`` from ``in_mode_05`` during an alarm.

        On a unit without ``status``: running from ``in_mode_05`` or the last start/stop
        this session sent (``message`` says which), no alarms.
        """
        status = self._read_status()
        if status is None:
            running = self._optional("mode", self.is_running, None)
            source = "in_mode_05"
            if running is None:
                running, source = bool(self.commanded_running), "last start/stop sent"
            return ThermostatStatus(running, 0, f"{'started' if running else 'stopped'} ({source}; no status query)")
        if status.code < 0:
            running = self._optional("mode", self.is_running, None)
            if running is None:
                running = bool(self.commanded_running)
            return ThermostatStatus(running, status.code, status.message, status.alarms)
        return status


def _no_sensor_text(exc: Exception) -> str:
    text = str(exc)
    return "no sensor connected" + (f" ({text.split('device replied ', 1)[1]}" if "device replied " in text else "")


def open_julabo(parsed: BackendURL, clock: Clock | None = None, **kw: Any) -> Crystallizer:
    """Open a JULABO thermostat from ``julabo://PORT[?options]``.

    Options: line settings (``baudrate``, ``bytesize``, ``parity``, ``stopbits``,
    ``framing=7E1``, ``rtscts``, ``xonxoff``, ``timeout_s``, ``min_interval_s``, ...),
    ``name``, ``min_c``, ``max_c``, ``max_rate_c_min``, ``verify``, ``setpoint_tolerance_c``,
    ``process_command``. Keywords ``transport=`` (an open transport) and ``port=`` override
    the URL target.

    Examples
    --------
    ``connect("julabo:///dev/ttyUSB0?baudrate=4800&parity=E&bytesize=7")``
    """
    return open_serial_thermostat(JulaboThermostat, parsed, clock, kw, frozenset({"process_command"}))
