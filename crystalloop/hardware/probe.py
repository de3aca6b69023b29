"""Find a thermostat's line settings and capabilities, and take a read-only snapshot of its state.

:func:`probe_line_settings` tries the baud rates and framings a vendor's models use until
the device identifies itself, and returns the backend URL that works together with the
unit's capability table (which optional functions it has, and the fallback for each it
lacks); :func:`snapshot` reads identity, limits, setpoint, temperatures and status without
changing anything. Both back the ``crystalloop thermostat`` command; :func:`format_capabilities`
renders the table as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from crystalloop.errors import BackendError, DeviceError, DeviceTimeout, ProtocolError
from crystalloop.hardware.base import (
    Capability,
    Clock,
    ReportsCapabilities,
    ThermostatStatus,
    connect,
    parse_backend_url,
)

__all__ = ["LINE_CANDIDATES", "ProbeResult", "probe_line_settings", "snapshot", "format_capabilities"]

#: (baudrate, framing) pairs tried per vendor, most common first.
LINE_CANDIDATES: dict[str, tuple[tuple[int, str], ...]] = {
    "julabo": ((9600, "8N1"), (4800, "7E1"), (4800, "8N1"), (9600, "7E1"), (19200, "8N1"), (2400, "7E1")),
    "huber": ((9600, "8N1"), (19200, "8N1"), (4800, "8N1"), (38400, "8N1"), (2400, "8N1")),
    "lauda": ((9600, "8N1"), (19200, "8N1"), (4800, "8N1"), (2400, "8N1")),
}
_LINE_KEYS = {"baudrate", "framing", "bytesize", "parity", "stopbits"}


@dataclass
class ProbeResult:
    """Outcome of :func:`probe_line_settings`.

    Attributes
    ----------
    url : str
        Backend URL with the working line settings, ready for ``connect``/``crystalloop run``.
    line_settings : str
        E.g. ``"4800 baud 7E1"``.
    model, version : str
        As the device reported them.
    tried : list of (str, str)
        Every setting tried before, with why it failed.
    capabilities : tuple of Capability
        What the unit has and lacks, as probed at connect (each absent optional function
        also gave one :class:`~crystalloop.errors.CapabilityWarning`).
    """

    url: str
    line_settings: str
    model: str
    version: str
    tried: list[tuple[str, str]] = field(default_factory=list)
    capabilities: tuple[Capability, ...] = ()


def _with_options(url: str, options: dict[str, Any]) -> str:
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _LINE_KEYS]
    return base + "?" + urlencode(kept + list(options.items()))


def probe_line_settings(
    url: str,
    *,
    clock: Clock | None = None,
    timeout_s: float = 0.5,
    candidates: tuple[tuple[int, str], ...] | None = None,
) -> ProbeResult:
    """Try the vendor's usual line settings on ``url`` until the device answers sensibly.

    Parameters
    ----------
    url : str
        ``julabo://PORT``, ``huber://PORT`` or ``lauda://PORT``; other options (``name``,
        ``rtscts``, ...) are kept, line settings in it are replaced by each candidate.
    clock : Clock, optional
        For the inter-command delay (default: real time).
    timeout_s : float
        Reply timeout per attempt, s (a silent wrong setting costs about this much).
    candidates : tuple of (baudrate, framing), optional
        Default: :data:`LINE_CANDIDATES` for the vendor.

    Returns
    -------
    ProbeResult

    Raises
    ------
    BackendError
        Not a serial thermostat URL, or the port does not exist.
    DeviceError
        No candidate worked; the message lists each setting tried and its failure.
    """
    parsed = parse_backend_url(url)
    if parsed.scheme not in LINE_CANDIDATES:
        raise BackendError(
            f"Cannot probe {url!r}: expected a serial thermostat URL "
            f"({', '.join(s + '://PORT' for s in LINE_CANDIDATES)})"
        )
    if "://" in parsed.target and not parsed.target.startswith(("rfc2217://",)):
        # socket:// and loop:// carry no line settings: one attempt is enough
        candidates = candidates or ((9600, "8N1"),)
    tried: list[tuple[str, str]] = []
    for baud, framing in candidates or LINE_CANDIDATES[parsed.scheme]:
        # probing is harmless: it never arms a unit's communication watchdog
        attempt = _with_options(url, {"baudrate": baud, "framing": framing, "timeout_s": timeout_s,
                                      "comm_timeout_s": 0})
        label = f"{baud} baud {framing}"
        try:
            cryst = connect(attempt, clock=clock)
        except (DeviceTimeout, ProtocolError) as exc:
            tried.append((label, type(exc).__name__))
            continue
        with cryst:
            th = cryst.thermostat
            info = th.info
            caps = th.capabilities() if isinstance(th, ReportsCapabilities) else ()
            final = _with_options(url, {"baudrate": baud, "framing": framing})
            if "://" in parsed.target:  # socket:// and friends: the line settings mean nothing
                final = url
            return ProbeResult(final, cryst.meta["line_settings"], info.model, info.version, tried, caps)
    lines = "; ".join(f"{label}: {why}" for label, why in tried)
    raise DeviceError(
        f"No line setting gave a valid reply from {parsed.scheme.upper()} on {parsed.target} "
        f"(tried {lines}). Check the cable (null-modem vs straight), power, remote mode, and "
        f"handshake (add rtscts=1 or xonxoff=1 to the URL if the unit's menu asks for it)"
    )


def snapshot(url: str, *, clock: Clock | None = None) -> dict[str, Any]:
    """Read identity, limits, setpoint, temperatures and status without writing anything.

    Returns
    -------
    dict
        ``vendor, model, version, port, line_settings, min_c, max_c, setpoint_c,
        bath_c, process_c, running, status, alarms`` (a failed read gives the error text
        in place of the value).
    """
    out: dict[str, Any] = {}
    with connect(url, clock=clock, comm_timeout_s=0) as cryst:  # arms nothing: a snapshot writes nothing
        th = cryst.thermostat
        out.update({k: cryst.meta.get(k) for k in ("vendor", "model", "version", "port", "line_settings")})
        out["min_c"], out["max_c"] = th.limits.min_c, th.limits.max_c
        out["limits_source"] = th.limits.source or "none"
        for key, fn in (("setpoint_c", th.get_setpoint), ("bath_c", lambda: th.read_bath().value),
                        ("process_c", lambda: th.read_process().value)):
            try:
                out[key] = fn()
            except DeviceError as exc:
                out[key] = f"{type(exc).__name__}: {exc}"
        try:
            st: ThermostatStatus = th.status()
            out.update(running=st.running, status=st.message, alarms=list(st.alarms))
        except DeviceError as exc:
            out.update(running=None, status=f"{type(exc).__name__}: {exc}", alarms=[])
        out["capabilities"] = th.capabilities() if isinstance(th, ReportsCapabilities) else ()
    return out


def format_capabilities(capabilities: tuple[Capability, ...]) -> list[str]:
    """The capability table as plain-text lines (fixed columns, never wrapped).

    Columns: function, commands, ``needed``/``optional``, ``yes``/``no``/``unprobed``, detail.
    """
    rows = [("function", "commands", "kind", "present", "detail")]
    for c in capabilities:
        present = "unprobed" if c.present is None else ("yes" if c.present else "no")
        rows.append((c.name, c.commands, "needed" if c.essential else "optional", present, c.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [" ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  " + r[4] if r[4] else "") for r in rows]
