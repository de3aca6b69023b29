"""Huber thermostats (Unistat, Ministat, CC, Petite Fleur …) over the PB protocol (``huber://``).

Protocol (Huber "Data communication PB commands"): 9600 8N1 over RS232/RS485, or TCP port
8101 on devices with Ethernet (``huber://192.168.0.5:8101`` → ``socket://``). A request is
``{M`` + 2-hex register + 4-hex value, or ``****`` to read, + CR LF; the reply is ``{S`` +
register + 4-hex value + CR LF, after a write echoing the value the device now holds.
Values are 16-bit two's complement; temperatures in 0.01 °C; ``7FFF`` = not available;
−151.00 °C = no sensor connected.

========  =================================  ========  ==================================
register  meaning                            register  meaning
========  =================================  ========  ==================================
``00``    setpoint                           ``14``    temperature control on/off
``01``    internal (bath) temperature        ``16``    circulation on/off
``02``    return temperature                 ``30``    setpoint lower limit
``05``    error code (0 = none)              ``31``    setpoint upper limit
``06``    warning code (0 = none)            ``59``    ramp duration, s
``07``    process temperature (some: ``3A``) ``5A``    ramp target (writing starts the ramp)
``0A``    status word (bits below)
========  =================================  ========  ==================================

Examples: ``{M00****`` → ``{S0004DA`` (12.42 °C); ``{M0007D0`` sets 20.00 °C;
``{M00F830`` sets −20.00 °C.
"""

from __future__ import annotations

import math
import re
from typing import Any

from crystalloop.errors import (
    CommandNotSupported,
    ConfigError,
    DeviceAlarm,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware._serial_driver import (
    CapabilitySpec,
    DeviceInfo,
    SerialThermostat,
    decode_ascii,
    open_serial_thermostat,
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
    "HUBER_SETTINGS",
    "HUBER_STATUS_BITS",
    "HuberThermostat",
    "open_huber",
    "encode_word",
    "decode_word",
    "encode_temperature",
    "decode_temperature",
    "format_request",
    "parse_reply",
    "decode_status_word",
    "NOT_AVAILABLE",
    "NO_SENSOR_RAW",
]

SETPOINT, INTERNAL, RETURN, ERROR, WARNING, PROCESS, STATUS = 0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x0A
TEMP_CONTROL, CIRCULATION, SP_MIN, SP_MAX, RAMP_DURATION, RAMP_TARGET = 0x14, 0x16, 0x30, 0x31, 0x59, 0x5A

NOT_AVAILABLE = 0x7FFF
NO_SENSOR_RAW = -15100  # −151.00 °C

#: Status word (register 0A) bits, least significant bit first.
HUBER_STATUS_BITS: dict[int, str] = {
    0: "temperature control active",
    1: "circulation active",
    2: "compressor on",
    3: "process temperature control",
    4: "circulation pump on",
    5: "cooling power available",
    6: "keylock on",
    7: "PID parameters automatic",
    8: "error",
    9: "warning",
    10: "internal temperature mode",
    11: "external temperature mode",
    12: "DV-E grade",
    13: "restart after power failure",
    14: "freeze protection",
}

HUBER_SETTINGS = LineSettings(
    baudrate=9600, bytesize=8, parity="N", stopbits=1,
    write_terminator=b"\r\n", read_terminator=b"\n", timeout_s=1.0, min_interval_s=0.0,
)

_REPLY_RE = re.compile(r"\{S([0-9A-Fa-f]{2})([0-9A-Fa-f]{4})")


def encode_word(value: int) -> str:
    """16-bit two's complement as 4 upper-case hex digits (``-2000`` → ``"F830"``)."""
    value = int(value)
    if not -32768 <= value <= 32767:
        raise LimitError(f"Value {value} does not fit a 16-bit PB register (-32768..32767)")
    return f"{value & 0xFFFF:04X}"


def decode_word(text: str) -> int:
    """Inverse of :func:`encode_word` (``"F830"`` → ``-2000``)."""
    raw = int(text, 16)
    return raw - 0x10000 if raw & 0x8000 else raw


def encode_temperature(value_c: float) -> str:
    """°C → register value in 0.01 °C (``20.0`` → ``"07D0"``, ``-20.0`` → ``"F830"``)."""
    raw = round(float(value_c) * 100)
    if raw == NOT_AVAILABLE or not -32768 <= raw < NOT_AVAILABLE:
        raise LimitError(f"Temperature {value_c} °C is outside the PB range -327.68..327.66 °C")
    return encode_word(raw)


def decode_temperature(raw: int | None) -> float | None:
    """Register value → °C; ``None`` for *not available* (7FFF). −151.00 °C (no sensor) is
    returned as is; the driver turns it into :class:`DeviceAlarm`."""
    if raw is None:
        return None
    return raw / 100.0


def format_request(address: int, value: str | None = None) -> str:
    """``{M`` + 2-hex address + 4-hex value or ``****`` (read)."""
    if not 0 <= address <= 0xFF:
        raise ConfigError(f"PB register address {address!r} must be 0x00..0xFF")
    if value is None:
        value = "****"
    elif not re.fullmatch(r"[0-9A-F]{4}", value):
        raise ConfigError(f"PB value {value!r} must be 4 upper-case hex digits")
    return f"{{M{address:02X}{value}"


def parse_reply(line: bytes, address: int, where: str = "Huber") -> int | None:
    """Decode a ``{S`` reply for register ``address``; ``None`` if the value is 7FFF.

    Raises
    ------
    ProtocolError
        Not a ``{Saavvvv`` reply, or a reply for another register (answer to the wrong
        command).
    """
    text = decode_ascii(line, f"register {address:02X}", where)
    m = _REPLY_RE.fullmatch(text)
    if not m:
        raise ProtocolError(f"{where}: expected a reply '{{S{address:02X}xxxx' for register {address:02X}, got {text!r}")
    got = int(m.group(1), 16)
    if got != address:
        raise ProtocolError(
            f"{where}: reply {text!r} is for register {got:02X}, expected register {address:02X} "
            f"(reply to another command)"
        )
    raw = decode_word(m.group(2))
    return None if raw == NOT_AVAILABLE else raw


def decode_status_word(word: int) -> tuple[str, ...]:
    """Names of the set bits of the status word (register 0A)."""
    word &= 0xFFFF
    return tuple(HUBER_STATUS_BITS.get(bit, f"bit {bit}") for bit in range(16) if word >> bit & 1)


class HuberThermostat(SerialThermostat):
    """A Huber PB thermostat implementing :class:`~crystalloop.hardware.base.Thermostat`.

    Parameters
    ----------
    transport : Transport
        Open transport (see :func:`open_huber`).
    process_address : int or str
        Register of the process (reactor) temperature: ``0x07`` (default) or ``0x3A``.
    model : str
        The PB protocol has no identification register: give the model for the records.
    **kw
        ``name``, ``clock``, ``min_c``, ``max_c``, ``max_rate_c_min``, ``verify``,
        ``setpoint_tolerance_c`` as for every serial thermostat.
    """

    vendor = "Huber"
    DEFAULT_SETTINGS = HUBER_SETTINGS
    LINE_HINT = "Huber PB uses 9600 baud 8N1 (RS232/RS485) or TCP port 8101"
    CAPABILITIES = (
        CapabilitySpec("version", "-", False, "identification",
                       "none in the PB protocol: give model= in the URL for the records", in_protocol=False),
        CapabilitySpec("setpoint", "00", True, "setpoint"),
        CapabilitySpec("bath", "01", True, "internal (bath) temperature"),
        CapabilitySpec("start_stop", "14", True, "temperature control on/off"),
        CapabilitySpec("external", "07", False, "process (external Pt100) temperature",
                       "T_reactor_c is recorded from the internal sensor (register 01)"),
        CapabilitySpec("limits", "30, 31", False, "setpoint limits",
                       "setpoint limits come from the URL (min_c, max_c) and the recipe"),
        CapabilitySpec("status", "0A", False, "status word",
                       "the running state comes from register 14, alarms from registers 05/06"),
        CapabilitySpec("faults", "05, 06", False, "error code (and warning code where present)",
                       "alarms come from the error/warning bits of the status word"),
        CapabilitySpec("mode", "14", False, "temperature control read-back",
                       "start/stop is checked by the echoed value only"),
        CapabilitySpec("control_sensor", "-", False, "control sensor (internal/process)",
                       "not read by this driver (the PB register is not confirmed from the manual)",
                       in_protocol=False),
        CapabilitySpec("device_ramp", "59, 5A", False, "device ramp",
                       "ramps run in software (they always do: a lost connection must not leave a device "
                       "ramp running; start_ramp() is there for manual use)", warn=False),
        CapabilitySpec("comm_watchdog", "-", False, "communication watchdog",
                       "not armed by this driver (Pilot ONE units may offer one in their menu; the PB register "
                       "is not confirmed from the manual): a lost computer leaves the last setpoint in place",
                       in_protocol=False),
    )

    def __init__(self, transport: Any, *, process_address: int | str = PROCESS, model: str = "", **kw: Any) -> None:
        super().__init__(transport, **kw)
        try:
            address = int(process_address, 16) if isinstance(process_address, str) else int(process_address)
        except ValueError:
            address = -1
        if not 0 <= address <= 0xFF:
            raise ConfigError(
                f"process_address={process_address!r} for thermostat '{self.name}' is invalid; "
                f"expected a PB register such as 07 or 3A"
            )
        self.process_address = address
        self.model = model
        ext = self._specs["external"]
        self._specs["external"] = CapabilitySpec(ext.name, f"{address:02X}", ext.essential, ext.what, ext.fallback)
        self._reset_capabilities()

    # -- registers -------------------------------------------------------------------------

    def read_register(self, address: int) -> int | None:
        """Read one register (signed 16-bit; ``None`` = 7FFF not available)."""
        return parse_reply(self.transport.query(format_request(address)), address, self.where)

    def write_register(self, address: int, value: int) -> int | None:
        """Write one register and return the value the device echoes."""
        request = format_request(address, encode_word(value))
        return parse_reply(self.transport.query(request), address, self.where)

    def _register(self, address: int, what: str) -> int:
        """Read a register; 7FFF raises :class:`CommandNotSupported`."""
        raw = self.read_register(address)
        if raw is None:
            raise CommandNotSupported(f"{self.where}: {what} (register {address:02X}) reads 7FFF (not available)")
        return raw

    def _temperature(self, address: int, what: str) -> float:
        raw = self._register(address, what)
        if raw == NO_SENSOR_RAW:
            raise DeviceAlarm(f"{self.where}: no sensor connected for {what} (register {address:02X} reads -151.00 °C)")
        return raw / 100.0

    def _write_checked(self, address: int, value: int, action: str, shown: str, celsius: bool = False) -> None:
        echoed = self.write_register(address, value)
        if echoed == value or not self.verify:
            return
        error = self._optional("faults", lambda: self._register(ERROR, "error code"), 0)
        held = "n/a" if echoed is None else (f"{echoed / 100:.2f} °C" if celsius else str(echoed))
        cause = f"error code {error}" if error else f"it still holds {held}"
        what = f"{action} {shown}".strip()
        raise DeviceAlarm(f"{self.where} refused {what}: {cause} (see the Huber manual's error list)")

    def _identify(self) -> DeviceInfo:
        raw = self.read_register(SETPOINT)  # any valid reply proves the line settings
        shown = "n/a" if raw is None else f"{raw / 100:.2f} °C"
        return DeviceInfo("Huber", model=self.model or "PB protocol", version="", raw=f"setpoint {shown}")

    def _probe(self) -> None:
        self._essential("setpoint", self.get_setpoint, lambda v: f"{v:.2f} °C")
        self._essential("bath", lambda: self._temperature(INTERNAL, "internal temperature"),
                        lambda v: f"{v:.2f} °C")
        on = self._essential("start_stop", lambda: self._register(TEMP_CONTROL, "temperature control"),
                             lambda v: "on" if v else "off")
        self._found("mode", "on" if on else "off")
        self.commanded_running = bool(on)
        try:
            self._optional("external", lambda: self._temperature(self.process_address, "process temperature"),
                           math.nan, lambda v: f"{v:.2f} °C")
        except DeviceAlarm:  # -151.00 °C: the input exists, no sensor is plugged in
            self._absent("external", "no sensor connected (-151.00 °C)")
        self._optional("status", lambda: self._register(STATUS, "status word"), None,
                       lambda w: ", ".join(decode_status_word(w)) or "idle")
        self._optional("faults", self._fault_codes, None, lambda ew: f"error {ew[0]}, warning {ew[1]}")
        self._optional("device_ramp", lambda: self._register(RAMP_DURATION, "ramp duration"), None,
                       lambda _: "present; not used: ramps run in software")

    def _fault_codes(self) -> tuple[int, int]:
        """Error (05) and warning (06) codes; a unit with 05 but no 06 reports warning 0."""
        error = self._register(ERROR, "error code")
        return error, self.read_register(WARNING) or 0

    def _read_device_limits(self) -> ThermostatLimits | None:
        pair = self._optional("limits", lambda: (self._register(SP_MIN, "setpoint minimum"),
                                                 self._register(SP_MAX, "setpoint maximum")),
                              None, lambda p: f"{p[0] / 100:g} .. {p[1] / 100:g} °C")
        if pair is None:
            return None
        lo, hi = pair
        if not lo < hi:
            raise ProtocolError(
                f"{self.where}: setpoint minimum {lo / 100:.2f} °C (register 30) is not below the "
                f"maximum {hi / 100:.2f} °C (register 31)"
            )
        return ThermostatLimits(min_c=lo / 100.0, max_c=hi / 100.0, source="device")

    # -- Thermostat interface ------------------------------------------------------------

    def read_bath(self) -> Reading:
        """Internal temperature (register 01), channel ``T_jacket_c``."""
        return self._reading(self._temperature(INTERNAL, "internal temperature"), "T_jacket_c")

    def read_return(self) -> Reading:
        """Return temperature (register 02), channel ``T_return_c``."""
        return self._reading(self._temperature(RETURN, "return temperature"), "T_return_c")

    def read_process(self) -> Reading:
        """Process temperature (register 07 or 3A), channel ``T_reactor_c``.

        On a unit without a process sensor (see :meth:`capabilities`), the internal
        temperature, as the capability warning at connect said. Raises :class:`DeviceAlarm`
        when a sensor found at connect is gone (−151.00 °C).
        """
        return self._process_or_bath(lambda: self._temperature(self.process_address, "process temperature"))

    def get_setpoint(self) -> float:
        """Setpoint (register 00), °C."""
        return self._temperature(SETPOINT, "setpoint")

    def set_setpoint(self, value_c: float) -> None:
        """Write register 00 and check the echoed value (DeviceAlarm if refused)."""
        value_c = self.limits.check_setpoint(value_c, self.name)
        raw = round(value_c * 100)
        self._write_checked(SETPOINT, raw, "setpoint", f"{raw / 100:.2f} °C", celsius=True)

    def start(self) -> None:
        """Temperature control on (register 14 = 1)."""
        self._write_checked(TEMP_CONTROL, 1, "start of temperature control", "")
        self.commanded_running = True

    def stop(self) -> None:
        """Temperature control off (register 14 = 0)."""
        self._write_checked(TEMP_CONTROL, 0, "stop of temperature control", "")
        self.commanded_running = False

    def set_circulation(self, on: bool) -> None:
        """Circulation pump on/off (register 16)."""
        self._write_checked(CIRCULATION, int(bool(on)), "circulation", "on" if on else "off")

    def start_ramp(self, target_c: float, duration_s: float) -> None:
        """Start the device's own linear ramp to ``target_c`` over ``duration_s`` (registers 59, 5A)."""
        target_c = self.limits.check_setpoint(target_c, self.name)
        seconds = round(float(duration_s))
        if not 1 <= seconds <= 32767:
            raise LimitError(
                f"Ramp duration {duration_s} s for thermostat '{self.name}' is outside the PB range 1..32767 s"
            )
        self._write_checked(RAMP_DURATION, seconds, "ramp duration", f"{seconds} s")
        raw = round(target_c * 100)
        self._write_checked(RAMP_TARGET, raw, "ramp target", f"{raw / 100:.2f} °C", celsius=True)

    def ramp_duration_s(self) -> float | None:
        """Ramp duration register (59), s (``None`` if not available)."""
        raw = self.read_register(RAMP_DURATION)
        return None if raw is None else float(raw)

    def ramp_target_c(self) -> float | None:
        """Ramp target register (5A), °C (``None`` if not available)."""
        return decode_temperature(self.read_register(RAMP_TARGET))

    def status(self) -> ThermostatStatus:
        """Status word (0A) decoded, plus error (05) and warning (06) codes as alarms.

        Falls back per unit (see :meth:`capabilities`): without 0A, running from register
        14 and alarms from 05/06; without 05/06, alarms from the status word's error and
        warning bits.
        """
        word = self._optional("status", lambda: self._register(STATUS, "status word"), None)
        codes = self._optional("faults", self._fault_codes, None)
        error, warning = codes if codes is not None else (0, 0)
        alarms = []
        if error:
            alarms.append(f"error {error} (register 05)")
        elif word is not None and word >> 8 & 1:
            alarms.append("error flag set in status word")
        if warning:
            alarms.append(f"warning {warning} (register 06)")
        elif word is not None and word >> 9 & 1:
            alarms.append("warning flag set in status word")
        if word is None:
            on = self._register(TEMP_CONTROL, "temperature control")
            return ThermostatStatus(running=bool(on), code=0,
                                    message=f"temperature control {'on' if on else 'off'} (register 14; no status word)",
                                    alarms=tuple(alarms))
        flags = decode_status_word(word)
        return ThermostatStatus(
            running=bool(word & 1),
            code=word & 0xFFFF,
            message=", ".join(flags) if flags else "idle",
            alarms=tuple(alarms),
        )


def open_huber(parsed: BackendURL, clock: Clock | None = None, **kw: Any) -> Crystallizer:
    """Open a Huber PB thermostat: ``huber:///dev/ttyUSB0`` or ``huber://192.168.0.5:8101``.

    Options as for :func:`crystalloop.hardware.julabo.open_julabo`, plus
    ``process_address`` (``07`` or ``3A``) and ``model``.
    """
    return open_serial_thermostat(HuberThermostat, parsed, clock, kw, frozenset({"process_address", "model"}))
