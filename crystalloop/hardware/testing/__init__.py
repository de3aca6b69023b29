"""Test doubles for thermostat drivers: scripted ports and fake units per model family.

* :func:`expected_protocol` / :class:`ScriptedPort`: byte-exact scripts from the manual
  (pymeasure's ``expected_protocol`` style) for driver unit tests.
* Fake units (:class:`FakeUnit` subclasses), written from the manufacturers' manuals, not
  from the drivers: three model families per brand with different command subsets, each on
  a pseudo-terminal or a TCP socket, with a bath that follows the setpoint, a readable
  command log (``unit.log``: ``(time_s, command)``), line faults (``silent``, ``garble``,
  ``partial``, ``wrong``, ``xonxoff``, ``disconnect``), a baud rate that the driver's port
  must match, JULABO's 250 ms command spacing and, where the family has one, the unit's own
  communication watchdog. :func:`start_fake` starts one by name.

Examples
--------
>>> from crystalloop.hardware.transport import LineSettings
>>> with expected_protocol([(b"in_pv_00\\r", b"25.34\\r\\n")], settings=LineSettings()) as t:
...     t.query("in_pv_00")
b'25.34'

This package is for tests (ours and those of users writing their own drivers); nothing in
crystalloop imports it at run time.
"""

from __future__ import annotations

from typing import Any

from crystalloop.hardware.testing.huber import (
    FakeHuberUnit,
    HuberCC,
    HuberPilotOne,
    HuberPilotOneBasic,
)
from crystalloop.hardware.testing.julabo import (
    FakeJulaboUnit,
    JulaboCorio,
    JulaboFSeries,
    JulaboMagio,
)
from crystalloop.hardware.testing.lauda import FakeLaudaUnit, LaudaEco, LaudaIntegral, LaudaRE
from crystalloop.hardware.testing.scripted import ProtocolMismatch, ScriptedPort, expected_protocol
from crystalloop.hardware.testing.unit import Bath, FakeUnit

__all__ = [
    "ProtocolMismatch", "ScriptedPort", "expected_protocol",
    "Bath", "FakeUnit", "FakeJulaboUnit", "FakeHuberUnit", "FakeLaudaUnit",
    "JulaboMagio", "JulaboCorio", "JulaboFSeries",
    "HuberPilotOne", "HuberPilotOneBasic", "HuberCC",
    "LaudaIntegral", "LaudaEco", "LaudaRE",
    "FAKE_FAMILIES", "start_fake",
]

#: ``"brand/family"`` -> fake unit class, and the URL scheme its driver uses
FAKE_FAMILIES: dict[str, tuple[type[FakeUnit], str]] = {
    "julabo/magio": (JulaboMagio, "julabo"),
    "julabo/corio": (JulaboCorio, "julabo"),
    "julabo/f_series": (JulaboFSeries, "julabo"),
    "huber/pilot_one": (HuberPilotOne, "huber"),
    "huber/pilot_one_basic": (HuberPilotOneBasic, "huber"),
    "huber/cc": (HuberCC, "huber"),
    "lauda/integral": (LaudaIntegral, "lauda"),
    "lauda/eco": (LaudaEco, "lauda"),
    "lauda/re": (LaudaRE, "lauda"),
}


def start_fake(family: str, *, link: str = "pty", **kw: Any) -> tuple[FakeUnit, str]:
    """Start a fake unit and return it with the backend URL that reaches it.

    Parameters
    ----------
    family : str
        A key of :data:`FAKE_FAMILIES`, e.g. ``"lauda/eco"``.
    link : {"pty", "socket"}
        Pseudo-terminal or TCP socket.
    **kw
        Passed to the unit (``clock=``, ``setpoint_c=``, ``temperature_c=``, ``tau_s=``,
        ``baudrate=``; for JULABO ``enforce_interval=``, ``jitter_s=``).

    Returns
    -------
    (FakeUnit, str)
        The running unit (close it, or use it as a context manager) and e.g.
        ``"lauda:///dev/pts/5"`` or ``"huber://127.0.0.1:40123"``.

    Examples
    --------
    >>> unit, url = start_fake("julabo/corio")
    >>> url.startswith("julabo://") and unit.family == "CORIO"
    True
    >>> unit.close()
    """
    try:
        cls, scheme = FAKE_FAMILIES[family.lower()]
    except KeyError:
        raise ValueError(f"unknown fake family {family!r}; expected one of {', '.join(FAKE_FAMILIES)}") from None
    unit = cls(link=link, **kw)
    return unit, f"{scheme}://{unit.url}"
