"""Scripted ports for testing drivers byte for byte (pymeasure's ``expected_protocol`` style).

A test lists the exact exchanges from the manual — command bytes with their terminator,
and the reply bytes the device would send (``None`` for commands without reply) — and
runs driver code against them. Any byte the driver writes that the script does not
expect, any reply left unread and any exchange left unused fails the test with
:class:`ProtocolMismatch`.

Examples
--------
>>> from crystalloop.hardware.transport import LineSettings
>>> with expected_protocol([(b"in_pv_00\\r", b"25.34\\r\\n")], settings=LineSettings()) as t:
...     t.query("in_pv_00")
b'25.34'

This module is for tests (ours and those of users writing their own drivers); nothing
in crystalloop imports it at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import serial

from crystalloop.hardware.base import Clock, VirtualClock
from crystalloop.hardware.transport import LineSettings, Transport

__all__ = ["ProtocolMismatch", "ScriptedPort", "expected_protocol"]

Exchange = tuple[bytes, bytes | None]


class ProtocolMismatch(AssertionError):
    """The driver's bytes differ from the scripted exchanges (a test failure, not a device error)."""


class ScriptedPort:
    """A pyserial-like port that plays a fixed script of exchanges.

    Parameters
    ----------
    exchanges : sequence of (bytes, bytes or None)
        ``(command, reply)`` in order. ``command`` must be written exactly (terminator
        included); ``reply`` is then made available to reads (``None``: no reply).
    name : str
        Port name reported in errors.

    Notes
    -----
    A read with no scripted bytes pending returns what is there (possibly nothing),
    which the transport reports as a timeout — so scripts can model a silent device
    by giving ``b""`` as reply.
    """

    def __init__(self, exchanges: Sequence[Exchange], *, name: str = "scripted://") -> None:
        for i, pair in enumerate(exchanges):
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not isinstance(pair[0], bytes)
                or not (pair[1] is None or isinstance(pair[1], bytes))
            ):
                raise TypeError(
                    f"exchange {i} must be a (bytes, bytes | None) tuple, got {pair!r}"
                )
        self.exchanges = list(exchanges)
        self.port = name
        self.is_open = True
        self._next = 0
        self._pending_write = b""
        self._rx = bytearray()
        self.disconnect_after: int | None = None

    # -- pyserial surface ------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise serial.SerialException("write on a closed scripted port")
        self._pending_write += bytes(data)
        while self._pending_write:
            if self._next >= len(self.exchanges):
                raise ProtocolMismatch(
                    f"unexpected write {self._pending_write!r}: all {len(self.exchanges)} "
                    f"scripted exchanges are used"
                )
            expected, reply = self.exchanges[self._next]
            got = self._pending_write
            if len(got) < len(expected):
                if not expected.startswith(got):
                    raise ProtocolMismatch(
                        f"exchange {self._next}: wrote {got!r}, expected {expected!r}"
                    )
                break
            if not got.startswith(expected):
                raise ProtocolMismatch(
                    f"exchange {self._next}: wrote {got[: len(expected)]!r}, expected {expected!r}"
                )
            self._pending_write = got[len(expected):]
            self._next += 1
            if reply is not None:
                self._rx += reply
        return len(data)

    def flush(self) -> None:
        if not self.is_open:
            raise serial.SerialException("flush on a closed scripted port")

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        if not self.is_open:
            raise serial.SerialException("read on a closed scripted port")
        idx = self._rx.find(expected)
        end = len(self._rx) if idx < 0 else idx + len(expected)
        if size is not None:
            end = min(end, size)
        out = bytes(self._rx[:end])
        del self._rx[:end]
        return out

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self) -> None:
        if self._rx:
            raise ProtocolMismatch(
                f"reply bytes {bytes(self._rx)!r} were never read before the next command"
            )

    def close(self) -> None:
        self.is_open = False

    # -- checks ----------------------------------------------------------------------------

    @property
    def unused(self) -> list[Exchange]:
        """Exchanges the driver has not (yet) performed."""
        return self.exchanges[self._next:]

    def assert_done(self) -> None:
        """Fail unless every exchange was used and every reply byte read."""
        if self._pending_write:
            raise ProtocolMismatch(f"incomplete command written: {self._pending_write!r}")
        if self.unused:
            raise ProtocolMismatch(
                f"{len(self.unused)} scripted exchange(s) never used, first: {self.unused[0]!r}"
            )
        if self._rx:
            raise ProtocolMismatch(f"reply bytes never read: {bytes(self._rx)!r}")


@contextmanager
def expected_protocol(
    exchanges: Sequence[Exchange],
    *,
    settings: LineSettings | None = None,
    device: str = "device",
    clock: Clock | None = None,
) -> Iterator[Transport]:
    """A :class:`~crystalloop.hardware.transport.Transport` over a :class:`ScriptedPort`.

    Parameters
    ----------
    exchanges : sequence of (bytes, bytes or None)
        The exact byte exchanges, in order.
    settings : LineSettings, optional
        Terminators etc. of the device under test (use the driver's ``DEFAULT_SETTINGS``).
    device : str
        Device name for error messages.
    clock : Clock, optional
        Defaults to a :class:`~crystalloop.hardware.base.VirtualClock`, so inter-command
        delays cost no wall time.

    Raises
    ------
    ProtocolMismatch
        On leaving the block without an exception, if an exchange was not used or a
        reply not read.
    """
    port = ScriptedPort(exchanges)
    transport = Transport(
        port,
        settings=settings,
        device=device,
        url="scripted://",
        clock=clock if clock is not None else VirtualClock(),
    )
    yield transport
    port.assert_done()
