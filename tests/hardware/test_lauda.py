"""LAUDA driver: exact byte exchanges (DOMAIN.md §5), OK/ERR replies, STAT flags."""

import pytest

from crystalloop.errors import CapabilityWarning, DeviceAlarm, LimitError, ProtocolError
from crystalloop.hardware.base import Thermostat
from crystalloop.hardware.lauda import (
    LAUDA_SETTINGS,
    LaudaThermostat,
    parse_ok,
    parse_stat,
    parse_value,
)
from crystalloop.hardware.testing import expected_protocol

# connect: identify, probe each function once (capabilities), limits, then arm the safety mode
IDENT = [
    (b"TYPE\r\n", b"RP 845\r\n"),
    (b"VERSION_R\r\n", b"1.36\r\n"),
    (b"IN_SP_00\r\n", b"020.00\r\n"),
    (b"IN_PV_00\r\n", b"020.41\r\n"),
    (b"IN_PV_03\r\n", b"020.20\r\n"),
    (b"STATUS\r\n", b"0\r\n"),
    (b"STAT\r\n", b"0000000\r\n"),
    (b"IN_MODE_02\r\n", b"0\r\n"),
    (b"IN_MODE_01\r\n", b"0\r\n"),
    (b"IN_SP_07\r\n", b"ERR_3\r\n"),
    (b"IN_SP_04\r\n", b"150.0\r\n"),
    (b"IN_SP_05\r\n", b"-45.0\r\n"),
]


class lauda:
    def __init__(self, exchanges, initialize=False, **kw):
        self.exchanges = (IDENT if initialize else []) + exchanges
        self.initialize, self.kw = initialize, kw

    def __enter__(self):
        self.cm = expected_protocol(self.exchanges, settings=LAUDA_SETTINGS, device="LAUDA")
        dev = LaudaThermostat(self.cm.__enter__(), **self.kw)
        return dev.initialize() if self.initialize else dev

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_initialize_type_version_limits():
    with lauda([], initialize=True) as dev:
        assert isinstance(dev, Thermostat)
        assert (dev.info.model, dev.info.version) == ("RP 845", "1.36")
        assert (dev.limits.min_c, dev.limits.max_c) == (-45.0, 150.0)


def test_initialize_on_model_without_version_or_limit_queries():
    exchanges = [(b"TYPE\r\n", b"ECO\r\n"), (b"VERSION_R\r\n", b"ERR_3\r\n")] + IDENT[2:-2] + [
        (b"IN_SP_04\r\n", b"ERR_3\r\n")]
    with lauda(exchanges) as dev, pytest.warns(CapabilityWarning) as record:
        dev.initialize()
        assert dev.info.version == "" and dev.device_limits is None
    messages = [str(w.message) for w in record]
    # one line per missing function that changes the run (limits); version and watchdog only in the table
    assert len(messages) == 1 and "outflow limits TiH/TiL (IN_SP_04, IN_SP_05) not available" in messages[0]
    caps = {c.name: c for c in dev.capabilities()}
    assert caps["version"].present is False and "VERSION_R answered ERR_3" in caps["version"].detail
    assert caps["comm_watchdog"].present is False and caps["limits"].present is False


def test_setpoint_domain_example_and_read_back():
    with lauda([(b"OUT_SP_00_30.5\r\n", b"OK\r\n"), (b"IN_SP_00\r\n", b"030.50\r\n")]) as dev:
        dev.set_setpoint(30.5)
        assert dev.get_setpoint() == 30.5


def test_setpoint_refused_with_err_6_is_device_alarm():
    with lauda([(b"OUT_SP_00_-30.0\r\n", b"ERR_6\r\n")], min_c=-40) as dev:
        with pytest.raises(DeviceAlarm, match="OUT_SP_00_-30.0 answered ERR_6: illegal value") as info:
            dev.set_setpoint(-30.0)
    assert info.value.code == 6


def test_setpoint_outside_limits_sends_nothing():
    with lauda([], initialize=True) as dev:
        with pytest.raises(LimitError, match=r"below the lower limit -45.00 °C \(device limits\) of thermostat 'lauda'"):
            dev.set_setpoint(-50)


def test_temperatures():
    exchanges = [(b"IN_PV_00\r\n", b"025.31\r\n"), (b"IN_PV_01\r\n", b"025.30\r\n"), (b"IN_PV_03\r\n", b"-003.20\r\n")]
    with lauda(exchanges) as dev:
        assert dev.read_bath().value == 25.31
        assert dev.read_controlled().channel == "T_controlled_c"
        assert dev.read_process().value == -3.2


def test_missing_external_sensor_err_8_falls_back_to_the_outflow_temperature():
    with lauda([(b"IN_PV_03\r\n", b"ERR_8\r\n"), (b"IN_PV_00\r\n", b"021.30\r\n"),
                (b"IN_PV_00\r\n", b"021.35\r\n")]) as dev:
        with pytest.warns(CapabilityWarning, match=r"external Pt100 temperature \(IN_PV_03\) not available on this "
                                                   r"unit \(IN_PV_03 answered ERR_8: module \(external temperature\) "
                                                   r"not available\); T_reactor_c is recorded from the outflow"):
            r = dev.read_process()
        assert (r.channel, r.value) == ("T_reactor_c", 21.30) and dev.has("external") is False
        assert dev.read_process().value == 21.35  # remembered: IN_PV_03 is not asked again


def test_start_stop():
    with lauda([(b"START\r\n", b"OK\r\n"), (b"STOP\r\n", b"OK\r\n")]) as dev:
        dev.start()
        dev.stop()


def test_status_ok_and_faults():
    with lauda([(b"STATUS\r\n", b"0\r\n"), (b"STAT\r\n", b"0000000\r\n"), (b"IN_MODE_02\r\n", b"0\r\n"),
                (b"STATUS\r\n", b"-1\r\n"), (b"STAT\r\n", b"0000100\r\n"), (b"IN_MODE_02\r\n", b"1\r\n")]) as dev:
        st = dev.status()
        assert (st.running, st.alarms, st.message) == (True, (), "on")
        st = dev.status()
        assert (st.running, st.alarms, st.code) == (False, ("low level",), -1)


def test_reply_to_wrong_command():
    with lauda([(b"IN_PV_00\r\n", b"OK\r\n"), (b"START\r\n", b"025.00\r\n")]) as dev:
        with pytest.raises(ProtocolError, match="got 'OK' \\(reply to a write command\\)"):
            dev.read_bath()
        with pytest.raises(ProtocolError, match="expected 'OK' after START, got '025.00'"):
            dev.start()


def test_parsers():
    assert parse_value(b"030.50") == 30.5
    assert parse_stat(b"1010000") == ("error", "warning")
    assert parse_ok(b"OK") is None
    with pytest.raises(DeviceAlarm, match="ERR_3: wrong command"):
        parse_ok(b"ERR_3", "FOO")
    with pytest.raises(DeviceAlarm, match="ERR_99: unknown error"):
        parse_value(b"ERR_99")
    with pytest.raises(ProtocolError, match="fault flags"):
        parse_stat(b"00a0")
