"""Huber PB driver: exact byte exchanges (DOMAIN.md §5), two's complement, sentinels, refusals."""

import math

import pytest

from crystalloop.errors import (
    CapabilityWarning,
    ConfigError,
    DeviceAlarm,
    LimitError,
    ProtocolError,
)
from crystalloop.hardware.base import Thermostat
from crystalloop.hardware.huber import (
    HUBER_SETTINGS,
    HuberThermostat,
    decode_status_word,
    decode_word,
    encode_temperature,
    encode_word,
    parse_reply,
)
from crystalloop.hardware.testing import expected_protocol

# connect: identify (any valid reply), probe each register once (capabilities), then limits
PROBE = [
    (b"{M00****\r\n", b"{S0004DA\r\n"),
    (b"{M01****\r\n", b"{S0104E2\r\n"),  # 12.50
    (b"{M14****\r\n", b"{S140001\r\n"),
    (b"{M07****\r\n", b"{S0704C9\r\n"),  # 12.25
    (b"{M0A****\r\n", b"{S0A0013\r\n"),
    (b"{M05****\r\n", b"{S050000\r\n"),
    (b"{M06****\r\n", b"{S060000\r\n"),
    (b"{M59****\r\n", b"{S590000\r\n"),
]
IDENT = [(b"{M00****\r\n", b"{S0004DA\r\n")] + PROBE + [
    (b"{M30****\r\n", b"{S30F060\r\n"),  # -40.00
    (b"{M31****\r\n", b"{S314E20\r\n"),  # 200.00
]


class huber:
    def __init__(self, exchanges, initialize=False, **kw):
        self.exchanges = (IDENT if initialize else []) + exchanges
        self.initialize, self.kw = initialize, kw

    def __enter__(self):
        self.cm = expected_protocol(self.exchanges, settings=HUBER_SETTINGS, device="Huber")
        dev = HuberThermostat(self.cm.__enter__(), **self.kw)
        return dev.initialize() if self.initialize else dev

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_domain_examples_encode_and_decode():
    assert encode_temperature(20.0) == "07D0"
    assert encode_temperature(-20.0) == "F830"
    assert decode_word("04DA") == 1242
    assert decode_word("F830") == -2000
    assert decode_word("8000") == -32768 and encode_word(-32768) == "8000"
    with pytest.raises(LimitError, match="16-bit"):
        encode_word(40000)


def test_initialize_reads_setpoint_limits_30_31():
    with huber([], initialize=True, model="Unistat 425") as dev:
        assert isinstance(dev, Thermostat)
        assert (dev.limits.min_c, dev.limits.max_c) == (-40.0, 200.0)
        assert dev.info.model == "Unistat 425" and dev.info.raw == "setpoint 12.42 °C"


def test_limits_not_available_leave_the_range_open():
    with huber([(b"{M00****\r\n", b"{S0004DA\r\n")] + PROBE + [(b"{M30****\r\n", b"{S307FFF\r\n")]) as dev, \
            pytest.warns(CapabilityWarning, match=r"setpoint limits \(30, 31\) not available on this unit .*7FFF.*"
                                                  r"limits come from the URL"):
        dev.initialize()
        assert not dev.has("limits")
        assert dev.device_limits is None and (dev.limits.min_c, dev.limits.max_c) == (-math.inf, math.inf)


def test_read_setpoint_domain_example():
    with huber([(b"{M00****\r\n", b"{S0004DA\r\n")]) as dev:
        assert dev.get_setpoint() == pytest.approx(12.42)


def test_write_setpoint_domain_examples():
    with huber([(b"{M0007D0\r\n", b"{S0007D0\r\n"), (b"{M00F830\r\n", b"{S00F830\r\n")], initialize=False) as dev:
        dev.limits = dev.limits.__class__(min_c=-40, max_c=100)
        dev.set_setpoint(20.0)
        dev.set_setpoint(-20.0)


def test_refused_setpoint_reports_error_register():
    with huber([(b"{M001388\r\n", b"{S0007D0\r\n"), (b"{M05****\r\n", b"{S05FFF6\r\n")], max_c=80.0) as dev:
        with pytest.raises(DeviceAlarm, match=r"refused setpoint 50.00 °C: error code -10"):
            dev.set_setpoint(50.0)


def test_temperatures_internal_return_process():
    exchanges = [(b"{M01****\r\n", b"{S010A28\r\n"), (b"{M02****\r\n", b"{S0209C4\r\n"),
                 (b"{M07****\r\n", b"{S07FF9C\r\n")]
    with huber(exchanges) as dev:
        assert dev.read_bath().value == 26.0
        assert dev.read_return().value == 25.0
        proc = dev.read_process()
        assert (proc.value, proc.channel) == (-1.0, "T_reactor_c")


def test_process_register_3a_option():
    with huber([(b"{M3A****\r\n", b"{S3A0064\r\n")], process_address="3A") as dev:
        assert dev.read_process().value == 1.0
    with pytest.raises(ConfigError, match="process_address='ZZ'"):
        with huber([], process_address="ZZ"):
            pass


def test_no_sensor_and_not_available_sentinels():
    with huber([(b"{M07****\r\n", b"{S07C504\r\n"), (b"{M01****\r\n", b"{S017FFF\r\n")]) as dev:
        with pytest.raises(DeviceAlarm, match=r"no sensor connected for process temperature .*-151.00 °C"):
            dev.read_process()
        with pytest.raises(DeviceAlarm, match=r"internal temperature \(register 01\) reads 7FFF \(not available\)"):
            dev.read_bath()


def test_reply_to_wrong_register_is_protocol_error():
    with huber([(b"{M01****\r\n", b"{S0A0003\r\n")]) as dev:
        with pytest.raises(ProtocolError, match="is for register 0A, expected register 01"):
            dev.read_bath()


def test_start_stop_circulation_registers_14_16():
    exchanges = [(b"{M140001\r\n", b"{S140001\r\n"), (b"{M140000\r\n", b"{S140000\r\n"),
                 (b"{M160001\r\n", b"{S160001\r\n")]
    with huber(exchanges) as dev:
        dev.start()
        dev.stop()
        dev.set_circulation(True)


def test_ramp_registers_59_5a():
    exchanges = [(b"{M590258\r\n", b"{S590258\r\n"), (b"{M5A0FA0\r\n", b"{S5A0FA0\r\n"),
                 (b"{M59****\r\n", b"{S590258\r\n"), (b"{M5A****\r\n", b"{S5A0FA0\r\n")]
    with huber(exchanges) as dev:
        dev.start_ramp(40.0, 600)
        assert dev.ramp_duration_s() == 600.0 and dev.ramp_target_c() == 40.0
    with huber([]) as dev:
        with pytest.raises(LimitError, match="Ramp duration 40000 s .* outside the PB range"):
            dev.start_ramp(40.0, 40000)


def test_status_word_and_alarm_registers():
    exchanges = [(b"{M0A****\r\n", b"{S0A0313\r\n"), (b"{M05****\r\n", b"{S05FC18\r\n"),
                 (b"{M06****\r\n", b"{S060000\r\n")]
    with huber(exchanges) as dev:
        st = dev.status()
    assert st.running and st.code == 0x313
    assert "temperature control active" in st.message and "circulation pump on" in st.message
    assert st.alarms == ("error -1000 (register 05)", "warning flag set in status word")


def test_decode_status_word_bits():
    assert decode_status_word(0) == ()
    assert decode_status_word(0b11) == ("temperature control active", "circulation active")
    assert decode_status_word(1 << 15) == ("bit 15",)


def test_parse_reply_errors():
    assert parse_reply(b"{S0004da", 0) == 1242  # lower-case hex accepted
    with pytest.raises(ProtocolError, match="expected a reply"):
        parse_reply(b"{S00", 0)
    with pytest.raises(ProtocolError, match="non-printable"):
        parse_reply(b"{S00\x0004DA", 0)


def test_refused_write_without_error_code_names_the_value_held():
    with huber([(b"{M001388\r\n", b"{S0007D0\r\n"), (b"{M05****\r\n", b"{S050000\r\n"),
                (b"{M140001\r\n", b"{S140000\r\n"), (b"{M05****\r\n", b"{S050000\r\n")], max_c=80.0) as dev:
        with pytest.raises(DeviceAlarm, match=r"refused setpoint 50.00 °C: it still holds 20.00 °C"):
            dev.set_setpoint(50.0)
        with pytest.raises(DeviceAlarm, match=r"refused start of temperature control: it still holds 0 "):
            dev.start()
