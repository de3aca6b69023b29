"""Serial driver overhead over a pseudo-terminal, against raw pyserial in the same run.

A responder thread on the pty master answers every command line with a fixed reply, so
the figures measure the host side only: raw ``serial.Serial.write`` + ``read_until``
(baseline), :class:`crystalloop.hardware.transport.Transport` ``query`` (flush of stale
input, terminators, XON/XOFF strip, errors) and full driver reads (query + parse +
timestamped Reading). On a real RS232 line at 9600 baud one 8-byte exchange alone takes
≈ 17 ms of wire time, and JULABO needs 250 ms between commands, so any host overhead
below ~1 ms per exchange is invisible in practice.

Two more tables: the cost of ``--trace`` (driver ``read_bath()`` with a trace file against the
same call without, in the same run), and what probing capabilities at connect costs per model
family (exchanges, time on the run's clock including JULABO's 250 ms rule, and wire time at 9600
baud), against the connect of the drivers before capability probing (identify + limits: 3
exchanges) as baseline.

Run: ``python benchmarks/bench_hardware.py [--n 400]``
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import tempfile
import threading
import time
import tty
import warnings

import serial

from crystalloop.hardware.base import VirtualClock, connect
from crystalloop.hardware.huber import HUBER_SETTINGS, HuberThermostat
from crystalloop.hardware.julabo import JULABO_SETTINGS, JulaboThermostat
from crystalloop.hardware.lauda import LAUDA_SETTINGS, LaudaThermostat
from crystalloop.hardware.testing import FAKE_FAMILIES, start_fake
from crystalloop.hardware.trace import TraceWriter
from crystalloop.hardware.transport import Transport


class _Responder:
    """Answer every line ending in ``term`` with ``reply(line)`` on a pty master."""

    def __init__(self, term: bytes, reply) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.term, self.reply = term, reply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            buf += os.read(self.master, 1024)
            while self.term in buf:
                line, buf = buf.split(self.term, 1)
                os.write(self.master, self.reply(line.strip()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


def _time(fn, n: int) -> list[float]:
    for _ in range(10):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(n: int) -> None:
    cases = [
        ("JULABO", b"\r", lambda line: b"25.34\r\n", JULABO_SETTINGS, JulaboThermostat, b"in_pv_00"),
        ("Huber", b"\n", lambda line: b"{S0104DA\r\n", HUBER_SETTINGS, HuberThermostat, b"{M01****"),
        ("LAUDA", b"\r", lambda line: b"025.34\r\n", LAUDA_SETTINGS, LaudaThermostat, b"IN_PV_00"),
    ]
    rows = []
    for vendor, term, reply, settings, cls, command in cases:
        resp = _Responder(term, reply)
        try:
            wire = command + settings.write_terminator
            port = serial.Serial(resp.path, timeout=1.0)

            def raw(port=port, wire=wire, t=settings.read_terminator):
                port.write(wire)
                port.read_until(t)

            base = _time(raw, n)
            port.close()
            fast = settings.with_options({"min_interval_s": 0})  # measure the host, not the 250 ms rule
            transport = Transport.open(resp.path, settings=fast, device=vendor, clock=VirtualClock())
            q = _time(lambda t=transport, c=command: t.query(c), n)
            dev = cls(transport)
            d = _time(dev.read_bath, n)
            with tempfile.TemporaryDirectory() as tmp:
                transport.trace = TraceWriter(os.path.join(tmp, "t.trace"), url="bench://", clock=transport.clock)
                traced = _time(dev.read_bath, n)
                transport.trace.close()
                transport.trace = None
            transport.close()
        finally:
            resp.close()
        b = statistics.median(base)
        for label, xs in (("raw pyserial (baseline)", base), ("Transport.query", q), ("driver read_bath()", d),
                          ("read_bath() with --trace", traced)):
            m = statistics.median(xs)
            rows.append((vendor, label, m * 1e6, sorted(xs)[int(0.95 * len(xs))] * 1e6, 1.0 / m, m / b))
    print(f"{'device':<7} {'path':<25} {'median µs':>10} {'p95 µs':>9} {'exch/s':>8} {'× baseline':>11}")
    for vendor, label, med, p95, rate, ratio in rows:
        print(f"{vendor:<7} {label:<25} {med:>10.0f} {p95:>9.0f} {rate:>8.0f} {ratio:>11.2f}")
    connect_cost()


def connect_cost() -> None:
    """Exchanges and time of one connect per model family (capability probe included)."""
    print()
    print(f"{'family':<22} {'exchanges':>9} {'× baseline':>11} {'clock s':>8} {'wire s @9600':>13} {'warnings':>9}")
    for family in sorted(FAKE_FAMILIES):
        clock = VirtualClock()
        unit, url = start_fake(family, clock=clock)
        with unit, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            t0 = clock.now()
            with connect(url + "?timeout_s=0.5", clock=clock):
                elapsed = clock.now() - t0
            n_bytes = sum(len(c) + 2 + len(r or "") + 2 for _, c, r in unit.exchanges)
        wire = n_bytes * 10 / 9600  # 10 bits per byte on an 8N1 line
        n = len(unit.exchanges)
        print(f"{family:<22} {n:>9} {n / 3:>11.1f} {elapsed:>8.2f} {wire + elapsed:>13.2f} {len(warned):>9}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="exchanges per measurement")
    main(ap.parse_args().n)
