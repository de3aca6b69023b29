"""In-test fake devices implementing the hardware.base protocols, with fault injection.

The fake thermostat integrates the virtual crystallizer's thermal model
(:func:`crystalloop.hardware.sim.thermal.advance_thermal`) on a VirtualClock, so control
tests see realistic jacket/reactor lags without the population balance.
"""

from __future__ import annotations

import numpy as np
import pytest

from crystalloop.errors import DeviceTimeout
from crystalloop.hardware.base import (
    Crystallizer,
    Frame,
    Reading,
    ThermostatLimits,
    ThermostatStatus,
    VirtualClock,
)
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal
from crystalloop.profiles import Segment, ThermocycleProfile


class FakeThermostat:
    """A thermostat on a virtual clock with the sim's thermal dynamics.

    Fault injection: ``gone_at_s`` (every exchange times out from then on),
    ``reads_fail_at_s`` (reads time out, writes still work), ``process_fails_at_s`` (only
    the process temperature read times out), ``transient`` (the next n
    exchanges time out, then it recovers).
    """

    def __init__(self, clock, *, t0_c=60.0, limits=None, params=None, name="fake"):
        self.name = name
        self.clock = clock
        self.limits = limits or ThermostatLimits(-20.0, 80.0)
        self.params = params or ThermalParams()
        self.x = (t0_c, t0_c, t0_c)
        self.sp = t0_c
        self._t = clock.now()
        self.writes: list[tuple[float, float]] = []
        self.running = True
        self.gone_at_s = None
        self.reads_fail_at_s = None
        self.process_fails_at_s = None
        self.transient = 0
        self.exchanges = 0

    def _advance(self):
        now = self.clock.now()
        if now > self._t:
            self.x = advance_thermal(self.x, self.sp if self.running else self.x[0], self._t, now, self.params)
            self._t = now

    def _exchange(self, read=True):
        self.exchanges += 1
        self._advance()
        now = self.clock.now()
        if self.gone_at_s is not None and now >= self.gone_at_s:
            raise DeviceTimeout(f"thermostat '{self.name}' did not answer within 1.0 s")
        if read and self.reads_fail_at_s is not None and now >= self.reads_fail_at_s:
            raise DeviceTimeout(f"thermostat '{self.name}' did not answer a read within 1.0 s")
        if self.transient > 0:
            self.transient -= 1
            raise DeviceTimeout(f"thermostat '{self.name}' did not answer within 1.0 s (transient)")

    def get_setpoint(self):
        self._exchange()
        return self.sp

    def set_setpoint(self, value_c):
        self._exchange(read=False)
        v = self.limits.check_setpoint(value_c, self.name)
        self.sp = v
        self.writes.append((self.clock.now(), v))

    def read_bath(self):
        self._exchange()
        return Reading(self.x[0], self.clock.now(), "T_jacket_c", "°C")

    def read_process(self):
        self._exchange()
        if self.process_fails_at_s is not None and self.clock.now() >= self.process_fails_at_s:
            raise DeviceTimeout(f"thermostat '{self.name}' did not answer 'in_pv_02' within 1.0 s")
        return Reading(self.x[2], self.clock.now(), "T_reactor_c", "°C")

    def start(self):
        self._exchange(read=False)
        self.running = True

    def stop(self):
        self._exchange(read=False)
        self._advance()
        self.running = False

    def status(self):
        self._exchange()
        return ThermostatStatus(self.running)

    def close(self):
        pass


class FakeCounter:
    """Counts that rise when the reactor is below ``t_nuc_c`` and fall above ``t_dis_c``."""

    def __init__(self, thermostat, *, t_nuc_c=30.0, t_dis_c=40.0, n0=100.0, name="counter"):
        self.name = name
        self.th = thermostat
        self.t_nuc_c, self.t_dis_c = t_nuc_c, t_dis_c
        self.n = n0
        self._t = thermostat.clock.now()

    def read(self):
        now = self.th.clock.now()
        dt_min = (now - self._t) / 60.0
        self._t = now
        tr = self.th.x[2]
        if tr < self.t_nuc_c:
            self.n += 5.0 * (self.t_nuc_c - tr) * dt_min
        elif tr > self.t_dis_c:
            self.n = max(self.n - 3.0 * (tr - self.t_dis_c) * dt_min, 0.0)
        return Reading(self.n, now, "counts", "#/frame")

    def close(self):
        pass


class FakeCamera:
    name = "fakecam"
    pixel_size_um = 2.0

    def __init__(self, clock):
        self.clock = clock
        self.grabs = 0

    def grab(self):
        self.grabs += 1
        img = np.full((24, 32), 40 + self.grabs, dtype=np.uint8)
        return Frame(img, self.clock.now(), self.pixel_size_um)

    def close(self):
        pass


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def thermostat(clock):
    return FakeThermostat(clock)


@pytest.fixture
def crystallizer(clock, thermostat):
    return Crystallizer(url="fake://", clock=clock, thermostat=thermostat,
                        counter=FakeCounter(thermostat), camera=FakeCamera(clock))


@pytest.fixture
def short_recipe():
    """One cycle, about 3.3 h: 60 → 40 @0.3, hold 10 → 55 @0.8 → 30 @0.3 (+10)."""
    return ThermocycleProfile(40.0, 0.1, 60.0, [Segment(40.0, 0.3, 10.0), Segment(55.0, 0.8), Segment(30.0, 0.3, 10.0)],
                              name="short")


@pytest.fixture
def four_cycles():
    return ThermocycleProfile(40.0, 0.1, 60.0, [
        Segment(30.0, 0.3), Segment(50.0, 0.8, 10), Segment(25.0, 0.2, 10), Segment(45.0, 0.8, 10),
        Segment(20.0, 0.2, 10), Segment(40.0, 0.8, 10), Segment(15.0, 0.2, 10), Segment(35.0, 0.8),
        Segment(10.0, 0.2, 20)], name="four-cycles")


@pytest.fixture(scope="session")
def make_thermostat():
    """The FakeThermostat class (tests build their own with other limits)."""
    return FakeThermostat
