"""Integration: the real drivers open a pseudo-terminal with pyserial; fake devices answer with dynamics.

Every fault the fakes inject has a defined outcome: no reply → DeviceTimeout, garbled
bytes or a reply to another command → ProtocolError, device error codes → DeviceAlarm
(or decoded alarms in status()), device gone → DeviceDisconnected; after a timeout or
garbage the next exchange works again (stale bytes are flushed before each command).
"""

import pytest
from thermostat_fakes import FakeHuber, FakeJulabo, FakeLauda

from crystalloop.errors import (
    BackendError,
    ConfigError,
    DeviceAlarm,
    DeviceDisconnected,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import Thermostat, ThermostatLimits, VirtualClock, connect
from crystalloop.hardware.sim.thermal import advance_thermal

FAKES = {"julabo": FakeJulabo, "huber": FakeHuber, "lauda": FakeLauda}
FAST = "timeout_s=0.2"


@pytest.fixture
def clock():
    return VirtualClock()


def _open(scheme, clock, query=FAST, **fake_kw):
    fake = FAKES[scheme](clock=clock, **fake_kw)
    try:
        cryst = connect(f"{scheme}://{fake.url}?{query}", clock=clock)
    except BaseException:
        fake.close()
        raise
    return fake, cryst


@pytest.fixture(params=sorted(FAKES))
def device(request, clock):
    fake, cryst = _open(request.param, clock)
    yield request.param, fake, cryst.thermostat
    cryst.close()
    fake.close()


def test_connect_identifies_and_reads_device_limits(device):
    scheme, fake, dev = device
    assert isinstance(dev, Thermostat)
    expected = {"julabo": ("FP50-HE", -20.0, 80.0), "huber": ("PB protocol", -40.0, 200.0),
                "lauda": ("RP 845", -45.0, 150.0)}[scheme]
    assert (dev.info.model, dev.limits.min_c, dev.limits.max_c) == expected
    assert dev.transport.url == fake.url


def test_setpoint_round_trip_and_bath_follows_thermal_model(device, clock):
    scheme, fake, dev = device
    x0 = (fake.model.bath_c, fake.model.jacket_c, fake.model.reactor_c)
    t0 = clock.now()
    dev.set_setpoint(40.0)
    assert dev.get_setpoint() == pytest.approx(40.0)
    # JULABO: out_sp_00, in_sp_00 (read-back), in_sp_00; Huber/LAUDA: write (answered), read
    t_set = fake.command_times[-3] if scheme == "julabo" else fake.command_times[-2]
    clock.sleep(600.0)
    bath = dev.read_bath()
    proc = dev.read_process()
    # the same equations, integrated independently from the moment the setpoint was written
    x = advance_thermal(x0, 20.0, t0, t_set, fake.model.params)
    x = advance_thermal(x, 40.0, t_set, bath.time_s, fake.model.params)
    assert bath.value == pytest.approx(x[0], abs=0.011)
    assert bath.value > 39.5 and 20.0 < proc.value < bath.value
    assert (bath.channel, proc.channel) == ("T_jacket_c", "T_reactor_c")
    assert proc.time_s >= bath.time_s >= 600.0


def test_start_stop_and_status(device):
    scheme, fake, dev = device
    dev.stop()
    assert not fake.model.running and not dev.status().running
    dev.start()
    st = dev.status()
    assert fake.model.running and st.running and st.ok


def test_julabo_respects_250_ms_between_commands(clock):
    fake, cryst = _open("julabo", clock, enforce_interval=True)
    with cryst, fake:
        for _ in range(3):
            cryst.thermostat.read_bath()
        assert fake.too_fast == 0
        gaps = [b - a for a, b in zip(fake.command_times, fake.command_times[1:], strict=False)]
        assert min(gaps) >= 0.25 - 1e-9


def test_julabo_write_and_read_back_in_real_time():
    """On a real clock the fake drops commands < 250 ms apart; the driver's writes still verify."""
    from crystalloop.hardware.base import RealClock

    clock = RealClock()
    fake = FakeJulabo(clock=clock, enforce_interval=True, jitter_s=0.1)
    with fake, connect(f"julabo://{fake.url}?{FAST}", clock=clock) as cryst:
        cryst.thermostat.set_setpoint(25.0)
        assert fake.model.setpoint_c == 25.0 and fake.too_fast == 0
    fake = FakeJulabo(clock=clock, enforce_interval=True, jitter_s=0.1)
    with fake:
        with pytest.raises(DeviceTimeout, match="no reply to b'in_sp_00"):  # dropped: came too fast
            connect(f"julabo://{fake.url}?{FAST}&min_interval_s=0", clock=clock)
        assert fake.too_fast >= 1


@pytest.mark.parametrize("fault, error, match", [
    ("silent", DeviceTimeout, "no reply to"),
    ("garble", ProtocolError, "non-printable"),
    ("partial", DeviceTimeout, "a partial reply"),
    ("wrong", ProtocolError, "expected|reply to"),
])
def test_transient_faults_raise_and_the_next_exchange_recovers(device, fault, error, match):
    scheme, fake, dev = device
    fake.inject(fault)
    with pytest.raises(error, match=match):
        dev.read_bath()
    assert dev.read_bath().value == pytest.approx(fake.model.bath_c, abs=0.011)


def test_xonxoff_bytes_in_replies_are_stripped(device):
    scheme, fake, dev = device
    fake.inject("xonxoff")
    assert dev.read_bath().value == pytest.approx(fake.model.bath_c, abs=0.011)


def test_device_disappearing_mid_run(device, clock):
    scheme, fake, dev = device
    dev.read_bath()
    fake.inject("disconnect")
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
    fake, cryst = _open("julabo", clock)
    with cryst, fake:
        fake.alarm = -1
        st = cryst.thermostat.status()
        assert st.alarms == ("-01 LOW LEVEL ALARM",)
        with pytest.raises(DeviceAlarm, match="LOW LEVEL ALARM"):
            cryst.thermostat.check()
        fake.alarm, fake.remote = None, False
        with pytest.raises(DeviceAlarm, match="-09 COMMAND NOT ALLOWED IN CURRENT OPERATING MODE"):
            cryst.thermostat.set_setpoint(30.0)
        fake.external_sensor = False
        with pytest.raises(DeviceAlarm, match="no sensor"):
            cryst.thermostat.read_process()
    fake, cryst = _open("huber", clock)
    with cryst, fake:
        fake.error, fake.process_sensor = -1234, False
        assert cryst.thermostat.status().alarms == ("error -1234 (register 05)",)
        with pytest.raises(DeviceAlarm, match="no sensor connected"):
            cryst.thermostat.read_process()
        fake.max_c = 30.0  # device range changed behind the driver's back: the echo tells
        with pytest.raises(DeviceAlarm, match="refused setpoint 50.00 °C: error code -1234"):
            cryst.thermostat.set_setpoint(50.0)
    fake, cryst = _open("lauda", clock)
    with cryst, fake:
        fake.stat = "0001100"
        assert cryst.thermostat.status().alarms == ("overtemperature", "low level")
        fake.tih_c = 30.0
        with pytest.raises(DeviceAlarm, match="ERR_6: illegal value"):
            cryst.thermostat.set_setpoint(50.0)
        fake.external_sensor = False
        with pytest.raises(DeviceAlarm, match="ERR_8"):
            cryst.thermostat.read_process()


def test_huber_over_tcp_and_device_ramp(clock):
    fake = FakeHuber(clock=clock, link="tcp")
    with fake, connect(f"huber://{fake.url}?{FAST}", clock=clock) as cryst:
        assert cryst.meta["port"] == f"socket://{fake.url}"
        dev = cryst.thermostat
        dev.set_setpoint(20.0)
        dev.start_ramp(40.0, 600)
        clock.sleep(300.0)
        assert dev.get_setpoint() == pytest.approx(30.0, abs=0.05)
        clock.sleep(400.0)
        assert dev.get_setpoint() == pytest.approx(40.0)
        fake.inject("disconnect")  # network drop: the unit keeps listening on its port
        with pytest.raises(DeviceDisconnected, match="disconnected while waiting for the reply"):
            dev.read_bath()
        # the next exchange reopens the connection by itself
        assert dev.read_bath().value == pytest.approx(fake.model.bath_c, abs=0.011)
        fake.inject("disconnect")
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
    fake = FAKES[scheme](clock=clock, baudrate=4800)
    with fake:
        with pytest.raises((ProtocolError, DeviceTimeout), match=rf"No valid reply from {scheme.upper() if scheme != 'huber' else 'Huber'} on .* at 9600 baud 8N1; check baud rate/line settings: {hint}"):
            connect(f"{scheme}://{fake.url}?{FAST}", clock=clock)
        with connect(f"{scheme}://{fake.url}?{FAST}&{good}", clock=clock) as cryst:
            assert cryst.meta["line_settings"].startswith("4800 baud")
            cryst.thermostat.read_bath()


def test_bad_urls_and_options(clock):
    with pytest.raises(BackendError, match=r"Port '/dev/ttyNOPE0' for JULABO does not exist"):
        connect("julabo:///dev/ttyNOPE0", clock=clock)
    with pytest.raises(BackendError, match="Unknown backend URL scheme 'thermo'"):
        connect("thermo:///dev/ttyUSB0")
    fake = FakeJulabo(clock=clock)
    with fake:
        with pytest.raises(ConfigError, match=r"Unknown option\(s\) 'baud' for JULABO backend"):
            connect(f"julabo://{fake.url}?baud=4800", clock=clock)
        with pytest.raises(LimitError, match="min_c=-50.00 °C .* below the device's lower limit -20.00 °C"):
            connect(f"julabo://{fake.url}?{FAST}&min_c=-50", clock=clock)
        with pytest.raises(LimitError, match="max_c=90.00 °C .* exceeds the device's upper limit 80.00 °C"):
            connect(f"julabo://{fake.url}?{FAST}", clock=clock, limits=ThermostatLimits(0, 90))
        with connect(f"julabo://{fake.url}?{FAST}&min_c=5&max_c=60&name=jacket", clock=clock) as cryst:
            dev = cryst.thermostat
            assert (dev.name, dev.limits.min_c, dev.limits.max_c) == ("jacket", 5.0, 60.0)
            with pytest.raises(LimitError, match=r"Setpoint 70.00 °C exceeds the upper limit 60.00 °C \(device\+url limits\) of thermostat 'jacket'"):
                dev.set_setpoint(70)


def test_short_cooling_run_on_virtual_clock(clock):
    """Linear cooling 40 → 20 °C in 30 min (setpoint updated every minute), then a 10 min hold."""
    fake, cryst = _open("lauda", clock)
    with cryst, fake:
        dev = cryst.thermostat
        fake.model.set_setpoint(40.0)
        fake.model.bath_c = fake.model.jacket_c = fake.model.reactor_c = 40.0
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


def test_software_handshake_over_pty(clock):
    """With xonxoff=1 the tty consumes XON/XOFF itself; replies carrying them still parse."""
    fake = FakeJulabo(clock=clock)
    with fake, connect(f"julabo://{fake.url}?{FAST}&xonxoff=1", clock=clock) as cryst:
        assert cryst.meta["line_settings"] == "9600 baud 8N1, XON/XOFF"
        fake.inject("xonxoff", times=2)
        assert cryst.thermostat.read_bath().value == pytest.approx(fake.model.bath_c, abs=0.011)
        assert cryst.thermostat.get_setpoint() == pytest.approx(fake.model.setpoint_c)


def test_lauda_on_a_julabo_url_is_named(clock):
    with FakeLauda(clock=clock) as fake:
        with pytest.raises(ProtocolError, match=r"version answered 'ERR_3'.*is this a LAUDA thermostat \(use lauda://\)"):
            connect(f"julabo://{fake.url}?{FAST}", clock=clock)
