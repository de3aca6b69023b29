"""Byte transport between a driver and a serial instrument.

Every thermostat driver talks to its device through a :class:`Transport`: it hands over a
command string and gets back one reply line as bytes. The transport owns everything about
the wire — line settings, terminators, timeouts, the minimum delay between commands,
XON/XOFF stripping, locking — and turns every failure into one of the
:mod:`crystalloop.errors` device errors that name the device and the port:

* :class:`~crystalloop.errors.DeviceTimeout` — no complete reply within ``timeout_s``;
* :class:`~crystalloop.errors.ProtocolError` — a reply the driver cannot parse;
* :class:`~crystalloop.errors.DeviceDisconnected` — the port went away (USB adapter
  unplugged, TCP connection closed, pseudo-terminal master closed).

The port is opened with :func:`serial.serial_for_url`, so real ports (``/dev/ttyUSB0``,
``COM3``), pseudo-terminals (``/dev/pts/7``), ``socket://host:port`` (serial-to-Ethernet
converters, Huber's TCP port 8101) and ``loop://`` share one code path. Tests replace
the port object by a scripted one (:mod:`crystalloop.hardware.testing`), so the same
byte-level code runs under test as on the bench.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import serial

from crystalloop.errors import (
    BackendError,
    ConfigError,
    DeviceDisconnected,
    DeviceTimeout,
)
from crystalloop.hardware.base import Clock, RealClock
from crystalloop.hardware.trace import encode_bytes

try:  # pyserial's POSIX backend lets termios.error (not an OSError) escape from tcdrain/tcflush
    import termios as _termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _termios.error)
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

__all__ = ["LineSettings", "Transport", "port_url", "XON", "XOFF", "LINE_OPTIONS"]

XON = b"\x11"
XOFF = b"\x13"

_PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD,
             "M": serial.PARITY_MARK, "S": serial.PARITY_SPACE}
_TERMINATOR_NAMES = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "NONE": b""}


@dataclass(frozen=True)
class LineSettings:
    """Serial line settings and framing of one device.

    Attributes
    ----------
    baudrate : int
        Bits per second (one of pyserial's standard rates).
    bytesize : int
        Data bits, 5–8.
    parity : str
        ``"N"``, ``"E"``, ``"O"``, ``"M"`` or ``"S"``.
    stopbits : float
        1, 1.5 or 2.
    rtscts, xonxoff : bool
        Hardware (RTS/CTS) and software (XON/XOFF) flow control.
    write_terminator, read_terminator : bytes
        Appended to every command / marks the end of every reply.
    timeout_s : float
        Longest wait for a complete reply, in seconds.
    write_timeout_s : float
        Longest wait for the port to accept a command, in seconds.
    min_interval_s : float
        Minimum time between the end of one exchange and the next command, in seconds
        (JULABO needs ≥ 0.25 s). Waited on the transport's :class:`~crystalloop.hardware.base.Clock`.
    strip_xonxoff : bool
        Remove stray XON (0x11) / XOFF (0x13) bytes from replies. The protocols here are
        printable ASCII, so stripping never removes data.
    """

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    write_terminator: bytes = b"\r"
    read_terminator: bytes = b"\n"
    timeout_s: float = 1.0
    write_timeout_s: float = 1.0
    min_interval_s: float = 0.0
    strip_xonxoff: bool = True

    def __post_init__(self) -> None:
        if self.baudrate not in serial.Serial.BAUDRATES or self.baudrate <= 0:
            raise ConfigError(
                f"baudrate={self.baudrate!r} is not a standard serial rate; expected one of "
                f"1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200"
            )
        if self.bytesize not in (5, 6, 7, 8):
            raise ConfigError(f"bytesize={self.bytesize!r} is invalid; expected 5, 6, 7 or 8")
        if self.parity not in _PARITIES:
            raise ConfigError(f"parity={self.parity!r} is invalid; expected one of N, E, O, M, S")
        if self.stopbits not in (1, 1.5, 2):
            raise ConfigError(f"stopbits={self.stopbits!r} is invalid; expected 1, 1.5 or 2")
        if not self.read_terminator:
            raise ConfigError("read_terminator must not be empty: replies need an end marker")
        for name in ("timeout_s", "write_timeout_s"):
            value = getattr(self, name)
            if not (value > 0 and value < 3600):
                raise ConfigError(f"{name}={value!r} s is invalid; expected 0 < {name} < 3600 s")
        if not (self.min_interval_s >= 0 and self.min_interval_s < 60):
            raise ConfigError(
                f"min_interval_s={self.min_interval_s!r} s is invalid; expected 0 <= value < 60 s"
            )

    @property
    def framing(self) -> str:
        """Short framing notation, e.g. ``"8N1"`` or ``"7E1"``."""
        stop = "1.5" if self.stopbits == 1.5 else str(int(self.stopbits))
        return f"{self.bytesize}{self.parity}{stop}"

    def describe(self) -> str:
        """Human-readable settings, e.g. ``"9600 baud 8N1, RTS/CTS"``."""
        flow = [n for n, on in (("RTS/CTS", self.rtscts), ("XON/XOFF", self.xonxoff)) if on]
        return f"{self.baudrate} baud {self.framing}" + (", " + ", ".join(flow) if flow else "")

    def serial_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`serial.serial_for_url`."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": _PARITIES[self.parity],
            "stopbits": self.stopbits,
            "rtscts": self.rtscts,
            "xonxoff": self.xonxoff,
            "timeout": self.timeout_s,
            "write_timeout": self.write_timeout_s,
        }

    def with_options(self, options: Mapping[str, Any], *, device: str = "device") -> LineSettings:
        """Return a copy updated from URL/keyword options (strings are parsed).

        Recognised keys are the attribute names plus ``framing`` (``"7E1"``); unknown keys
        are ignored here (the driver reports them).
        """
        updates: dict[str, Any] = {}
        if "framing" in options:
            updates.update(_parse_framing(str(options["framing"]), device))
        for f in fields(self):
            if f.name in options:
                updates[f.name] = _parse_option(f.name, options[f.name], device)
        return replace(self, **updates) if updates else self


LINE_OPTIONS = frozenset(f.name for f in fields(LineSettings)) | {"framing"}


def _parse_framing(text: str, device: str) -> dict[str, Any]:
    t = text.strip().upper()
    if len(t) < 3 or t[0] not in "5678" or t[1] not in _PARITIES or t[2:] not in ("1", "1.5", "2"):
        raise ConfigError(
            f"framing={text!r} for {device} is invalid; expected data bits, parity, stop bits "
            f"such as '8N1' or '7E1'"
        )
    return {"bytesize": int(t[0]), "parity": t[1], "stopbits": float(t[2:]) if "." in t[2:] else int(t[2:])}


def _parse_bool(name: str, value: Any, device: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={value!r} for {device} is invalid; expected true/false (1/0)")


def _parse_terminator(name: str, value: Any, device: str) -> bytes:
    if isinstance(value, bytes):
        return value
    text = str(value)
    if text.upper() in _TERMINATOR_NAMES:
        return _TERMINATOR_NAMES[text.upper()]
    try:
        decoded = text.encode("ascii").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as exc:
        raise ConfigError(
            f"{name}={value!r} for {device} is invalid; expected CR, LF, CRLF or an escaped "
            f"string such as '\\r\\n'"
        ) from exc
    return decoded


def _parse_option(name: str, value: Any, device: str) -> Any:
    if name in ("write_terminator", "read_terminator"):
        return _parse_terminator(name, value, device)
    if name in ("rtscts", "xonxoff", "strip_xonxoff"):
        return _parse_bool(name, value, device)
    if name == "parity":
        return str(value).strip().upper()[:1] if str(value).strip() else str(value)
    try:
        if name in ("baudrate", "bytesize"):
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        number = float(value)
        return int(number) if name == "stopbits" and number.is_integer() else number
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} for {device} is not a number") from None


def port_url(target: str) -> str:
    """Turn a backend-URL target into a pyserial URL.

    ``/dev/ttyUSB0``, ``COM3`` and pyserial URLs (``loop://``, ``socket://h:p``,
    ``rfc2217://h:p``) pass through; ``host:port`` (e.g. ``192.168.0.5:8101``) becomes
    ``socket://host:port``.
    """
    target = target.strip()
    if not target:
        raise BackendError("No port given: expected a device path, COM port or host:port")
    if "://" in target or target.startswith("/") or target.upper().startswith("COM"):
        return target
    host, sep, port = target.rpartition(":")
    if sep and host and port.isdigit():
        return f"socket://{target}"
    return target


class Transport:
    """Command/reply exchanges with one device over a pyserial-like port.

    Parameters
    ----------
    port : serial.SerialBase-like
        An open port with ``write``, ``read_until``, ``reset_input_buffer``, ``close``.
        Use :meth:`open` to open one from a URL.
    settings : LineSettings
        Terminators, timeouts and inter-command delay (line settings are applied by
        :meth:`open`; a ready-made port keeps its own).
    device : str
        Device name used in error messages, e.g. ``"JULABO"``.
    url : str
        Port name used in error messages.
    clock : Clock, optional
        Clock for the inter-command delay (defaults to a :class:`RealClock`).
    auto_reopen : bool
        After the port was *lost* (not closed by :meth:`close`), the next exchange first
        tries to reopen it once, so a watchdog's retries can ride out a USB adapter that
        re-enumerates or a dropped TCP connection. Default True.
    """

    def __init__(
        self,
        port: Any,
        *,
        settings: LineSettings | None = None,
        device: str = "device",
        url: str = "",
        clock: Clock | None = None,
        auto_reopen: bool = True,
    ) -> None:
        self.port = port
        self.auto_reopen = bool(auto_reopen)
        self._lost = False
        self.settings = settings if settings is not None else LineSettings()
        self.device = device
        self.url = url or str(getattr(port, "port", "") or getattr(port, "name", "") or "?")
        self.clock = clock if clock is not None else RealClock()
        self._lock = threading.RLock()
        self._last_exchange_s: float | None = None
        self._closed = False
        self.n_exchanges = 0
        self.last_command: bytes = b""
        #: :class:`~crystalloop.hardware.trace.TraceWriter` logging every exchange, or None
        self.trace: Any = None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        settings: LineSettings | None = None,
        device: str = "device",
        clock: Clock | None = None,
    ) -> Transport:
        """Open ``url`` with :func:`serial.serial_for_url` and the given line settings.

        Raises
        ------
        BackendError
            The port does not exist or the URL scheme is unknown (the message lists the
            serial ports present on this machine).
        DeviceDisconnected
            The port exists but cannot be opened (busy, permission denied).
        """
        settings = settings if settings is not None else LineSettings()
        url = port_url(url)
        try:
            port = serial.serial_for_url(url, **settings.serial_kwargs())
        except ValueError as exc:
            raise BackendError(
                f"Cannot open port {url!r} for {device}: {exc}. Expected a serial device "
                f"(/dev/ttyUSB0, COM3), host:port, or a pyserial URL (socket://, loop://); "
                f"{_available_ports()}"
            ) from exc
        except (serial.SerialException, OSError) as exc:
            text = str(exc)
            if getattr(exc, "errno", None) == errno.ENOENT or any(
                marker in text for marker in ("No such file", "FileNotFoundError", "cannot find the file")
            ):
                raise BackendError(
                    f"Port {url!r} for {device} does not exist; {_available_ports()}"
                ) from exc
            hint = ""
            if "ermission" in text or "Access is denied" in text:
                hint = " (on Linux, add your user to the 'dialout' group; on Windows, close other programs using it)"
            elif "refused" in text or "timed out" in text:
                hint = " (check host, port and that the device's network interface is enabled)"
            raise DeviceDisconnected(f"Cannot open port {url!r} for {device}: {exc}{hint}") from exc
        return cls(port, settings=settings, device=device, url=url, clock=clock)

    # -- exchanges ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.device} on {self.url}"

    def _check_open(self) -> None:
        if not self._closed:
            return
        if self._lost and self.auto_reopen:
            try:
                self.reopen()
            except DeviceDisconnected as exc:
                raise DeviceDisconnected(
                    f"{self._where()}: connection lost and reopening failed ({exc.__cause__ or exc})"
                ) from exc
            return
        raise DeviceDisconnected(f"{self._where()}: the port is closed")

    def _wait_interval(self) -> None:
        gap = self.settings.min_interval_s
        if gap > 0 and self._last_exchange_s is not None:
            remaining = self._last_exchange_s + gap - self.clock.now()
            if remaining > 0:
                self.clock.sleep(remaining)

    def write(self, command: str | bytes) -> None:
        """Send one command (the write terminator is appended); expect no reply."""
        with self._lock:
            self._send(command)
            self._last_exchange_s = self.clock.now()

    def _send(self, command: str | bytes) -> None:
        self._check_open()
        data = command.encode("ascii") if isinstance(command, str) else bytes(command)
        data += self.settings.write_terminator
        self._wait_interval()
        try:
            # drop stale bytes (a late reply to an earlier, timed-out command)
            self.port.reset_input_buffer()
            self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeout(
                f"{self._where()} did not accept command {data!r} within "
                f"{self.settings.write_timeout_s} s (flow control blocked? check RTS/CTS / XON/XOFF)"
            ) from exc
        except _PORT_ERRORS as exc:
            self._mark_lost()
            raise DeviceDisconnected(
                f"{self._where()} disconnected while sending {data!r}: {exc}"
            ) from exc
        self.last_command = data
        self.n_exchanges += 1
        if self.trace is not None:
            self.trace.event("OUT", encode_bytes(data))

    def read_line(self) -> bytes:
        """Read one reply line; terminator, surrounding whitespace and XON/XOFF removed."""
        with self._lock:
            try:
                return self._read()
            finally:
                self._last_exchange_s = self.clock.now()

    def _read(self) -> bytes:
        self._check_open()
        term = self.settings.read_terminator
        try:
            raw = self.port.read_until(term)
        except _PORT_ERRORS as exc:
            self._mark_lost()
            raise DeviceDisconnected(
                f"{self._where()} disconnected while waiting for the reply to "
                f"{self.last_command!r}: {exc}"
            ) from exc
        if self.trace is not None:
            self.trace.event("IN", encode_bytes(raw) if raw.endswith(term) else (encode_bytes(raw) + " TIMEOUT").lstrip())
        if not raw.endswith(term):
            what = f"a partial reply {raw!r}" if raw else "no reply"
            raise DeviceTimeout(
                f"{self._where()}: {what} to {self.last_command!r} within "
                f"{self.settings.timeout_s} s (expected a line ending in {term!r})"
            )
        line = raw[: -len(term)]
        if self.settings.strip_xonxoff:
            line = line.replace(XON, b"").replace(XOFF, b"")
        return line.strip(b" \t\r\n\x00")

    def query(self, command: str | bytes) -> bytes:
        """Send ``command`` and return its reply line (see :meth:`read_line`)."""
        with self._lock:
            try:
                self._send(command)
                return self._read()
            finally:
                self._last_exchange_s = self.clock.now()

    # -- life cycle --------------------------------------------------------------------------

    def _mark_lost(self) -> None:
        self._closed = True
        self._lost = True
        try:
            self.port.close()
        except Exception:  # the port is already gone; closing must not mask the cause
            pass

    @property
    def is_open(self) -> bool:
        return not self._closed

    def close(self) -> None:
        """Close the port (idempotent) and the trace, if any."""
        with self._lock:
            if self.trace is not None:
                self.trace.close()
            self._lost = False
            if not self._closed:
                self._closed = True
                try:
                    self.port.close()
                except _PORT_ERRORS:
                    pass

    def reopen(self) -> None:
        """Reopen a lost or closed port with the same URL and settings.

        Raises
        ------
        DeviceDisconnected
            The port is still gone.
        """
        with self._lock:
            try:
                self.port.close()
            except Exception:
                pass
            try:
                self.port = serial.serial_for_url(self.url, **self.settings.serial_kwargs())
            except (serial.SerialException, OSError, ValueError) as exc:
                raise DeviceDisconnected(f"Cannot reopen {self._where()}: {exc}") from exc
            self._closed = False
            self._lost = False
            self._last_exchange_s = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"Transport({self.device!r}, {self.url!r}, {self.settings.describe()}, {state})"


def _available_ports() -> str:
    try:
        from serial.tools import list_ports

        names = sorted(p.device for p in list_ports.comports())
    except Exception:  # listing is only a hint
        names = []
    return "serial ports present: " + (", ".join(names) if names else "none found")

