"""Integration: the real drivers open a pseudo-terminal with pyserial; fake units answer with dynamics.

The fakes are the full-featured family of each brand from :mod:`crystalloop.hardware.testing`
(JULABO MAGIO, Huber Pilot ONE, LAUDA Integral). Every fault they inject has a defined
outcome: no reply → DeviceTimeout, garbled bytes or a reply to another command →
ProtocolError, device error codes → DeviceAlarm (or decoded alarms in status()), device gone
→ DeviceDisconnected; after a timeout or garbage the next exchange works again (stale bytes
are flushed before each command).
"""

import math

import pytest

from crystalloop.errors import (
    BackendError,
    ConfigError,
    DeviceAlarm,
    DeviceDisconnected,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import RealClock, Thermostat, ThermostatLimits, VirtualClock, connect
from crystalloop.hardware.testing import start_fake

#: the family of each brand that has every function the driver knows (the old test fakes' set)
FAMILY = {"julabo": "julabo/magio", "huber": "huber/pilot_one", "lauda": "lauda/integral"}
FAST = "timeout_s=0.2"
#: bath and reactor lags of the fakes here, s (the bath's as in the virtual crystallizer's thermal model)
TAU_S, TAU_REACTOR_S = 60.0, 300.0
#: what the driver writes to change the setpoint, per brand
SETPOINT_WRITE = {"julabo": "out_sp_00 ", "huber": "{M00", "lauda": "OUT_SP_00_"}


@pytest.fixture
def clock():
    return VirtualClock()


def _open(scheme, clock, query=FAST, **unit_kw):
    unit, url = start_fake(FAMILY[scheme], clock=clock, **unit_kw)
    try:
        cryst = connect(f"{url}?{query}", clock=clock)
    except BaseException:
        unit.close()
        raise
    return unit, cryst


@pytest.fixture(params=sorted(FAMILY))
def device(request, clock):
    # the Integral's safety mode would take the unit to its safe setpoint while a test sleeps
    # without talking to it (test_safe_state.py checks that); not armed here
    query = FAST + ("&comm_timeout_s=0" if request.param == "lauda" else "")
    unit, cryst = _open(request.param, clock, query, tau_s=TAU_S, tau_reactor_s=TAU_REACTOR_S)
    yield request.param, unit, cryst.thermostat
    cryst.close()
    unit.close()


def test_connect_identifies_and_reads_device_limits(device):
    scheme, unit, dev = device
    assert isinstance(dev, Thermostat)
    expected = {"julabo": ("MAGIO MS-1000F", -50.0, 200.0), "huber": ("PB protocol", -45.0, 250.0),
                "lauda": ("INT XT 150", -45.0, 220.0)}[scheme]
    assert (dev.info.model, dev.limits.min_c, dev.limits.max_c) == expected
    assert dev.transport.url == unit.url


def _lagged(x0, target, t):
    """First-order lag from ``x0`` towards ``target`` after ``t`` seconds (bath)."""
    return target + (x0 - target) * math.exp(-t / TAU_S)


def _reactor(r0, target, t):
    """Reactor following a bath that starts at ``r0`` and lags towards ``target`` (two lags in series)."""
    a, b = math.exp(-t / TAU_S), math.exp(-t / TAU_REACTOR_S)
    return target + (r0 - target) * (TAU_REACTOR_S * b - TAU_S * a) / (TAU_REACTOR_S - TAU_S)


def test_setpoint_round_trip_and_bath_follows_the_units_lag(device, clock):
    scheme, unit, dev = device
    assert (unit.bath.bath_c, unit.bath.reactor_c) == (20.0, 20.0)
    dev.set_setpoint(40.0)
    assert dev.get_setpoint() == pytest.approx(40.0)
    t_set = [t for t, c in unit.log if c.startswith(SETPOINT_WRITE[scheme])][-1]
    for wait_s in (120.0, 480.0):  # half-way up (the bath 2.7 °C short), then settled
        clock.sleep(wait_s)
        bath = dev.read_bath()
        proc = dev.read_process()
        # the same lags, solved independently from the moment the unit took the setpoint
        assert bath.value == pytest.approx(_lagged(20.0, 40.0, bath.time_s - t_set), abs=0.011)
        assert proc.value == pytest.approx(_reactor(20.0, 40.0, proc.time_s - t_set), abs=0.02)
    assert bath.value > 39.5 and 20.0 < proc.value < bath.value - 1.0
    assert (bath.channel, proc.channel) == ("T_jacket_c", "T_reactor_c")
    assert proc.time_s >= bath.time_s >= 600.0


def test_start_stop_and_status(device):
    scheme, unit, dev = device
    dev.stop()
    assert not unit.bath.running and not dev.status().running
    dev.start()
    st = dev.status()
    assert unit.bath.running and st.running and st.ok


def test_julabo_respects_250_ms_between_commands(clock):
    unit, cryst = _open("julabo", clock, enforce_interval=True)
    with cryst, unit:
        for _ in range(3):
            cryst.thermostat.read_bath()
        assert unit.too_fast == 0 and unit.events == []
        times = [t for t, _ in unit.log]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.25 - 1e-9


def test_julabo_write_and_read_back_in_real_time():
    """On a real clock the unit drops commands < 250 ms apart; the driver's writes still verify."""
    clock = RealClock()
    unit, url = start_fake(FAMILY["julabo"], clock=clock, enforce_interval=True, jitter_s=0.1)
    with unit, connect(f"{url}?{FAST}", clock=clock) as cryst:
        cryst.thermostat.set_setpoint(25.0)
        assert unit.bath.setpoint_c == 25.0 and unit.too_fast == 0
    unit, url = start_fake(FAMILY["julabo"], clock=clock, enforce_interval=True, jitter_s=0.1)
    with unit:
        with pytest.raises(DeviceTimeout, match="no reply to b'in_sp_00"):  # dropped: came too fast
            connect(f"{url}?{FAST}&min_interval_s=0", clock=clock)
        assert unit.too_fast >= 1 and "dropped 'in_sp_00'" in unit.events[0][1]


@pytest.mark.parametrize("fault, error, match", [
    ("silent", DeviceTimeout, "no reply to"),
    ("garble", ProtocolError, "non-printable"),
    ("partial", DeviceTimeout, "a partial reply"),
    ("wrong", ProtocolError, "expected|reply to"),
])
def test_transient_faults_raise_and_the_next_exchange_recovers(device, fault, error, match):
    scheme, unit, dev = device
    unit.inject(fault)
    with pytest.raises(error, match=match):
        dev.read_bath()
    assert dev.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)


def test_xonxoff_bytes_in_replies_are_stripped(device):
    scheme, unit, dev = device
    unit.inject("xonxoff")
    assert dev.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)
    assert unit.exchanges[-1][2].startswith("\x13")  # the unit did send them


def test_device_disappearing_mid_run(device, clock):
    scheme, unit, dev = device
    dev.read_bath()
    unit.inject("disconnect")
    with pytest.raises(DeviceDisconnected, match="disconnected while"):
        dev.read_bath()
    # every later exchange tries to reopen the port once (a watchdog retries through this)
    with pytest.raises(DeviceDisconnected, match="connection lost and reopening failed .*No such file"):
        dev.get_setpoint()
    with pytest.raises(DeviceDisconnected, match="Cannot reopen .*No such file"):
        dev.reconnect()
    dev.close()
    with pytest.raises(DeviceDisconnected, match="the port is closed"):
        dev.get_setpoint()


def test_device_error_codes(clock):
    unit, cryst = _open("julabo", clock)
    with cryst, unit:
        unit.alarm = -1
        st = cryst.thermostat.status()
        assert st.alarms == ("-01 LOW LEVEL ALARM",)
        with pytest.raises(DeviceAlarm, match="LOW LEVEL ALARM"):
            cryst.thermostat.check()
        unit.alarm, unit.remote = None, False
        with pytest.raises(DeviceAlarm, match="-09 COMMAND NOT ALLOWED IN CURRENT OPERATING MODE"):
            cryst.thermostat.set_setpoint(30.0)
        unit.external_sensor_plugged = False
        with pytest.raises(DeviceAlarm, match="no sensor"):
            cryst.thermostat.read_process()
    unit, cryst = _open("huber", clock)
    with cryst, unit:
        unit.error, unit.process_sensor = -1234, False
        assert cryst.thermostat.status().alarms == ("error -1234 (register 05)",)
        with pytest.raises(DeviceAlarm, match="no sensor connected"):
            cryst.thermostat.read_process()
        unit.max_c = 30.0  # device range changed behind the driver's back: the echo tells
        with pytest.raises(DeviceAlarm, match="refused setpoint 50.00 °C: error code -1234"):
            cryst.thermostat.set_setpoint(50.0)
    unit, cryst = _open("lauda", clock)
    with cryst, unit:
        unit.stat = "0001100"
        assert cryst.thermostat.status().alarms == ("overtemperature", "low level")
        unit.tih_c = 30.0
        with pytest.raises(DeviceAlarm, match="ERR_6: illegal value"):
            cryst.thermostat.set_setpoint(50.0)
        unit.external_module = False
        with pytest.raises(DeviceAlarm, match="ERR_8"):
            cryst.thermostat.read_process()


def test_huber_over_tcp_and_device_ramp(clock):
    unit, url = start_fake(FAMILY["huber"], clock=clock, link="socket")
    with unit, connect(f"{url}?{FAST}", clock=clock) as cryst:
        assert cryst.meta["port"] == f"socket://{unit.url}"
        dev = cryst.thermostat
        dev.set_setpoint(20.0)
        dev.start_ramp(40.0, 600)
        clock.sleep(300.0)
        assert dev.get_setpoint() == pytest.approx(30.0, abs=0.05)
        clock.sleep(400.0)
        assert dev.get_setpoint() == pytest.approx(40.0)
        unit.inject("disconnect")  # network drop: the unit keeps listening on its port
        with pytest.raises(DeviceDisconnected, match="disconnected while waiting for the reply"):
            dev.read_bath()
        # the next exchange reopens the connection by itself
        assert dev.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)
        unit.inject("disconnect")
        with pytest.raises(DeviceDisconnected):
            dev.read_bath()
        dev.reconnect()  # explicit: reopen and identify again
        assert dev.info.model == "PB protocol" and dev.read_bath().channel == "T_jacket_c"


@pytest.mark.parametrize("scheme, good, hint", [
    ("julabo", "baudrate=4800&parity=E&bytesize=7", "JULABO models use 4800 or 9600, 7E1 or 8N1"),
    ("huber", "baudrate=4800", "Huber PB uses 9600 baud 8N1"),
    ("lauda", "baudrate=4800", "LAUDA interfaces use 8N1 at 9600 baud"),
])
def test_wrong_baud_rate_is_diagnosed(clock, scheme, good, hint):
    unit, url = start_fake(FAMILY[scheme], clock=clock, baudrate=4800)
    brand = {"julabo": "JULABO", "huber": "Huber", "lauda": "LAUDA"}[scheme]
    with unit:
        with pytest.raises((ProtocolError, DeviceTimeout), match=rf"No valid reply from {brand} on .* at 9600 baud "
                                                                rf"8N1; check baud rate/line settings: {hint}"):
            connect(f"{url}?{FAST}", clock=clock)
        with connect(f"{url}?{FAST}&{good}", clock=clock) as cryst:
            assert cryst.meta["line_settings"].startswith("4800 baud")
            cryst.thermostat.read_bath()


def test_bad_urls_and_options(clock):
    with pytest.raises(BackendError, match=r"Port '/dev/ttyNOPE0' for JULABO does not exist"):
        connect("julabo:///dev/ttyNOPE0", clock=clock)
    with pytest.raises(BackendError, match="Unknown backend URL scheme 'thermo'"):
        connect("thermo:///dev/ttyUSB0")
    unit, url = start_fake(FAMILY["julabo"], clock=clock)  # MAGIO: limits -50 .. 200 °C
    with unit:
        with pytest.raises(ConfigError, match=r"Unknown option\(s\) 'baud' for JULABO backend"):
            connect(f"{url}?baud=4800", clock=clock)
        with pytest.raises(LimitError, match="min_c=-60.00 °C .* below the device's lower limit -50.00 °C"):
            connect(f"{url}?{FAST}&min_c=-60", clock=clock)
        with pytest.raises(LimitError, match="max_c=210.00 °C .* exceeds the device's upper limit 200.00 °C"):
            connect(f"{url}?{FAST}", clock=clock, limits=ThermostatLimits(0, 210))
        with connect(f"{url}?{FAST}&min_c=5&max_c=60&name=jacket", clock=clock) as cryst:
            dev = cryst.thermostat
            assert (dev.name, dev.limits.min_c, dev.limits.max_c) == ("jacket", 5.0, 60.0)
            with pytest.raises(LimitError, match=r"Setpoint 70.00 °C exceeds the upper limit 60.00 °C \(device\+url "
                                                 r"limits\) of thermostat 'jacket'"):
                dev.set_setpoint(70)


def test_short_cooling_run_on_virtual_clock(clock):
    """Linear cooling 40 → 20 °C in 30 min (setpoint updated every minute), then a 10 min hold."""
    unit, cryst = _open("lauda", clock, setpoint_c=40.0, tau_s=TAU_S)
    with cryst, unit:
        dev = cryst.thermostat
        samples = []
        for k in range(81):
            setpoint = 40.0 - 20.0 * min(k * 30.0, 1800.0) / 1800.0
            if k % 2 == 0:
                dev.set_setpoint(setpoint)
            samples.append((setpoint, dev.read_bath(), dev.read_process()))
            clock.sleep(30.0)
        times = [b.time_s for _, b, _ in samples]
        assert all(t1 > t0 for t0, t1 in zip(times, times[1:], strict=False))
        # while ramping at 0.67 °C/min the bath lags by about rate * tau_bath = 0.67 °C
        lags = [b.value - sp for sp, b, _ in samples[10:60]]
        assert 0.3 < min(lags) and max(lags) < 1.5
        # the reactor lags behind the bath all the way down, and everything settles at 20 °C
        assert all(p.value >= b.value - 0.02 for _, b, p in samples[5:])
        assert samples[-1][1].value == pytest.approx(20.0, abs=0.05)
        assert samples[-1][2].value == pytest.approx(20.0, abs=0.3)
        assert not unit.watchdog_tripped  # the driver talked often enough for the armed safety mode


def test_software_handshake_over_pty(clock):
    """With xonxoff=1 the tty consumes XON/XOFF itself; replies carrying them still parse."""
    unit, url = start_fake(FAMILY["julabo"], clock=clock)
    with unit, connect(f"{url}?{FAST}&xonxoff=1", clock=clock) as cryst:
        assert cryst.meta["line_settings"] == "9600 baud 8N1, XON/XOFF"
        unit.inject("xonxoff", times=2)
        assert cryst.thermostat.read_bath().value == pytest.approx(unit.bath.bath_c, abs=0.011)
        assert cryst.thermostat.get_setpoint() == pytest.approx(unit.bath.setpoint_c)


def test_lauda_on_a_julabo_url_is_named(clock):
    unit, _ = start_fake(FAMILY["lauda"], clock=clock)
    with unit:
        with pytest.raises(ProtocolError, match=r"version answered 'ERR_3'.*is this a LAUDA thermostat \(use lauda://\)"):
            connect(f"julabo://{unit.url}?{FAST}", clock=clock)
