"""Hypothesis: every reply parser survives arbitrary bytes with only documented errors."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crystalloop.errors import DeviceAlarm, ProtocolError
from crystalloop.hardware import huber, julabo, lauda
from crystalloop.hardware._serial_driver import format_celsius
from crystalloop.hardware.base import VirtualClock
from crystalloop.hardware.testing import ScriptedPort
from crystalloop.hardware.transport import Transport

DOCUMENTED = (ProtocolError, DeviceAlarm)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# random bytes, and bytes that look almost right (protocol alphabet) to reach deeper branches
ALPHABET = b"0123456789ABCDEFabcdef.-+ {}SM*_ORKTEstaus\x11\x13\r\n\x00\xff"
near_miss = st.lists(st.sampled_from(list(ALPHABET)), max_size=24).map(bytes)
replies = st.one_of(st.binary(max_size=40), near_miss)

PARSERS = [
    julabo.parse_status,
    julabo.parse_temperature,
    julabo.parse_mode,
    julabo.parse_version,
    lambda b: huber.parse_reply(b, 0x00),
    lambda b: huber.parse_reply(b, 0x0A),
    lauda.parse_value,
    lauda.parse_ok,
    lauda.parse_stat,
    lambda b: lauda.parse_int(b, "STATUS"),
    lambda b: lauda.parse_text(b, "TYPE"),
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: getattr(p, "__name__", "lambda"))
@FAST
@given(data=replies)
def test_parsers_raise_only_documented_errors(parser, data):
    try:
        parser(data)
    except DOCUMENTED:
        pass


def _driver(cls, reply: bytes, settings):
    port = ScriptedPort([])
    port._rx += reply  # reply already waiting; any command is accepted below
    port.write = lambda data: len(data)  # accept whatever the driver sends
    port.reset_input_buffer = lambda: None
    t = Transport(port, settings=settings, device=cls.vendor, clock=VirtualClock())
    return cls(t)


DRIVER_CALLS = [
    (julabo.JulaboThermostat, julabo.JULABO_SETTINGS, ("read_bath", "read_process", "get_setpoint", "status", "start")),
    (huber.HuberThermostat, huber.HUBER_SETTINGS, ("read_bath", "read_process", "get_setpoint", "status", "stop")),
    (lauda.LaudaThermostat, lauda.LAUDA_SETTINGS, ("read_bath", "read_process", "get_setpoint", "status", "start")),
]


@pytest.mark.parametrize("cls, line, methods", DRIVER_CALLS, ids=lambda x: getattr(x, "vendor", ""))
@FAST
@given(data=replies, which=st.integers(0, 4))
def test_driver_methods_raise_only_documented_errors(cls, line, methods, data, which):
    """Garbage from the device (terminated, so no timeout) never escapes as a bare exception."""
    dev = _driver(cls, data + line.read_terminator * 3, line)
    try:
        getattr(dev, methods[which])()
    except DOCUMENTED:
        pass


@FAST
@given(st.integers(-32768, 32767))
def test_huber_word_round_trip(value):
    assert huber.decode_word(huber.encode_word(value)) == value


@FAST
@given(st.floats(-150, 300, allow_nan=False))
def test_celsius_format_round_trips_to_two_decimals(value):
    text = format_celsius(value)
    assert abs(julabo.parse_temperature(text.encode()) - value) <= 0.005 + 1e-9
    assert abs(lauda.parse_value(text.encode()) - value) <= 0.005 + 1e-9
