"""Base of the fake thermostats: a unit with a bath, a pty or TCP link, a command log and faults.

A :class:`FakeUnit` is a simulated circulating thermostat that a driver reaches exactly as
a real one: over a pseudo-terminal (the driver opens ``unit.url``, a ``/dev/pts/N`` path,
with pyserial) or over TCP (``127.0.0.1:PORT``, as a serial-to-Ethernet converter or
Huber's port 8101). A thread answers each command as the brand's manual says (the
subclasses in :mod:`~crystalloop.hardware.testing.julabo`, ``huber`` and ``lauda``, one per
model family, each with its own command subset), against a bath that follows the setpoint
on the unit's clock.

Everything the unit received is in :attr:`FakeUnit.log` as ``(time_s, command)``, and every
reply in :attr:`FakeUnit.exchanges` as ``(time_s, command, reply)``, so a test can assert
which safe-state command was sent or that the store holds what the unit reported.

Line faults are injected per command (:meth:`FakeUnit.inject`), and a unit on a pty has a
baud rate: when the driver opens the port at another speed (read from the slave's termios
settings), the unit hears noise and everything it sends back is non-ASCII garbage, as on a
real line. Linux ptys ignore data bits and parity, so only the speed is checked.
"""

from __future__ import annotations

import math
import os
import select
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable

from crystalloop.hardware.base import Clock, RealClock

__all__ = ["FakeUnit", "Bath"]

#: termios speed constant -> baud rate, for the speeds thermostats use
_BAUD = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)}
#: what :meth:`FakeUnit.inject` knows
_FAULTS = ("silent", "garble", "partial", "wrong", "xonxoff", "disconnect")
_GARBLE = b"\xfe\x9c#\xa0\x01~"
_XON, _XOFF = b"\x11", b"\x13"


def _noise(data: bytes) -> bytes:
    """What ``data`` sent at the wrong baud rate looks like on the other end: non-ASCII bytes."""
    return bytes(0x80 | ((b * 37) & 0x7F) for b in (data or b"?"))


class Bath:
    """Bath and reactor temperatures of a fake unit, integrated lazily on a clock.

    The bath follows the setpoint with a first-order lag ``tau_s`` while running and relaxes
    to ``ambient_c`` ten times slower when stopped; the reactor follows the bath with
    ``tau_reactor_s``. A device ramp moves the setpoint linearly to a target.
    """

    def __init__(self, clock: Clock, *, setpoint_c: float, temperature_c: float | None = None,
                 tau_s: float = 20.0, tau_reactor_s: float = 40.0, ambient_c: float = 22.0) -> None:
        self.clock = clock
        self.setpoint_c = float(setpoint_c)
        start = self.setpoint_c if temperature_c is None else float(temperature_c)
        self.bath_c = self.reactor_c = start
        self.tau_s, self.tau_reactor_s, self.ambient_c = float(tau_s), float(tau_reactor_s), float(ambient_c)
        self.running = True
        self._t = clock.now()
        self._ramp: tuple[float, float, float, float] | None = None  # t0, from, to, duration
        self.lock = threading.RLock()

    def advance(self) -> None:
        """Integrate up to the clock's time (exact per 0.5 s step)."""
        with self.lock:
            now = self.clock.now()
            while self._t < now:
                h = min(0.5, now - self._t)
                self._t += h
                if self._ramp is not None:
                    t0, a, b, d = self._ramp
                    frac = min(1.0, (self._t - t0) / d)
                    self.setpoint_c = a + (b - a) * frac
                    if frac >= 1.0:
                        self._ramp = None
                target, tau = (self.setpoint_c, self.tau_s) if self.running else (self.ambient_c, 10 * self.tau_s)
                self.bath_c = target + (self.bath_c - target) * math.exp(-h / tau)
                self.reactor_c = self.bath_c + (self.reactor_c - self.bath_c) * math.exp(-h / self.tau_reactor_s)

    @property
    def ramp_target_c(self) -> float | None:
        """Where the running device ramp ends, °C (None: no ramp running)."""
        ramp = self._ramp
        return None if ramp is None else ramp[2]

    def set_setpoint(self, value_c: float) -> None:
        with self.lock:
            self.advance()
            self.setpoint_c, self._ramp = float(value_c), None

    def set_running(self, on: bool) -> None:
        with self.lock:
            self.advance()
            self.running = bool(on)

    def start_ramp(self, target_c: float, duration_s: float) -> None:
        with self.lock:
            self.advance()
            self._ramp = (self.clock.now(), self.setpoint_c, float(target_c), max(float(duration_s), 1e-9))


class FakeUnit:
    """A fake thermostat on a pty or TCP socket (base class of the brand fakes).

    Parameters
    ----------
    link : {"pty", "socket"}
        Pseudo-terminal (``url`` is the slave path) or TCP on 127.0.0.1 (``url`` is
        ``127.0.0.1:PORT``, which the drivers open as ``socket://127.0.0.1:PORT``).
    clock : Clock, optional
        The unit's time (default: a :class:`~crystalloop.hardware.base.RealClock`). Share a
        :class:`~crystalloop.hardware.base.VirtualClock` with the driver to run fast.
    setpoint_c : float
        Setpoint at power-on, °C.
    temperature_c : float, optional
        Bath and reactor temperature at power-on (default: the setpoint).
    tau_s, tau_reactor_s, ambient_c : float
        Bath lag, reactor lag (s) and room temperature (°C).
    baudrate : int or None
        The unit's line speed, baud (default 9600, the speed the drivers open the port at).
        On a pty, a driver whose port runs at another speed gets non-ASCII garbage for every
        command, and the unit acts on none of them. None accepts any speed; a ``socket`` link
        has no baud rate (a serial-to-Ethernet converter sets it), so it is not checked there.

    Attributes
    ----------
    url : str
        What the driver opens: ``julabo://`` + ``url`` etc.
    log : list of (float, str)
        Every command received, with the unit's time.
    exchanges : list of (float, str, str or None)
        Every command with the reply as it went on the line, without its terminator (None: no
        reply). A line fault shows here: a garbled, cut or wrong reply is recorded as sent.
    events : list of (float, str)
        What the unit did on its own (e.g. its communication watchdog expiring).
    """

    #: brand and model family, e.g. ("JULABO", "MAGIO")
    brand = "device"
    family = "device"
    command_terminator = b"\r"
    reply_terminator = b"\r\n"

    def __init__(self, *, link: str = "pty", clock: Clock | None = None, setpoint_c: float = 20.0,
                 temperature_c: float | None = None, tau_s: float = 20.0, tau_reactor_s: float = 40.0,
                 ambient_c: float = 22.0, baudrate: int | None = 9600) -> None:
        if link not in ("pty", "socket"):
            raise ValueError(f"link must be 'pty' or 'socket', got {link!r}")
        self.clock = clock if clock is not None else RealClock()
        self.bath = Bath(self.clock, setpoint_c=setpoint_c, temperature_c=temperature_c, tau_s=tau_s,
                         tau_reactor_s=tau_reactor_s, ambient_c=ambient_c)
        self.link = link
        self.baudrate = baudrate
        self.log: list[tuple[float, str]] = []
        self.exchanges: list[tuple[float, str, str | None]] = []
        self.events: list[tuple[float, str]] = []
        self._faults: list[list] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._master = self._slave = -1
        self._server: socket.socket | None = None
        if link == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        else:
            self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._server.bind(("127.0.0.1", 0))
            self._server.listen(1)
            self.url = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name=f"fake-{self.brand}-{self.family}", daemon=True)
        self._thread.start()

    # -- what tests read -------------------------------------------------------------------

    def commands(self) -> list[str]:
        """The commands received, in order."""
        return [c for _, c in self.log]

    def replies_to(self, command: str) -> list[str]:
        """Every reply sent to ``command`` (e.g. the bath temperatures the unit reported)."""
        return [r for _, c, r in self.exchanges if c == command and r is not None]

    # -- fault injection -------------------------------------------------------------------

    def inject(self, kind: str, *, when: str | None = None, times: int = 1) -> None:
        """Apply fault ``kind`` to the next ``times`` commands (those starting with ``when``).

        Parameters
        ----------
        kind : {"silent", "garble", "partial", "wrong", "xonxoff", "disconnect"}
            ``silent``: no reply; ``garble``: line noise instead of the reply; ``partial``:
            the first half of the reply, cut before its terminator; ``wrong``: the reply to
            another command (:meth:`wrong_reply`, sent even where the command has none);
            ``xonxoff``: XOFF and XON bytes inside the reply; ``disconnect``: the unit
            vanishes (pty closed for good, or the TCP connection dropped). The unit acts on
            the command in every case but ``silent`` and ``disconnect``.
        when : str, optional
            Only commands starting with this text (default: the next commands, whatever they are).
        times : int
            How many such commands get the fault.
        """
        if kind not in _FAULTS:
            raise ValueError(f"fault {kind!r} unknown; expected one of {_FAULTS}")
        with self._lock:
            self._faults.append([kind, when, times])

    def _take_fault(self, command: str) -> str | None:
        with self._lock:
            for entry in self._faults:
                kind, when, _ = entry
                if when is None or command.startswith(when):
                    entry[2] -= 1
                    if entry[2] <= 0:
                        self._faults.remove(entry)
                    return kind
        return None

    # -- the unit's behaviour (subclasses) -------------------------------------------------

    def handle(self, command: str) -> str | None:  # pragma: no cover - abstract
        """The reply text to ``command`` (without terminator), or None for no reply."""
        raise NotImplementedError

    def wrong_reply(self, command: str) -> str:  # pragma: no cover - abstract
        """A reply to another command than ``command`` (the ``wrong`` fault), without terminator."""
        raise NotImplementedError

    def tick(self) -> None:
        """Called before each command and periodically: the unit's own timers."""
        self.bath.advance()

    # -- I/O -------------------------------------------------------------------------------

    def _read_chunk(self) -> bytes | None:
        if self.link == "socket":
            if self._conn is None:
                r, _, _ = select.select([self._server], [], [], 0.02)
                if r:
                    self._conn, _ = self._server.accept()
                return b""
            r, _, _ = select.select([self._conn], [], [], 0.02)
            if not r:
                return b""
            data = self._conn.recv(1024)
            if not data:
                self._conn.close()
                self._conn = None
            return data
        if self._master < 0:
            return None
        r, _, _ = select.select([self._master], [], [], 0.02)
        if not r:
            return b""
        try:
            return os.read(self._master, 1024)
        except OSError:
            return None

    def _write(self, data: bytes) -> None:
        if self.link == "socket":
            if self._conn is not None:
                self._conn.sendall(data)
        elif self._master >= 0:
            os.write(self._master, data)

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            chunk = self._read_chunk()
            if chunk is None:
                break
            self.tick()
            buf += chunk
            while self.command_terminator in buf:
                raw, buf = buf.split(self.command_terminator, 1)
                raw = raw.strip(b"\r\n")
                if raw:
                    self._respond(raw.decode("ascii", "replace"))

    def _line_ok(self) -> bool:
        """Whether the driver's port runs at the unit's baud rate (pty only)."""
        if self.baudrate is None or self.link != "pty" or self._slave < 0:
            return True
        return _BAUD.get(termios.tcgetattr(self._slave)[4]) == self.baudrate

    def _on_the_line(self, command: str, fault: str | None) -> bytes | None:
        """The bytes the unit sends for ``command`` under ``fault`` (None: nothing)."""
        if fault == "silent":
            return None
        if not self._line_ok():  # the unit heard noise: it acts on nothing, the driver reads noise
            return _noise(command.encode("ascii", "replace")) + b"\n"
        reply = self.handle(command)
        if fault == "wrong":
            reply = self.wrong_reply(command)
        if reply is None:
            return None
        data = reply.encode("ascii")
        if fault == "garble":
            data = _GARBLE
        elif fault == "partial":
            return data[: max(1, len(data) // 2)]
        elif fault == "xonxoff":
            data = _XOFF + data[:1] + _XON + data[1:]
        return data + self.reply_terminator

    def _respond(self, command: str) -> None:
        now = self.clock.now()
        self.log.append((now, command))
        fault = self._take_fault(command)
        if fault == "disconnect":
            self.exchanges.append((now, command, None))
            self.disconnect()
            return
        self.tick()
        data = self._on_the_line(command, fault)
        self.exchanges.append((now, command, None if data is None else data.decode("latin-1").rstrip("\r\n")))
        if data is not None:
            self._write(data)

    def disconnect(self) -> None:
        """The unit vanishes: the pty is closed for good, or the TCP connection is dropped."""
        if self.link == "socket":
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for s in (self._conn, self._server):
            if s is not None:
                s.close()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Poll ``predicate`` (on the wall clock) until true or ``timeout_s`` passed."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def __enter__(self) -> FakeUnit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.brand} {self.family} on {self.url}>"
