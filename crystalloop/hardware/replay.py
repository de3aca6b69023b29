"""Replay a trace against today's driver: same operations, the recorded replies, no device.

:func:`replay_trace` builds each session's driver from the trace's URL over a
:class:`ReplayPort` that answers with the recorded bytes, calls the recorded operations
again and reports every place where the driver now sends other bytes or returns another
result. ``crystalloop thermostat replay FILE`` runs it; the trace format is described in
:mod:`crystalloop.hardware.trace`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crystalloop.errors import BackendError, ConfigError
from crystalloop.hardware.base import VirtualClock, connect, parse_backend_url
from crystalloop.hardware.huber import HUBER_SETTINGS
from crystalloop.hardware.julabo import JULABO_SETTINGS
from crystalloop.hardware.lauda import LAUDA_SETTINGS
from crystalloop.hardware.trace import (
    SERIAL_SCHEMES,
    TraceEvent,
    TraceSession,
    decode_bytes,
    encode_result,
    read_trace,
)
from crystalloop.hardware.transport import LINE_OPTIONS, Transport

__all__ = ["ReplayPort", "ReplayResult", "replay_trace"]

_SETTINGS = {"julabo": JULABO_SETTINGS, "huber": HUBER_SETTINGS, "lauda": LAUDA_SETTINGS}


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
        transport_settings = _SETTINGS[parsed.scheme]
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
