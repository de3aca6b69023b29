"""The one limits type shared by drivers, recipes, the safety layer and the design code."""

import math

import pytest

from crystalloop.errors import ConfigError, LimitError
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import Segment, ThermocycleProfile


def test_check_setpoint_names_value_limit_source_and_device():
    lim = ThermostatLimits(-10, 80, 2.0, source="device")
    assert lim.check_setpoint(25) == 25.0
    with pytest.raises(LimitError, match=r"^Setpoint 95.00 °C exceeds the upper limit 80.00 °C \(device limits\) "
                                         r"of thermostat 'julabo'$"):
        lim.check_setpoint(95, "julabo")
    with pytest.raises(LimitError, match=r"^Setpoint -20.00 °C is below the lower limit -10.00 °C \(device limits\)"):
        lim.check_setpoint(-20)
    with pytest.raises(LimitError, match="not a finite number"):
        lim.check_setpoint(float("nan"))
    with pytest.raises(LimitError, match="'warm' for thermostat 'x' is not a number"):
        lim.check_setpoint("warm", "x")
    # unlabelled limits say nothing about a source
    with pytest.raises(LimitError, match=r"^Setpoint 95.00 °C exceeds the upper limit 80.00 °C of thermostat 't'$"):
        ThermostatLimits(-10, 80).check_setpoint(95, "t")


def test_unbounded_by_default_and_rate_check():
    lim = ThermostatLimits()
    assert (lim.min_c, lim.max_c, lim.max_rate_c_min, lim.bounded) == (-math.inf, math.inf, math.inf, False)
    assert lim.check_setpoint(1e3) == 1e3
    fast = ThermostatLimits(0, 50, 1.5, source="device")
    assert fast.bounded and fast.check_rate(-1.5) == 1.5
    with pytest.raises(LimitError, match=r"ramp 3 °C/min exceeds the ramp limit 1.5 °C/min \(device limits\)"):
        fast.check_rate(3.0, "huber")
    assert fast.describe() == "[0, 50] °C, <= 1.5 °C/min (device limits)"
    assert lim.describe() == "[-inf, inf] °C, any rate"


def test_intersect_takes_the_tighter_bounds_and_joins_sources():
    dev = ThermostatLimits(-20, 80, 5.0, source="device")
    rec = ThermostatLimits(10, 95, 1.0, source="recipe")
    both = dev.intersect(rec)
    assert both == ThermostatLimits(10, 80, 1.0, source="device+recipe")
    assert dev.intersect(ThermostatLimits(0, 50)).source == "device"
    with pytest.raises(LimitError, match=r"device limits \[-20, 80\] °C and recipe limits \[90, 95\] °C do not overlap"):
        dev.intersect(ThermostatLimits(90, 95, source="recipe"))
    with pytest.raises(ConfigError, match="intersect needs ThermostatLimits, got tuple"):
        dev.intersect((0, 1))


def test_for_recipe_and_profile_violations():
    p = ThermocycleProfile(40, 0.1, 60, [Segment(20, 0.2), Segment(50, 0.8)], name="r1")
    lim = ThermostatLimits.for_recipe(p, margin_c=5.0, rate_factor=2.0)
    assert (lim.min_c, lim.max_c, lim.max_rate_c_min, lim.source) == (15.0, 65.0, 1.6, "recipe")
    dev = ThermostatLimits(25, 55, 0.5, source="device")
    problems = dev.violations(p, "julabo")
    assert problems == [
        "start temperature 60 °C exceeds the upper limit 55 °C of thermostat 'julabo' (device limits)",
        "segment 1 target 20 °C is below the lower limit 25 °C of thermostat 'julabo' (device limits)",
        "segment 2 rate 0.8 °C/min exceeds the ramp limit 0.5 °C/min of thermostat 'julabo' (device limits)",
    ]
    # the profile's own feasibility check uses the same messages
    assert p.violations(bounds=None, limits=dev) == dev.violations(p)
    with pytest.raises(LimitError, match=r"^recipe 'r1' is incompatible with the limits: start temperature 60 °C"):
        dev.check_profile(p, "julabo")
    ThermostatLimits(0, 70, 1.0).check_profile(p)  # feasible: no error


@pytest.mark.parametrize("kw, match", [
    (dict(min_c=10.0, max_c=5.0), r"need min_c < max_c, got min_c=10 °C, max_c=5 °C"),
    (dict(max_rate_c_min=0.0), r"max_rate_c_min must be > 0 °C/min, got 0"),
    (dict(min_c="cold"), r"min_c must be a number, got 'cold'"),
    (dict(max_c=float("nan")), r"max_c must be a number, got nan"),
    (dict(max_c=True), r"max_c must be a number, got True"),
    (dict(source=3), r"source must be a string, got 3"),
])
def test_bad_limits(kw, match):
    with pytest.raises(ConfigError, match=match):
        ThermostatLimits(**kw)


def test_for_recipe_rejects_bad_margins():
    p = ThermocycleProfile(40, 0.1, 60, [Segment(20, 0.2)])
    with pytest.raises(ConfigError, match="margin_c >= 0 °C and rate_factor >= 1, got margin_c=-1"):
        ThermostatLimits.for_recipe(p, margin_c=-1)
