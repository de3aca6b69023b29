"""Fake thermostats that speak the JULABO, Huber PB and LAUDA protocols over a pseudo-terminal.

The driver under test opens the pty *slave* path with pyserial exactly as it would open
``/dev/ttyUSB0``; a thread on the *master* end parses the commands, answers as the device
would and integrates bath/reactor dynamics on the shared clock. Faults are injected per
command (:meth:`FakeDevice.inject`): ``silent`` (no reply), ``garble`` (line noise),
``partial`` (reply cut before its terminator), ``wrong`` (a reply to another command),
``xonxoff`` (XON/XOFF bytes inside the reply), ``disconnect`` (the device vanishes: the
pty master is closed). A baud-rate mismatch between the driver's port settings and the
fake's ``baudrate`` turns every reply into non-ASCII garbage, as on a real line.

Test-only code: nothing in ``crystalloop`` imports it.
"""

from __future__ import annotations

import os
import re
import select
import socket
import termios
import threading
import tty
from dataclasses import dataclass, field, replace

from crystalloop.hardware.base import Clock, VirtualClock
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal


@dataclass
class BathModel:
    """Bath, jacket and reactor temperatures on ``clock``: the virtual crystallizer's thermal model.

    Integrates :func:`crystalloop.hardware.sim.thermal.advance_thermal` lazily up to
    ``clock.now()`` whenever the fake device handles a command, so a driver reading the
    fake over a pty sees the same dynamics as the ``sim://`` thermostat. When stopped, the
    bath relaxes to ambient with ``tau_idle_s``. A device ramp (Huber 59/5A) moves the
    setpoint linearly from its value at the start of the ramp to the target.
    """

    clock: Clock
    params: ThermalParams = field(default_factory=lambda: ThermalParams(min_c=-40.0, max_c=200.0))
    setpoint_c: float = 20.0
    bath_c: float = 20.0
    jacket_c: float = 20.0
    reactor_c: float = 20.0
    running: bool = True
    tau_idle_s: float = 1800.0
    ramp_target_c: float | None = None

    def __post_init__(self) -> None:
        self._t = self.clock.now()
        self._lock = threading.Lock()
        self._ramp: tuple[float, float, float] | None = None  # (t0, sp0, duration)
        self._idle = replace(self.params, tau_bath_s=self.tau_idle_s)

    def _ramp_setpoint(self, t: float) -> float:
        t0, sp0, duration = self._ramp
        frac = min(1.0, max(0.0, (t - t0) / duration))
        return sp0 + (self.ramp_target_c - sp0) * frac

    def advance(self) -> None:
        with self._lock:
            now = self.clock.now()
            t0, self._t = self._t, now
            if now <= t0:
                return
            x = (self.bath_c, self.jacket_c, self.reactor_c)
            if not self.running:
                x = advance_thermal(x, self.params.T_ambient_c, t0, now, self._idle)
            elif self._ramp is not None and self.ramp_target_c is not None:
                x = advance_thermal(x, self._ramp_setpoint, t0, now, self.params)
                self.setpoint_c = self._ramp_setpoint(now)
                if now >= self._ramp[0] + self._ramp[2]:
                    self._ramp, self.ramp_target_c = None, None
            else:
                x = advance_thermal(x, self.setpoint_c, t0, now, self.params)
            self.bath_c, self.jacket_c, self.reactor_c = x

    def set_setpoint(self, value_c: float) -> None:
        self.advance()
        self.setpoint_c, self._ramp, self.ramp_target_c = value_c, None, None

    def set_running(self, on: bool) -> None:
        self.advance()
        self.running = on

    def start_ramp(self, target_c: float, duration_s: float) -> None:
        self.advance()
        self.ramp_target_c = target_c
        self._ramp = (self.clock.now(), self.setpoint_c, max(float(duration_s), 1e-9))


_BAUD = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)}


class FakeDevice:
    """Base: I/O thread on a pty master (or a TCP socket), command splitting, fault injection."""

    command_terminator = b"\r"
    reply_terminator = b"\r\n"

    def __init__(self, *, clock: Clock | None = None, baudrate: int = 9600, link: str = "pty",
                 model: BathModel | None = None) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.model = model if model is not None else BathModel(self.clock)
        self.baudrate = baudrate
        self.link = link
        self.received: list[bytes] = []
        self.command_times: list[float] = []
        self._faults: list[list] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        if link == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.path = os.ttyname(self._slave)
            self.url = self.path
        elif link == "tcp":
            self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._server.bind(("127.0.0.1", 0))
            self._server.listen(1)
            host, port = self._server.getsockname()
            self.url = f"{host}:{port}"
            self._master = self._slave = -1
        else:
            raise ValueError(f"link must be 'pty' or 'tcp', got {link!r}")
        self._thread = threading.Thread(target=self._serve, name=f"fake-{type(self).__name__}", daemon=True)
        self._thread.start()

    # -- fault injection -------------------------------------------------------------------

    def inject(self, kind: str, *, when: str | None = None, times: int = 1) -> None:
        """Apply fault ``kind`` to the next ``times`` commands (starting with ``when``, if given)."""
        kinds = ("silent", "garble", "partial", "wrong", "xonxoff", "disconnect")
        if kind not in kinds:
            raise ValueError(f"fault {kind!r} unknown; expected one of {kinds}")
        with self._lock:
            self._faults.append([kind, when, times])

    def _take_fault(self, command: str) -> str | None:
        with self._lock:
            for entry in self._faults:
                kind, when, times = entry
                if when is None or command.startswith(when):
                    entry[2] -= 1
                    if entry[2] <= 0:
                        self._faults.remove(entry)
                    return kind
        return None

    # -- I/O thread ------------------------------------------------------------------------

    def _read_chunk(self) -> bytes | None:
        if self.link == "tcp":
            if self._conn is None:
                r, _, _ = select.select([self._server], [], [], 0.02)
                if r:
                    self._conn, _ = self._server.accept()
                return b""
            r, _, _ = select.select([self._conn], [], [], 0.02)
            if not r:
                return b""
            data = self._conn.recv(1024)
            if not data:  # the driver closed its end: wait for the next connection
                self._conn.close()
                self._conn = None
            return data
        r, _, _ = select.select([self._master], [], [], 0.02)
        if not r:
            return b""
        try:
            return os.read(self._master, 1024)
        except OSError:
            return None

    def _write(self, data: bytes) -> None:
        if self.link == "tcp":
            if self._conn is not None:
                self._conn.sendall(data)
        else:
            os.write(self._master, data)

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            chunk = self._read_chunk()
            if chunk is None:
                break
            buf += chunk
            while self.command_terminator in buf:
                raw, buf = buf.split(self.command_terminator, 1)
                raw = raw.strip(b"\r\n")
                if raw:
                    self._respond(raw)

    def _line_ok(self) -> bool:
        if self.link != "pty":
            return True
        speed = termios.tcgetattr(self._slave)[4]
        return _BAUD.get(speed) == self.baudrate

    def _respond(self, raw: bytes) -> None:
        self.received.append(raw)
        self.command_times.append(self.clock.now())
        command = raw.decode("ascii", "replace")
        fault = self._take_fault(command)
        if fault == "disconnect":
            self.disconnect()
            return
        if fault == "silent":
            return
        self.model.advance()
        reply = self.handle(command)
        if not self._line_ok():
            # a wrong baud rate turns every byte into noise on the receiving side
            reply = bytes(0x80 | ((b * 37) & 0x7F) for b in (reply or b"?")) + b"\n"
        elif fault == "garble":
            reply = b"\xfe\x9c#\xa0\x01~" + self.reply_terminator
        elif fault == "partial" and reply:
            reply = reply[: max(1, len(reply) // 2)]
        elif fault == "wrong":
            reply = self.wrong_reply(command)
        elif fault == "xonxoff" and reply:
            reply = b"\x13" + reply[:1] + b"\x11" + reply[1:]
        if reply:
            self._write(reply)

    def reply(self, text: str) -> bytes:
        return text.encode("ascii") + self.reply_terminator

    def handle(self, command: str) -> bytes | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def wrong_reply(self, command: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- life cycle ------------------------------------------------------------------------

    def disconnect(self) -> None:
        """The device vanishes: the pty master is closed (for good), or the TCP connection
        is dropped (the device keeps listening, so a driver may reconnect)."""
        if self.link == "tcp":
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return
        self._stop.set()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self.link == "tcp":
            for s in (self._conn, self._server):
                if s is not None:
                    s.close()
        else:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeJulabo(FakeDevice):
    """JULABO: CR-terminated commands, ``in_*`` replies, silent ``out_*``, 250 ms rule."""

    command_terminator = b"\r"
    reply_terminator = b"\r\n"

    def __init__(self, *, enforce_interval: bool = False, jitter_s: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        # Dropping commands that come < 250 ms apart, as a real JULABO does, is only
        # meaningful on a real clock or for query-only traffic: on a virtual clock the fake
        # thread may see a reply-less out_* command only after the driver advanced the clock.
        # jitter_s: on a real clock, thread scheduling delays when the fake *sees* a command;
        # the check then allows that much slack below 250 ms
        self.enforce_interval = enforce_interval
        self.jitter_s = jitter_s
        self.version = "JULABO FP50-HE VERSION 2.0"
        self.remote = True
        self.high_c, self.low_c = 80.0, -20.0
        self.external_sensor = True
        self.alarm: int | None = None  # e.g. -1 low level
        self.last_error: int | None = None
        self.too_fast = 0
        self._last_t: float | None = None

    def _status(self) -> str:
        from crystalloop.hardware.julabo import JULABO_STATUS

        code = self.alarm if self.alarm is not None else self.last_error
        if code is None:
            code = (2 if self.remote else 0) + int(self.model.running)
        return (f"{code:03d} " if code < 0 else f"{code:02d} ") + JULABO_STATUS.get(code, "ERROR")

    def handle(self, command: str) -> bytes | None:
        now = self.clock.now()
        if self._last_t is not None and now - self._last_t < 0.25 - self.jitter_s - 1e-9:
            self.too_fast += 1
            self._last_t = now
            if self.enforce_interval:
                return None  # a real JULABO drops commands that come too fast
        self._last_t = now
        m = self.model
        reads = {
            "version": lambda: self.version,
            "status": self._status,
            "in_pv_00": lambda: f"{m.bath_c:.2f}",
            "in_pv_02": lambda: f"{m.reactor_c:.2f}" if self.external_sensor else "---.--",
            "in_sp_00": lambda: f"{m.setpoint_c:.2f}",
            "in_sp_03": lambda: f"{self.high_c:.2f}",
            "in_sp_04": lambda: f"{self.low_c:.2f}",
            "in_mode_05": lambda: str(int(m.running)),
            "in_mode_04": lambda: "0",
        }
        if command.startswith("in_") and command not in reads:
            return self.reply("-08 INVALID COMMAND")  # an in_* query the model lacks is answered inline
        if command in reads:
            text = reads[command]()
            if command == "status":
                self.last_error = None
            return self.reply(text)
        match = re.fullmatch(r"(out_sp_00|out_mode_05) (\S+)", command)
        if not match:
            self.last_error = -8
            return None
        if not self.remote:
            self.last_error = -9
            return None
        value = float(match.group(2))
        if match.group(1) == "out_sp_00":
            if value > self.high_c or value < self.low_c:
                self.last_error = -13
            else:
                m.set_setpoint(value)
        else:
            m.set_running(value == 1)
        return None

    def wrong_reply(self, command: str) -> bytes:
        return self.reply(self._status())  # e.g. a status line where a temperature was asked


class FakeHuber(FakeDevice):
    """Huber PB: ``{M`` requests, ``{S`` replies echoing the register."""

    command_terminator = b"\n"
    reply_terminator = b"\r\n"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.min_c, self.max_c = -40.0, 200.0
        self.error = 0
        self.warning = 0
        self.process_sensor = True
        self.ramp_duration_s = 0

    def _word(self, address: int) -> int:
        m = self.model
        temp = {0x00: m.setpoint_c, 0x01: m.bath_c, 0x02: m.bath_c - 0.3, 0x30: self.min_c, 0x31: self.max_c}
        if address in temp:
            return round(temp[address] * 100)
        if address == 0x07:
            return round(m.reactor_c * 100) if self.process_sensor else -15100
        if address == 0x05:
            return self.error
        if address == 0x06:
            return self.warning
        if address == 0x0A:
            return (int(m.running) | int(m.running) << 1 | int(m.running) << 4
                    | int(bool(self.error)) << 8 | int(bool(self.warning)) << 9)
        if address == 0x14:
            return int(m.running)
        if address == 0x59:
            return self.ramp_duration_s
        if address == 0x5A:
            return round((m.ramp_target_c if m.ramp_target_c is not None else m.setpoint_c) * 100)
        return 0x7FFF

    def handle(self, command: str) -> bytes | None:
        match = re.fullmatch(r"\{M([0-9A-F]{2})(\*{4}|[0-9A-F]{4})", command)
        if not match:
            return None  # PB devices ignore malformed requests
        address = int(match.group(1), 16)
        if match.group(2) != "****":
            raw = int(match.group(2), 16)
            value = raw - 0x10000 if raw & 0x8000 else raw
            m = self.model
            if address == 0x00 and self.min_c * 100 <= value <= self.max_c * 100:
                m.set_setpoint(value / 100.0)
            elif address == 0x14:
                m.set_running(bool(value))
            elif address == 0x59:
                self.ramp_duration_s = value
            elif address == 0x5A and self.min_c * 100 <= value <= self.max_c * 100:
                m.start_ramp(value / 100.0, self.ramp_duration_s)
        word = self._word(address)
        return self.reply(f"{{S{address:02X}{word & 0xFFFF:04X}")

    def wrong_reply(self, command: str) -> bytes:
        return self.reply("{S0A0003")  # the status register, whatever was asked


class FakeLauda(FakeDevice):
    """LAUDA: CR LF commands, every command answered (value, ``OK`` or ``ERR_n``)."""

    command_terminator = b"\r"
    reply_terminator = b"\r\n"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.type = "RP 845"
        self.version = "1.36"
        self.til_c, self.tih_c = -45.0, 150.0
        self.stat = "0000000"
        self.external_sensor = True

    def handle(self, command: str) -> bytes | None:
        m = self.model
        reads = {
            "TYPE": lambda: self.type,
            "VERSION_R": lambda: self.version,
            "IN_PV_00": lambda: f"{m.bath_c:06.2f}",
            "IN_PV_01": lambda: f"{m.bath_c:06.2f}",
            "IN_PV_03": lambda: f"{m.reactor_c:06.2f}" if self.external_sensor else "ERR_8",
            "IN_SP_00": lambda: f"{m.setpoint_c:06.2f}",
            "IN_SP_04": lambda: f"{self.tih_c:.1f}",
            "IN_SP_05": lambda: f"{self.til_c:.1f}",
            "IN_MODE_02": lambda: "0" if m.running else "1",
            "STATUS": lambda: "-1" if "1" in self.stat else "0",
            "STAT": lambda: self.stat,
        }
        if command in reads:
            return self.reply(reads[command]())
        if command in ("START", "STOP"):
            m.set_running(command == "START")
            return self.reply("OK")
        match = re.fullmatch(r"OUT_SP_00_(.*)", command)
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                return self.reply("ERR_5")
            if not self.til_c <= value <= self.tih_c:
                return self.reply("ERR_6")
            m.set_setpoint(value)
            return self.reply("OK")
        return self.reply("ERR_3")

    def wrong_reply(self, command: str) -> bytes:
        return self.reply("OK") if command.startswith("IN_") else self.reply("025.00")
