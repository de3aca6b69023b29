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
them, so :func:`replay_trace` can run the same operations against the driver with the
recorded replies and report the first place where the driver now behaves differently.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crystalloop.errors import BackendError, ConfigError

__all__ = ["TraceWriter", "TraceEvent", "TraceSession", "read_trace", "replay_trace", "ReplayResult",
           "encode_bytes", "decode_bytes", "encode_result", "with_trace", "without_trace"]

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


class _Diverged(Exception):
    """The driver wrote something else than the trace recorded (not an OSError, so the
    transport does not mistake it for a lost port)."""


class ReplayPort:
    """A pyserial-like port that answers the driver with the replies recorded in a trace.

    Every write must equal the next recorded ``OUT``; the recorded ``IN`` is then available
    to read (``TIMEOUT`` entries give what arrived before the timeout, so the transport
    reports the same timeout). A divergence stops the replay with a message naming the
    trace line.
    """

    def __init__(self, exchanges: list[tuple[int, bytes, bytes | None]], source: str) -> None:
        self.exchanges = exchanges
        self.source = source
        self.port = f"replay://{source}"
        self.is_open = True
        self.next = 0
        self._pending = b""
        self._rx = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += bytes(data)
        while self._pending:
            if self.next >= len(self.exchanges):
                raise _Diverged(f"the driver wrote {self._pending!r} after the last recorded exchange")
            line, expected, reply = self.exchanges[self.next]
            got = self._pending
            if len(got) < len(expected) and expected.startswith(got):
                break
            if not got.startswith(expected):
                raise _Diverged(f"{self.source}:{line}: the driver wrote {got[:len(expected)]!r}, "
                                f"the trace has {expected!r}")
            self._pending = got[len(expected):]
            self.next += 1
            if reply is not None:
                self._rx += reply
        return len(data)

    def flush(self) -> None:
        return None

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        idx = self._rx.find(expected)
        end = len(self._rx) if idx < 0 else idx + len(expected)
        out = bytes(self._rx[:end])
        del self._rx[:end]
        return out

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def close(self) -> None:
        self.is_open = False


def _session_exchanges(session: TraceSession) -> list[tuple[int, bytes, bytes | None]]:
    out: list[tuple[int, bytes, bytes | None]] = []
    for ev in session.events:
        if ev.kind == "OUT":
            out.append((ev.line, decode_bytes(ev.text), None))
        elif ev.kind == "IN":
            if not out or out[-1][2] is not None:
                raise ConfigError(f"trace line {ev.line}: IN without a preceding OUT")
            text = ev.text
            if text == "TIMEOUT" or text.endswith(" TIMEOUT"):
                reply = decode_bytes(text[: -len("TIMEOUT")].rstrip(" "))
            else:
                reply = decode_bytes(text)
            out[-1] = (out[-1][0], out[-1][1], reply)
    return out


@dataclass
class ReplayResult:
    """Outcome of :func:`replay_trace`.

    Attributes
    ----------
    sessions, calls, exchanges : int
        How many sessions, driver operations and byte exchanges were replayed.
    differences : list of str
        Every place where the driver now behaves differently (empty = identical).
    """

    sessions: int = 0
    calls: int = 0
    exchanges: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _calls(session: TraceSession) -> Iterator[tuple[TraceEvent, TraceEvent | None]]:
    pending: TraceEvent | None = None
    for ev in session.events:
        if ev.kind == "CALL":
            if pending is not None:
                yield pending, None
            pending = ev
        elif ev.kind in ("RET", "ERR") and pending is not None:
            yield pending, ev
            pending = None
    if pending is not None:
        yield pending, None


def replay_trace(path: str | Path) -> ReplayResult:
    """Replay a trace against today's driver and report every difference.

    Each session's driver is built from its URL (scheme and driver options; line settings
    do not matter) over a :class:`ReplayPort`, on a virtual clock; then each recorded
    operation is called again and its result (or error type) and bytes compared.

    Raises
    ------
    ConfigError
        Malformed trace file; BackendError for a URL that is not a serial thermostat.
    """
    from crystalloop.hardware.base import VirtualClock, connect, parse_backend_url
    from crystalloop.hardware.transport import LINE_OPTIONS, Transport

    result = ReplayResult()
    for session in read_trace(path):
        parsed = parse_backend_url(session.url)
        if parsed.scheme not in SERIAL_SCHEMES:
            raise BackendError(f"trace {path}: session URL {session.url!r} is not a serial thermostat "
                               f"(julabo://, huber://, lauda://)")
        exchanges = _session_exchanges(session)
        port = ReplayPort(exchanges, str(path))
        clock = VirtualClock()
        options = {k: v for k, v in parsed.options.items() if k not in LINE_OPTIONS and k != "trace"}
        transport_settings = _default_settings(parsed.scheme)
        timeout = parsed.options.get("timeout_s")
        if timeout:
            transport_settings = transport_settings.with_options({"timeout_s": timeout})
        transport = Transport(port, settings=transport_settings, device=parsed.scheme.upper(),
                              url=port.port, clock=clock)
        factory_url = f"{parsed.scheme}://replay"
        driver = None
        result.sessions += 1
        for call, outcome in _calls(session):
            result.calls += 1
            name, _, arg = call.text.partition(" ")
            if name != "initialize":
                if driver is None:
                    raise ConfigError(f"trace {path}:{call.line}: {name} before initialize")
                if name.startswith("_") or not callable(getattr(type(driver), name, None)):
                    raise ConfigError(f"trace {path}:{call.line}: unknown driver operation {name!r}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if name == "initialize":
                        driver = value = connect(factory_url, clock=clock, transport=transport, **options).thermostat
                    else:
                        value = getattr(driver, name)(float(arg)) if arg else getattr(driver, name)()
                got = ("RET", encode_result(value))
            except _Diverged as exc:
                result.differences.append(f"{path}:{call.line}: {call.text}: {exc}")
                break
            except Exception as exc:  # the recorded outcome may be an error too
                got = ("ERR", type(exc).__name__)
            want = None if outcome is None else (outcome.kind, outcome.text.split(":")[0] if outcome.kind == "ERR"
                                                 else outcome.text)
            if want is not None and got != want:
                result.differences.append(
                    f"{path}:{call.line}: {call.text} gave {got[0]} {got[1]}, the trace has {want[0]} {want[1]}"
                )
        if port.next < len(exchanges):
            line, cmd, _ = exchanges[port.next]
            result.differences.append(f"{path}:{line}: recorded exchange {cmd!r} (and {len(exchanges) - port.next - 1} "
                                      f"more) not replayed: the driver sent fewer commands")
        result.exchanges += port.next
    return result


def _default_settings(scheme: str):
    if scheme == "julabo":
        from crystalloop.hardware.julabo import JULABO_SETTINGS as settings
    elif scheme == "huber":
        from crystalloop.hardware.huber import HUBER_SETTINGS as settings
    else:
        from crystalloop.hardware.lauda import LAUDA_SETTINGS as settings
    return settings
