"""Fake LAUDA units, written from the LAUDA interface-module chapters (DOMAIN.md §5).

LAUDA: commands end in CR (or CR LF), every command is answered with CR LF: writes with
``OK``, reads with the value, failures with ``ERR_n`` (``ERR_3`` wrong command, ``ERR_5``
syntax error in value, ``ERR_6`` illegal value, ``ERR_8`` module not available). Families:

==============  ============================================================================
``INTEGRAL``    Integral XT / PRO: everything, including the interface safety mode (a
                safety setpoint ``OUT_SP_06`` and a communication timeout ``OUT_SP_07``:
                when no command arrives for that long the unit goes to the safety setpoint)
``ECO``         ECO Silver: no external Pt100 module (``IN_PV_03`` → ``ERR_8``), no TiH/TiL
                queries, no control-sensor query, no safety mode
``RE``          older Ecoline RE with RS232 module: no ``VERSION_R``, ``STAT``,
                ``IN_MODE_02``, TiH/TiL, control-sensor query or safety mode
==============  ============================================================================
"""

from __future__ import annotations

import re
from typing import Any

from crystalloop.hardware.testing.unit import FakeUnit

__all__ = ["FakeLaudaUnit", "LaudaIntegral", "LaudaEco", "LaudaRE"]


class FakeLaudaUnit(FakeUnit):
    """A LAUDA unit; subclasses choose the commands it knows.

    Attributes
    ----------
    stat : str
        The ``STAT`` fault flags (error, alarm, warning, overtemperature, low level, high
        level, external control value missing); any ``1`` stops the unit.
    safety_setpoint_c, comm_timeout_s : float
        The interface safety mode (``comm_timeout_s`` 0 = off).
    watchdog_tripped : bool
        The communication timeout expired and the unit went to the safety setpoint.
    """

    brand = "LAUDA"
    command_terminator = b"\r"
    reply_terminator = b"\r\n"
    type_name = "LAUDA"
    version: str | None = None
    commands_known: frozenset[str] = frozenset()
    external_module = True
    til_c, tih_c = -40.0, 150.0

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.stat = "0000000"
        self.safety_setpoint_c = 20.0
        self.comm_timeout_s = 0.0
        self.watchdog_tripped = False
        self._last_command_s = self.clock.now()

    def handle(self, command: str) -> str | None:
        self._last_command_s = self.clock.now()
        b = self.bath
        known = self.commands_known
        reads = {
            "TYPE": lambda: self.type_name,
            "VERSION_R": lambda: self.version,
            "IN_PV_00": lambda: f"{b.bath_c:06.2f}",
            "IN_PV_01": lambda: f"{b.bath_c:06.2f}",
            "IN_PV_03": lambda: f"{b.reactor_c:06.2f}" if self.external_module else "ERR_8",
            "IN_SP_00": lambda: f"{b.setpoint_c:06.2f}",
            "IN_SP_04": lambda: f"{self.tih_c:.1f}",
            "IN_SP_05": lambda: f"{self.til_c:.1f}",
            "IN_SP_06": lambda: f"{self.safety_setpoint_c:06.2f}",
            "IN_SP_07": lambda: f"{self.comm_timeout_s:03.0f}",
            "IN_MODE_01": lambda: "0",
            "IN_MODE_02": lambda: "0" if b.running else "1",
            "STATUS": lambda: "-1" if "1" in self.stat else "0",
            "STAT": lambda: self.stat,
        }
        if command in reads:
            return reads[command]() if command in known else "ERR_3"
        if command in ("START", "STOP"):
            if command == "START" and "1" in self.stat:
                return "ERR_2"
            b.set_running(command == "START")
            return "OK"
        m = re.fullmatch(r"(OUT_SP_0[067])_(.*)", command)
        if not m:
            return "ERR_3"
        name, arg = m.groups()
        if name not in known:
            return "ERR_3"
        try:
            value = float(arg)
        except ValueError:
            return "ERR_5"
        if name == "OUT_SP_07":
            if not 0 <= value <= 999:
                return "ERR_6"
            self.comm_timeout_s, self.watchdog_tripped = value, False
            return "OK"
        if not self.til_c <= value <= self.tih_c:
            return "ERR_6"
        if name == "OUT_SP_06":
            self.safety_setpoint_c = value
        else:
            b.set_setpoint(value)
        return "OK"

    def wrong_reply(self, command: str) -> str:
        """``OK`` where a value was asked, a temperature where a write expected ``OK``."""
        if command.startswith(("OUT_", "START", "STOP")):
            return f"{self.bath.bath_c:06.2f}"
        return "OK"

    def tick(self) -> None:
        super().tick()
        if "1" in self.stat and self.bath.running:
            self.bath.set_running(False)
        if (self.comm_timeout_s > 0 and not self.watchdog_tripped
                and self.clock.now() - self._last_command_s >= self.comm_timeout_s):
            self.watchdog_tripped = True
            self.bath.set_setpoint(self.safety_setpoint_c)
            self.events.append((self.clock.now(), f"communication timeout {self.comm_timeout_s:g} s: safety "
                                                  f"setpoint {self.safety_setpoint_c:.2f} °C"))


class LaudaIntegral(FakeLaudaUnit):
    """Integral XT 150: the full command set including the interface safety mode."""

    family = "INTEGRAL"
    type_name = "INT XT 150"
    version = "2.41"
    commands_known = frozenset({"TYPE", "VERSION_R", "IN_PV_00", "IN_PV_01", "IN_PV_03", "IN_SP_00", "IN_SP_04",
                                "IN_SP_05", "IN_SP_06", "IN_SP_07", "IN_MODE_01", "IN_MODE_02", "STATUS", "STAT",
                                "OUT_SP_00", "OUT_SP_06", "OUT_SP_07"})
    til_c, tih_c = -45.0, 220.0


class LaudaEco(FakeLaudaUnit):
    """ECO Silver RE 1050 S: no Pt100 module, no limit queries, no safety mode."""

    family = "ECO"
    type_name = "ECO RE 1050 S"
    version = "1.12"
    commands_known = frozenset({"TYPE", "VERSION_R", "IN_PV_00", "IN_PV_03", "IN_SP_00", "IN_MODE_02", "STATUS",
                                "STAT", "OUT_SP_00"})
    external_module = False
    til_c, tih_c = -50.0, 200.0


class LaudaRE(FakeLaudaUnit):
    """Ecoline RE 206 with RS232 module: setpoint, temperatures, STATUS, START/STOP only."""

    family = "RE"
    type_name = "RE206"
    commands_known = frozenset({"TYPE", "IN_PV_00", "IN_PV_03", "IN_SP_00", "STATUS", "OUT_SP_00"})
    til_c, tih_c = -25.0, 120.0
