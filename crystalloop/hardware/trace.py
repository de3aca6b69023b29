"""Plain-text traces of every exchange with a serial thermostat, and their replay.

A trace is what a user sends with a bug report, and what becomes a test: ``--trace FILE``
on ``crystalloop run`` and ``crystalloop thermostat`` (or ``trace=FILE`` in the backend
URL) writes one line per event, with the time on the run's clock in seconds::

    # crystalloop thermostat trace v1
    # url: julabo:///dev/ttyUSB0?baudrate=4800&framing=7E1
    # started: 2026-12-03T08:50:00Z
    0.000000 CALL initialize
    0.000012 OUT version\\r
    0.013104 IN JULABO FP50-HE VERSION 2.0\\r\\n
    ...
    0.801220 RET None
    1.052100 CALL set_setpoint 19.83
    1.052170 OUT out_sp_00 19.83\\r
    1.302300 OUT in_sp_00\\r
    2.302400 IN TIMEOUT
    2.302500 ERR DeviceTimeout

``OUT``/``IN`` carry the bytes on the wire (printable ASCII as is, ``\\r``, ``\\n``,
``\\t``, ``\\\\`` and ``\\xNN`` escaped); ``IN ... TIMEOUT`` marks a reply that did not
complete in time (with what arrived before the tag, if anything). ``CALL``/``RET``/``ERR``
are the driver operations (:class:`~crystalloop.hardware.base.Thermostat` methods) around
them, so :func:`crystalloop.hardware.replay.replay_trace` can run the same operations
against the driver with the recorded replies and report where the driver now behaves
differently.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crystalloop.errors import BackendError, ConfigError

__all__ = ["TraceWriter", "TraceEvent", "TraceSession", "read_trace", "encode_bytes", "decode_bytes",
           "encode_result", "with_trace", "without_trace", "SERIAL_SCHEMES"]

HEADER = "# crystalloop thermostat trace v1"
SERIAL_SCHEMES = ("julabo", "huber", "lauda")
_LINE = re.compile(r"(-?\d+(?:\.\d+)?) (CALL|RET|ERR|OUT|IN)(?: (.*))?$")


def with_trace(url: str, path: str | Path | None) -> str:
    """``url`` with the ``trace=`` option that makes a serial driver write a trace to ``path``.

    Raises
    ------
    BackendError
        ``url`` is not a serial thermostat URL (``julabo://``, ``huber://``, ``lauda://``).
    """
    if path is None:
        return url
    from urllib.parse import quote

    from crystalloop.hardware.base import parse_backend_url

    if parse_backend_url(url).scheme not in SERIAL_SCHEMES:
        raise BackendError(f"--trace records serial exchanges: it needs a serial thermostat backend "
                           f"({', '.join(s + '://' for s in SERIAL_SCHEMES)}), got {url!r}")
    return without_trace(url) + ("&" if "?" in without_trace(url) else "?") + "trace=" + quote(str(path), safe="/:\\")


def without_trace(url: str) -> str:
    """``url`` without its ``trace=`` option (the URL to record in the trace, or to use later)."""
    from urllib.parse import parse_qsl, urlencode

    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "trace"]
    return base + ("?" + urlencode(kept) if kept else "")


def encode_bytes(data: bytes) -> str:
    """Bytes as one line of text: printable ASCII kept, ``\\r \\n \\t \\\\`` and ``\\xNN`` escaped."""
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|r|n|t|\\)")


def decode_bytes(text: str) -> bytes:
    """Inverse of :func:`encode_bytes`."""
    out = bytearray()
    pos = 0
    for m in _ESC.finditer(text):
        out += text[pos:m.start()].encode("ascii")
        code = m.group(1)
        out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}.get(code) or bytes([int(code[1:], 16)])
        pos = m.end()
    rest = text[pos:]
    if "\\" in rest:
        raise ConfigError(f"trace: bad escape in {text!r}; expected \\r, \\n, \\t, \\\\ or \\xNN")
    out += rest.encode("ascii")
    return bytes(out)


def encode_result(value: Any) -> str:
    """A driver result as compared in a replay: floats to 2 decimals, readings by value."""
    from crystalloop.hardware.base import Reading, ThermostatStatus

    if isinstance(value, Reading):
        value = value.value
    if isinstance(value, ThermostatStatus):
        return (f"running={value.running} code={value.code} message={value.message!r} "
                f"alarms={list(value.alarms)!r}")
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float | int):
        return "nan" if math.isnan(value) else f"{float(value):.2f}"
    return type(value).__name__


class TraceWriter:
    """Writes one session of a trace (header, then one line per event), line-buffered.

    Parameters
    ----------
    target : str, Path or text stream
        File to append to (created if missing), or an open text stream.
    url : str
        Backend URL of the session (without the ``trace`` option).
    clock : Clock
        Source of the timestamps (the transport's clock).
    """

    def __init__(self, target: str | Path | IO[str], *, url: str, clock: Any) -> None:
        self.clock = clock
        self._own = not hasattr(target, "write")
        if self._own:
            path = Path(target)
            try:
                self._fh: IO[str] = open(path, "a", encoding="ascii", newline="\n")  # noqa: SIM115
            except OSError as exc:
                raise ConfigError(f"Cannot write the trace file {path}: {exc.strerror or exc}") from None
        else:
            self._fh = target  # type: ignore[assignment]
        self.depth = 0
        started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._fh.write(f"{HEADER}\n# url: {url}\n# started: {started}\n")
        self._fh.flush()

    def event(self, kind: str, text: str = "") -> None:
        """Write one event line (``kind`` in CALL, RET, ERR, OUT, IN)."""
        if self._fh.closed:
            return
        self._fh.write(f"{float(self.clock.now()):.6f} {kind}{' ' + text if text else ''}\n")
        self._fh.flush()

    def close(self) -> None:
        if self._own and not self._fh.closed:
            self._fh.close()


@dataclass
class TraceEvent:
    """One line of a trace."""

    line: int
    time_s: float
    kind: str
    text: str


@dataclass
class TraceSession:
    """One connection of a trace: its URL and its events."""

    url: str
    start_line: int
    events: list[TraceEvent] = field(default_factory=list)


def read_trace(path: str | Path) -> list[TraceSession]:
    """Parse a trace file into its sessions.

    Raises
    ------
    ConfigError
        The file is missing, not a crystalloop trace, or has a malformed line (named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"Trace file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read trace file {path}: {exc}; expected a plain-text "
                          f"crystalloop thermostat trace") from None
    sessions: list[TraceSession] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\n")
        if line == HEADER:
            sessions.append(TraceSession(url="", start_line=i))
            continue
        if not line.strip():
            continue
        if not sessions:
            raise ConfigError(f"{path}:{i}: expected the header {HEADER!r}, got {line[:60]!r}")
        if line.startswith("# url: "):
            sessions[-1].url = line[len("# url: "):]
            continue
        if line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if not m:
            raise ConfigError(f"{path}:{i}: malformed trace line {line[:60]!r}; expected "
                              f"'<time_s> CALL|RET|ERR|OUT|IN <text>'")
        sessions[-1].events.append(TraceEvent(i, float(m.group(1)), m.group(2), m.group(3) or ""))
    if not sessions:
        raise ConfigError(f"{path} is empty: expected a crystalloop thermostat trace")
    for s in sessions:
        if not s.url:
            raise ConfigError(f"{path}:{s.start_line}: trace session has no '# url:' line")
    return sessions
