"""Fake Huber units speaking the PB protocol, written from Huber's "PB commands" list (DOMAIN.md §5).

PB: a request is ``{M`` + 2-hex register + 4-hex value, or ``****`` to read, then CR LF;
every request is answered ``{S`` + register + the 4-hex value the register now holds
(16-bit two's complement, temperatures in 0.01 °C). A register the controller does not
have reads ``7FFF``; a process input without a sensor reads −151.00 °C (``C504``).
Families differ in the registers they have:

==================  ===================================================================
``PILOT_ONE``       Unistat with Pilot ONE (E-grade Professional): status word 0A,
                    error/warning 05/06, process 07, limits 30/31, ramp 59/5A
``PILOT_ONE_BASIC`` Ministat with Pilot ONE, no E-grade upgrade: no ramp registers, no
                    process sensor plugged in (07 reads −151.00 °C)
``CC``              older CC controller (CC-505): setpoint, internal, process, error,
                    control on/off only; 0A, 06, 30/31, 59/5A read 7FFF
==================  ===================================================================
"""

from __future__ import annotations

import re
from typing import Any

from crystalloop.hardware.testing.unit import FakeUnit

__all__ = ["FakeHuberUnit", "HuberPilotOne", "HuberPilotOneBasic", "HuberCC"]

_REQUEST = re.compile(r"\{M([0-9A-F]{2})(\*{4}|[0-9A-F]{4})")


def _word(value: int) -> str:
    return f"{value & 0xFFFF:04X}"


class FakeHuberUnit(FakeUnit):
    """A Huber PB unit; subclasses choose the registers it has.

    Attributes
    ----------
    error, warning : int
        Active error / warning codes (0 = none); an error stops temperature control.
    process_sensor : bool
        A Pt100 is plugged into the process input.
    """

    brand = "Huber"
    command_terminator = b"\n"
    reply_terminator = b"\r\n"
    registers: frozenset[int] = frozenset()
    min_c, max_c = -40.0, 200.0
    process_sensor = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.error = 0
        self.warning = 0
        self.ramp_duration_s = 0

    def _read(self, reg: int) -> int:
        b = self.bath
        if reg not in self.registers:
            return 0x7FFF
        if reg == 0x00:
            return round(b.setpoint_c * 100)
        if reg == 0x01:
            return round(b.bath_c * 100)
        if reg == 0x02:
            return round((b.bath_c + (b.reactor_c - b.bath_c) * 0.3) * 100)
        if reg == 0x07:
            return round(b.reactor_c * 100) if self.process_sensor else -15100
        if reg == 0x05:
            return self.error
        if reg == 0x06:
            return self.warning
        if reg == 0x0A:
            on = int(b.running)
            return on | on << 1 | on << 4 | int(bool(self.error)) << 8 | int(bool(self.warning)) << 9
        if reg == 0x14:
            return int(b.running)
        if reg == 0x30:
            return round(self.min_c * 100)
        if reg == 0x31:
            return round(self.max_c * 100)
        if reg == 0x59:
            return self.ramp_duration_s
        if reg == 0x5A:  # the ramp target while a ramp runs (so a write echoes its value), else the setpoint
            target = b.ramp_target_c
            return round((b.setpoint_c if target is None else target) * 100)
        return 0x7FFF

    def handle(self, command: str) -> str | None:
        m = _REQUEST.fullmatch(command)
        if not m:
            return None  # a PB controller ignores what it cannot parse
        reg = int(m.group(1), 16)
        if m.group(2) != "****" and reg in self.registers:
            raw = int(m.group(2), 16)
            value = raw - 0x10000 if raw & 0x8000 else raw
            in_range = self.min_c * 100 <= value <= self.max_c * 100
            if reg == 0x00 and in_range:
                self.bath.set_setpoint(value / 100)
            elif reg == 0x14 and not self.error:
                self.bath.set_running(bool(value))
            elif reg == 0x59 and value > 0:
                self.ramp_duration_s = value
            elif reg == 0x5A and in_range:
                self.bath.start_ramp(value / 100, self.ramp_duration_s)
        return f"{{S{reg:02X}{_word(self._read(reg))}"

    def wrong_reply(self, command: str) -> str:
        """The echo of another register: the status word 0A, or the bath 01 where 0A was asked."""
        m = _REQUEST.fullmatch(command)
        other = 0x01 if m and int(m.group(1), 16) == 0x0A else 0x0A
        return f"{{S{other:02X}{_word(self._read(other))}"

    def tick(self) -> None:
        super().tick()
        if self.error and self.bath.running:
            self.bath.set_running(False)


class HuberPilotOne(FakeHuberUnit):
    """Unistat 425 with Pilot ONE (E-grade Professional): every register."""

    family = "PILOT_ONE"
    registers = frozenset({0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x0A, 0x14, 0x30, 0x31, 0x59, 0x5A})
    min_c, max_c = -45.0, 250.0


class HuberPilotOneBasic(FakeHuberUnit):
    """Ministat 230 with Pilot ONE, no E-grade: no ramp registers; no sensor in the process input."""

    family = "PILOT_ONE_BASIC"
    registers = frozenset({0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x0A, 0x14, 0x30, 0x31})
    min_c, max_c = -33.0, 200.0
    process_sensor = False


class HuberCC(FakeHuberUnit):
    """CC-505 (older CC controller): no status word, no warning code, no limits, no ramp."""

    family = "CC"
    registers = frozenset({0x00, 0x01, 0x05, 0x07, 0x14})
    min_c, max_c = -50.0, 200.0
