"""JULABO driver: exact byte exchanges (DOMAIN.md §5), decoding and refusals."""

import pytest

from crystalloop.errors import (
    CapabilityWarning,
    ConfigError,
    DeviceAlarm,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import Thermostat, VirtualClock
from crystalloop.hardware.julabo import (
    JULABO_SETTINGS,
    JulaboThermostat,
    parse_status,
    parse_temperature,
    parse_version,
)
from crystalloop.hardware.testing import ProtocolMismatch, expected_protocol

# connect: identify, probe each function once (capabilities), then the warning limits
IDENT = [
    (b"version\r", b"JULABO FP50-HE VERSION 2.0\r\n"),
    (b"in_sp_00\r", b"20.00\r\n"),
    (b"in_pv_00\r", b"20.31\r\n"),
    (b"in_pv_02\r", b"20.12\r\n"),
    (b"status\r", b"03 REMOTE START\r\n"),
    (b"in_mode_05\r", b"1\r\n"),
    (b"in_mode_04\r", b"0\r\n"),
    (b"in_sp_03\r", b"80.00\r\n"),
    (b"in_sp_04\r", b"-20.00\r\n"),
]


def julabo(exchanges, clock=None, initialize=False, **kw):
    """Context: a JulaboThermostat over a scripted port."""

    class _Ctx:
        def __enter__(self):
            self.cm = expected_protocol(
                (IDENT if initialize else []) + exchanges, settings=JULABO_SETTINGS, device="JULABO", clock=clock
            )
            t = self.cm.__enter__()
            dev = JulaboThermostat(t, **kw)
            if initialize:
                dev.initialize()
            return dev

        def __exit__(self, *exc):
            return self.cm.__exit__(*exc)

    return _Ctx()


def test_initialize_reads_version_and_warning_limits():
    with julabo([], initialize=True) as dev:
        assert isinstance(dev, Thermostat)
        assert dev.info.model == "FP50-HE" and dev.info.version == "2.0"
        assert (dev.limits.min_c, dev.limits.max_c) == (-20.0, 80.0)


def test_user_limits_narrow_device_limits_and_wider_ones_are_refused():
    with julabo([], initialize=True, min_c=0.0, max_c=60.0) as dev:
        assert (dev.limits.min_c, dev.limits.max_c) == (0.0, 60.0)
    with pytest.raises(LimitError, match=r"max_c=120.00 °C .* exceeds the device's upper limit 80.00 °C"):
        with julabo([], initialize=True, max_c=120.0):
            pass


def test_read_bath_and_process_with_timestamps_from_clock():
    clock = VirtualClock(100.0)
    with julabo([(b"in_pv_00\r", b"25.34\r\n"), (b"in_pv_02\r", b"24.91\r\n")], clock=clock) as dev:
        bath = dev.read_bath()
        proc = dev.read_process()
    assert (bath.value, bath.channel, bath.unit) == (25.34, "T_jacket_c", "°C")
    assert (proc.value, proc.channel) == (24.91, "T_reactor_c")
    # 250 ms between commands is waited on the clock, and timestamps come from it
    assert bath.time_s == pytest.approx(100.0)
    assert proc.time_s == pytest.approx(100.25)


def test_setpoint_read_and_write_verified_by_read_back():
    with julabo([(b"in_sp_00\r", b"20.00\r\n"), (b"out_sp_00 55.5\r", None), (b"in_sp_00\r", b"55.50\r\n")]) as dev:
        assert dev.get_setpoint() == 20.0
        dev.set_setpoint(55.5)


def test_setpoint_formatting_keeps_two_decimals_and_negative_values():
    with julabo([(b"out_sp_00 -5.25\r", None), (b"in_sp_00\r", b"-5.25\r\n"),
                 (b"out_sp_00 20.0\r", None), (b"in_sp_00\r", b"20.00\r\n")]) as dev:
        dev.set_setpoint(-5.25)
        dev.set_setpoint(20)


def test_setpoint_outside_limits_sends_nothing():
    with julabo([], initialize=True) as dev:
        with pytest.raises(LimitError, match=r"Setpoint 95.00 °C exceeds the upper limit 80.00 °C \(device limits\) of thermostat 'julabo'"):
            dev.set_setpoint(95.0)


def test_refused_setpoint_is_explained_from_status():
    exchanges = [
        (b"out_sp_00 70.0\r", None),
        (b"in_sp_00\r", b"20.00\r\n"),
        (b"status\r", b"-13 VALUE EXCEEDS TEMPERATURE LIMITS\r\n"),
    ]
    with julabo(exchanges) as dev:
        with pytest.raises(DeviceAlarm, match="refused setpoint 70.00 °C: -13 VALUE EXCEEDS TEMPERATURE LIMITS"):
            dev.set_setpoint(70.0)


def test_setpoint_in_manual_mode_asks_for_remote_control():
    exchanges = [(b"out_sp_00 30.0\r", None), (b"in_sp_00\r", b"20.00\r\n"), (b"status\r", b"01 MANUAL START\r\n")]
    with julabo(exchanges) as dev:
        with pytest.raises(DeviceAlarm, match="01 MANUAL START; switch it to remote control"):
            dev.set_setpoint(30.0)


def test_lost_setpoint_command_without_alarm_is_a_protocol_error():
    exchanges = [(b"out_sp_00 30.0\r", None), (b"in_sp_00\r", b"20.00\r\n"), (b"status\r", b"03 REMOTE START\r\n")]
    with julabo(exchanges) as dev:
        with pytest.raises(ProtocolError, match="not confirmed, the device reports 20.00 °C"):
            dev.set_setpoint(30.0)


def test_verify_false_skips_read_back():
    with julabo([(b"out_sp_00 30.0\r", None)], verify=False) as dev:
        dev.set_setpoint(30.0)


def test_start_and_stop_verified_with_in_mode_05():
    exchanges = [
        (b"out_mode_05 1\r", None), (b"in_mode_05\r", b"1\r\n"),
        (b"out_mode_05 0\r", None), (b"in_mode_05\r", b"0\r\n"),
    ]
    with julabo(exchanges) as dev:
        dev.start()
        dev.stop()


def test_start_refused_in_wrong_mode():
    exchanges = [
        (b"out_mode_05 1\r", None), (b"in_mode_05\r", b"0\r\n"),
        (b"status\r", b"-09 COMMAND NOT ALLOWED IN CURRENT OPERATING MODE\r\n"),
    ]
    with julabo(exchanges) as dev:
        with pytest.raises(DeviceAlarm, match=r"refused start: -09 COMMAND NOT ALLOWED .*remote control"):
            dev.start()


@pytest.mark.parametrize(
    "reply, running, message",
    [
        (b"00 MANUAL STOP", False, "00 MANUAL STOP"),
        (b"01 MANUAL START", True, "01 MANUAL START"),
        (b"02 REMOTE STOP", False, "02 REMOTE STOP"),
        (b"03 REMOTE START", True, "03 REMOTE START"),
    ],
)
def test_status_codes(reply, running, message):
    with julabo([(b"status\r", reply + b"\r\n")]) as dev:
        st = dev.status()
    assert (st.running, st.message, st.alarms, st.ok) == (running, message, (), True)


@pytest.mark.parametrize(
    "code, text",
    [(-1, "LOW LEVEL ALARM"), (-3, "EXCESS TEMPERATURE WARNING"), (-5, "WORKING SENSOR ALARM"),
     (-6, "SENSOR DIFFERENCE ALARM")],
)
def test_alarm_status_decoded_and_check_raises(code, text):
    reply = f"{code:03d} {text}\r\n".encode()
    with julabo([(b"status\r", reply), (b"in_mode_05\r", b"0\r\n"),
                 (b"status\r", reply), (b"in_mode_05\r", b"0\r\n")]) as dev:
        st = dev.status()
        assert st.alarms == (f"{code:03d} {text}",) and not st.running and st.code == code
        with pytest.raises(DeviceAlarm, match=f"reports: {code:03d} {text}"):
            dev.check()


@pytest.mark.parametrize("code, text", [(-8, "INVALID COMMAND"), (-10, "VALUE TOO SMALL"),
                                        (-11, "VALUE TOO LARGE"), (-13, "VALUE EXCEEDS TEMPERATURE LIMITS")])
def test_refused_command_codes_are_reported_but_are_not_alarms(code, text):
    # -08..-13 say the last command was refused, not that the unit is faulty
    st = parse_status(f"{code:03d} {text}".encode())
    assert st.code == code and st.message == f"{code:03d} {text}" and st.alarms == ()


def test_status_text_taken_from_manual_table_even_if_device_abbreviates():
    assert parse_status(b"-1 LOW LEVEL").alarms == ("-01 LOW LEVEL ALARM",)
    assert parse_status(b"-42 SOMETHING NEW").alarms == ("-42 SOMETHING NEW",)


def test_temperature_parser():
    assert parse_temperature(b"25.34") == 25.34
    assert parse_temperature(b"-12.5") == -12.5
    assert parse_temperature(b"+030.00") == 30.0
    with pytest.raises(DeviceAlarm, match="no sensor"):
        parse_temperature(b"---.--")
    with pytest.raises(DeviceAlarm, match="-08 INVALID COMMAND"):
        parse_temperature(b"-08 INVALID COMMAND")
    with pytest.raises(ProtocolError, match="expected a number for temperature, got '03 REMOTE START'"):
        parse_temperature(b"03 REMOTE START")
    with pytest.raises(ProtocolError, match="outside the plausible range"):
        parse_temperature(b"12345.0")
    with pytest.raises(ProtocolError, match="non-printable"):
        parse_temperature(b"2\xff5.0")


def test_version_parser():
    info = parse_version(b"JULABO CORIO CD VERSION 1.3.1")
    assert (info.model, info.version) == ("CORIO CD", "1.3.1")
    assert parse_version(b"FP50").model == "FP50"
    with pytest.raises(ProtocolError, match="reply to another command"):
        parse_version(b"03 REMOTE START")
    with pytest.raises(ProtocolError, match=r"is this a LAUDA thermostat \(use lauda://\)"):
        parse_version(b"ERR_3")


def test_invalid_process_command_option():
    with pytest.raises(ConfigError, match="process_command='pv2' .* expected a JULABO query"):
        with julabo([], process_command="pv2"):
            pass


def test_scripted_port_flags_unexpected_and_unused_exchanges():
    with pytest.raises(ProtocolMismatch, match=r"wrote b'in_pv_00\\r', expected b'in_pv_02\\r'"):
        with julabo([(b"in_pv_02\r", b"20.00\r\n")]) as dev:
            dev.read_bath()
    with pytest.raises(ProtocolMismatch, match="never used"):
        with julabo([(b"in_pv_00\r", b"20.00\r\n"), (b"in_pv_02\r", b"20.00\r\n")]) as dev:
            dev.read_bath()


def test_factory_with_injected_transport_builds_crystallizer():
    from crystalloop.errors import ConfigError as _ConfigError
    from crystalloop.hardware.base import parse_backend_url
    from crystalloop.hardware.julabo import open_julabo

    clock = VirtualClock()
    with expected_protocol(IDENT, settings=JULABO_SETTINGS, device="JULABO", clock=clock) as t:
        cryst = open_julabo(parse_backend_url("julabo:///dev/ttyUSB0?max_c=60"), clock=clock, transport=t)
    assert cryst.meta["model"] == "FP50-HE" and cryst.meta["limits_c"] == (-20.0, 60.0)
    assert cryst.clock is clock and cryst.camera is None
    with pytest.raises(_ConfigError, match="limits= for JULABO backend .* must be a ThermostatLimits, got tuple"):
        open_julabo(parse_backend_url("julabo:///dev/ttyUSB0"), transport=t, limits=(0, 50))
    with pytest.raises(_ConfigError, match="max_c='hot' for JULABO backend .* is not a number"):
        open_julabo(parse_backend_url("julabo:///dev/ttyUSB0?max_c=hot"), transport=t)


def test_a_unit_that_ignores_unknown_queries_is_probed_through_the_next_status():
    """Some units answer an unknown in_* query with nothing and report -08 in the next status:
    at connect that is "not available" too (one warning), not a lost reply."""
    silent_then_08 = [(b"status\r", b"-08 INVALID COMMAND\r\n")]
    exchanges = [
        (b"version\r", b"JULABO F12-ED VERSION 1.1\r\n"),
        (b"in_sp_00\r", b"20.00\r\n"),
        (b"in_pv_00\r", b"20.31\r\n"),
        (b"in_pv_02\r", b""), *silent_then_08,
        (b"status\r", b"03 REMOTE START\r\n"),
        (b"in_mode_05\r", b"1\r\n"),
        (b"in_mode_04\r", b""), *silent_then_08,
        (b"in_sp_03\r", b""), *silent_then_08,
        # after connect a timeout is a timeout again
        (b"in_pv_00\r", b""),
    ]
    with julabo(exchanges) as dev, pytest.warns(CapabilityWarning) as record:
        dev.initialize()
        caps = {c.name: c for c in dev.capabilities()}
        assert (caps["external"].present, caps["limits"].present, caps["control_sensor"].present) == (False,) * 3
        assert "in_pv_02 not answered; the next status reported -08 INVALID COMMAND" in caps["external"].detail
        with pytest.raises(DeviceTimeout, match="no reply to b'in_pv_00"):
            dev.read_bath()
    assert len(record) == 2  # external sensor and limits; the control-sensor query is table-only
