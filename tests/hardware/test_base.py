"""Device base layer: clocks, limits, backend URLs."""

import pytest

from crystalloop.errors import BackendError
from crystalloop.hardware.base import (
    RealClock,
    ThermostatLimits,
    VirtualClock,
    connect,
    parse_backend_url,
    registered_backends,
)


def test_virtual_clock_advances_only_on_sleep():
    c = VirtualClock()
    assert c.now() == 0.0
    c.sleep(3600)
    c.sleep(0.5)
    assert c.now() == 3600.5
    c.advance_to(10.0)  # never backwards
    assert c.now() == 3600.5
    with pytest.raises(ValueError, match="finite duration"):
        c.sleep(-1)


def test_real_clock_monotonic():
    c = RealClock()
    a = c.now()
    c.sleep(0.01)
    assert c.now() >= a + 0.009


def test_base_reexports_the_one_limits_type():
    from crystalloop.limits import ThermostatLimits as Limits

    assert ThermostatLimits is Limits


@pytest.mark.parametrize(
    "url, scheme, target, options",
    [
        ("sim://", "sim", "", {}),
        ("sim://?seed=3&kinetics=pharmapy", "sim", "", {"seed": "3", "kinetics": "pharmapy"}),
        ("julabo:///dev/ttyUSB0?baudrate=4800", "julabo", "/dev/ttyUSB0", {"baudrate": "4800"}),
        ("huber://192.168.0.5:8101", "huber", "192.168.0.5:8101", {}),
        ("LAUDA://COM3", "lauda", "COM3", {}),
    ],
)
def test_parse_backend_url(url, scheme, target, options):
    p = parse_backend_url(url)
    assert (p.scheme, p.target, p.options) == (scheme, target, options)


def test_unknown_and_malformed_backend_urls():
    assert {"sim", "julabo", "huber", "lauda"} <= set(registered_backends())
    with pytest.raises(BackendError, match=r"Unknown backend URL scheme 'foo' in 'foo://x'; expected one of .*sim://"):
        connect("foo://x")
    with pytest.raises(BackendError, match="malformed"):
        connect("/dev/ttyUSB0")
