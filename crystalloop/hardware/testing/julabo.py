"""Fake JULABO units, written from the JULABO remote-control chapters (DOMAIN.md §5).

JULABO: a command is ASCII, a space and a value, CR; ``in_*`` queries are answered with one
line (CR LF); ``out_*`` commands are not answered, and a refused or unknown ``out_*`` shows
up as a negative code in the next ``status``; an ``in_*`` query the model does not know is
answered ``-08 INVALID COMMAND``. Families differ in what they answer:

=============  ==========================================================================
``MAGIO``      MAGIO MS/MX: everything (external Pt100 ``in_pv_02``, warning limits
               ``in_sp_03``/``04``, ``in_mode_05``, control sensor ``in_mode_04``)
``CORIO``      CORIO CD: no external Pt100 input, no warning-limit queries, no ``in_mode_04``
``F_SERIES``   older F/FP with a basic controller: no ``in_mode_05`` read-back, no
               warning-limit queries, no ``in_mode_04``; external Pt100 input present but
               nothing plugged in (``---.--``)
=============  ==========================================================================
"""

from __future__ import annotations

from typing import Any

from crystalloop.hardware.testing.unit import FakeUnit

__all__ = ["FakeJulaboUnit", "JulaboMagio", "JulaboCorio", "JulaboFSeries"]

_TEXT = {0: "MANUAL STOP", 1: "MANUAL START", 2: "REMOTE STOP", 3: "REMOTE START", -1: "LOW LEVEL ALARM",
         -8: "INVALID COMMAND", -9: "COMMAND NOT ALLOWED IN CURRENT OPERATING MODE", -11: "VALUE TOO LARGE",
         -10: "VALUE TOO SMALL", -13: "VALUE EXCEEDS TEMPERATURE LIMITS"}


class FakeJulaboUnit(FakeUnit):
    """A JULABO unit; subclasses choose the model string and the commands it knows.

    Attributes
    ----------
    remote : bool
        Remote control enabled on the keypad (else ``out_*`` is refused with ``-09``).
    alarm : int or None
        An active alarm code, e.g. ``-1`` (low level): shown by ``status``, control stops.
    """

    brand = "JULABO"
    command_terminator = b"\r"
    reply_terminator = b"\r\n"
    version = "JULABO"
    #: the in_* queries this family answers
    queries: frozenset[str] = frozenset()
    #: the out_* commands this family accepts
    writes: frozenset[str] = frozenset({"out_sp_00", "out_mode_05"})
    external_sensor_plugged = True
    high_c, low_c = 100.0, -30.0

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.remote = True
        self.alarm: int | None = None
        self.last_error: int | None = None
        self.external_control = False

    def _status_line(self) -> str:
        code = self.alarm if self.alarm is not None else self.last_error
        if code is None:
            code = (2 if self.remote else 0) + int(self.bath.running)
        self.last_error = None
        return (f"{code:03d}" if code < 0 else f"{code:02d}") + " " + _TEXT.get(code, "ERROR")

    def handle(self, command: str) -> str | None:
        b = self.bath
        name, _, arg = command.partition(" ")
        if name == "version":
            return self.version
        if name == "status":
            return self._status_line()
        if name.startswith("in_"):
            if name not in self.queries:
                return "-08 INVALID COMMAND"
            return {
                "in_pv_00": lambda: f"{b.bath_c:.2f}",
                "in_pv_02": lambda: f"{b.reactor_c:.2f}" if self.external_sensor_plugged else "---.--",
                "in_sp_00": lambda: f"{b.setpoint_c:.2f}",
                "in_sp_03": lambda: f"{self.high_c:.2f}",
                "in_sp_04": lambda: f"{self.low_c:.2f}",
                "in_mode_05": lambda: str(int(b.running)),
                "in_mode_04": lambda: str(int(self.external_control)),
            }[name]()
        if name not in self.writes:
            self.last_error = -8
            return None
        if not self.remote:
            self.last_error = -9
            return None
        try:
            value = float(arg)
        except ValueError:
            self.last_error = -8
            return None
        if name == "out_sp_00":
            if not self.low_c <= value <= self.high_c:
                self.last_error = -13
            else:
                b.set_setpoint(value)
        elif name == "out_mode_05":
            if self.alarm is None:
                b.set_running(value == 1)
        elif name == "out_mode_04":
            self.external_control = value == 1
        return None

    def tick(self) -> None:
        super().tick()
        if self.alarm is not None and self.bath.running:  # an alarm stops temperature control
            self.bath.set_running(False)


class JulaboMagio(FakeJulaboUnit):
    """MAGIO MS-1000F: the full command set."""

    family = "MAGIO"
    version = "JULABO MAGIO MS-1000F VERSION 1.6"
    queries = frozenset({"in_pv_00", "in_pv_02", "in_sp_00", "in_sp_03", "in_sp_04", "in_mode_05", "in_mode_04"})
    writes = frozenset({"out_sp_00", "out_mode_05", "out_mode_04"})
    high_c, low_c = 200.0, -50.0


class JulaboCorio(FakeJulaboUnit):
    """CORIO CD-200F: setpoint, bath, start/stop and its read-back; no external Pt100, no limits."""

    family = "CORIO"
    version = "JULABO CORIO CD-200F VERSION 1.0"
    queries = frozenset({"in_pv_00", "in_sp_00", "in_mode_05"})
    high_c, low_c = 150.0, -20.0


class JulaboFSeries(FakeJulaboUnit):
    """Older F25 with a basic controller: no in_mode_05, no limit queries, Pt100 input empty."""

    family = "F_SERIES"
    version = "JULABO F25-ED VERSION 2.3"
    queries = frozenset({"in_pv_00", "in_pv_02", "in_sp_00"})
    external_sensor_plugged = False
    high_c, low_c = 100.0, -28.0
