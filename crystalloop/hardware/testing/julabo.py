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

A JULABO needs at least 250 ms between commands; ``enforce_interval=True`` makes the fake drop
(not answer, not act on) a command that comes sooner, as the unit does.
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

    Parameters
    ----------
    enforce_interval : bool
        Drop a command that comes less than :attr:`min_interval_s` (250 ms) after the previous
        one, as a real unit does (default False: only count it in :attr:`too_fast`). The
        spacing is measured when the unit's thread sees a command; on a
        :class:`~crystalloop.hardware.base.VirtualClock` that thread may see a reply-less
        ``out_*`` command only after the driver advanced the clock, so enforce it on a real
        clock or for query-only traffic.
    jitter_s : float
        Slack below 250 ms that still counts as spaced, s: on a real clock, thread scheduling
        delays when the unit sees a command.
    **kw
        Passed to :class:`~crystalloop.hardware.testing.unit.FakeUnit` (``link``, ``clock``,
        ``setpoint_c``, ``baudrate``, ...).

    Attributes
    ----------
    too_fast : int
        Commands that came less than 250 ms (minus ``jitter_s``) after the previous one.
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
    #: the least spacing between commands the unit needs, s
    min_interval_s = 0.25

    def __init__(self, *, enforce_interval: bool = False, jitter_s: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.enforce_interval = enforce_interval
        self.jitter_s = float(jitter_s)
        self.too_fast = 0
        self._previous_s: float | None = None
        self.remote = True
        self.alarm: int | None = None
        self.last_error: int | None = None
        self.external_control = False

    def _status_line(self, *, clear: bool = True) -> str:
        code = self.alarm if self.alarm is not None else self.last_error
        if code is None:
            code = (2 if self.remote else 0) + int(self.bath.running)
        if clear:
            self.last_error = None
        return (f"{code:03d}" if code < 0 else f"{code:02d}") + " " + _TEXT.get(code, "ERROR")

    def _spaced(self, command: str) -> bool:
        """Count (and with ``enforce_interval`` drop) a command that comes too soon."""
        now = self.clock.now()
        previous, self._previous_s = self._previous_s, now
        if previous is None or now - previous >= self.min_interval_s - self.jitter_s - 1e-9:
            return True
        self.too_fast += 1
        if not self.enforce_interval:
            return True
        self.events.append((now, f"dropped {command!r}: {now - previous:.3f} s after the previous command "
                                 f"(needs {self.min_interval_s:g} s)"))
        return False

    def handle(self, command: str) -> str | None:
        if not self._spaced(command):
            return None
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

    def wrong_reply(self, command: str) -> str:
        """A status line where a value was asked, a temperature where a status or version was."""
        if command.startswith("in_"):
            return self._status_line(clear=False)
        return f"{self.bath.bath_c:.2f}"

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
