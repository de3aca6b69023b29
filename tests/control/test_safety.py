import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crystalloop.control.safety import SafeThermostat, Watchdog
from crystalloop.errors import ConfigError, LimitError, SafetyError, WatchdogError
from crystalloop.hardware.base import VirtualClock
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import Segment, ThermocycleProfile


def test_out_of_range_setpoint_is_refused_and_not_sent(thermostat):
    safe = SafeThermostat(thermostat, limits=ThermostatLimits(10.0, 50.0))
    with pytest.raises(SafetyError, match=r"Setpoint 55.00 °C exceeds the upper limit 50.00 °C \(device\+user limits\) of thermostat 'fake'"):
        safe.set_setpoint(55.0)
    with pytest.raises(SafetyError, match=r"below the lower limit 10.00 °C"):
        safe.set_setpoint(5.0)
    with pytest.raises(SafetyError, match="not a finite number"):
        safe.set_setpoint(float("nan"))
    assert thermostat.writes == []
    assert isinstance(SafetyError("x"), LimitError)


def test_limits_are_the_intersection_of_device_and_run(clock, make_thermostat):
    th = make_thermostat(clock, limits=ThermostatLimits(0.0, 40.0, 2.0))
    safe = SafeThermostat(th, limits=ThermostatLimits(-10.0, 60.0, 1.0))
    assert (safe.limits.min_c, safe.limits.max_c, safe.limits.max_rate_c_min) == (0.0, 40.0, 1.0)
    with pytest.raises(SafetyError, match="do not overlap"):
        SafeThermostat(th, limits=ThermostatLimits(50.0, 60.0))


def test_ramp_mode_approaches_target_at_the_rate_limit(clock, make_thermostat):
    th = make_thermostat(clock, t0_c=20.0)
    safe = SafeThermostat(th, limits=ThermostatLimits(0.0, 60.0, 2.0))
    assert safe.set_setpoint(30.0) == pytest.approx(20.0)  # nothing moves in zero time
    clock.sleep(60.0)
    assert safe.update() == pytest.approx(22.0)
    clock.sleep(120.0)
    assert safe.update() == pytest.approx(26.0)
    clock.sleep(600.0)
    assert safe.update() == pytest.approx(30.0)
    assert not safe.ramping


def test_step_mode_refuses_a_jump_faster_than_the_ramp_limit(clock, make_thermostat):
    th = make_thermostat(clock, t0_c=20.0)
    safe = SafeThermostat(th, limits=ThermostatLimits(0.0, 60.0, 1.0), ramp=False)
    safe.set_setpoint(20.0)  # the first command starts the rate clock
    clock.sleep(60.0)
    safe.set_setpoint(20.9)  # 0.9 °C in 1 min: allowed
    clock.sleep(60.0)
    with pytest.raises(SafetyError, match=r"exceeds the ramp limit 1 °C/min"):
        safe.set_setpoint(25.0)
    assert th.sp == pytest.approx(20.9)


def test_ramp_to_refuses_too_fast_rate(thermostat):
    safe = SafeThermostat(thermostat, limits=ThermostatLimits(0.0, 70.0, 1.0))
    with pytest.raises(SafetyError, match=r"ramp 3 °C/min exceeds the ramp limit 1 °C/min"):
        safe.ramp_to(30.0, 3.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 150), st.floats(0.0, 600.0)), min_size=1, max_size=25))
def test_commands_never_cross_range_or_rate(make_thermostat, cmds):
    clock = VirtualClock()
    th = make_thermostat(clock, t0_c=25.0)
    lim = ThermostatLimits(5.0, 45.0, 0.5)
    safe = SafeThermostat(th, limits=lim)
    for value, dt in cmds:
        clock.sleep(dt)
        try:
            safe.set_setpoint(value)
        except SafetyError:
            safe.update()
    writes = [(0.0, 25.0)] + th.writes
    for (t0, v0), (t1, v1) in zip(writes, writes[1:], strict=False):
        assert lim.min_c - 1e-9 <= v1 <= lim.max_c + 1e-9
        assert abs(v1 - v0) <= lim.max_rate_c_min * (t1 - t0) / 60.0 + 1e-9


def test_watchdog_retries_with_backoff_and_recovers(clock, thermostat):
    events = []
    safe = SafeThermostat(thermostat, watchdog=Watchdog(max_failures=3, backoff_s=2.0, backoff_factor=2.0),
                          on_event=lambda t, lvl, m: events.append((t, lvl, m)))
    thermostat.transient = 2
    r = safe.read_process()
    assert r.value == pytest.approx(60.0, abs=0.1)
    assert clock.now() == pytest.approx(2.0 + 4.0)  # two back-offs on the run's clock
    assert [e[1] for e in events] == ["warning", "warning"]
    assert "read_process on thermostat 'fake' failed (1/3)" in events[0][2]
    assert safe.failures == 0 and safe.tripped is None


def test_watchdog_trips_to_hold_last_safe_setpoint(clock, thermostat):
    events = []
    safe = SafeThermostat(thermostat, limits=ThermostatLimits(0.0, 70.0, 10.0), safe_state="hold",
                          watchdog=Watchdog(max_failures=3, backoff_s=1.0),
                          on_event=lambda t, lvl, m: events.append((t, lvl, m)))
    safe.set_setpoint(55.0)
    clock.sleep(60.0)
    safe.update()  # ramps to 55 at 10 °C/min... 5 °C after 1 min
    assert thermostat.sp == pytest.approx(55.0)
    thermostat.reads_fail_at_s = clock.now()
    n_writes = len(thermostat.writes)
    with pytest.raises(WatchdogError, match="3 consecutive failed exchanges with thermostat 'fake'"):
        safe.read_process()
    assert safe.tripped is not None
    assert thermostat.writes[n_writes:] and thermostat.writes[-1][1] == pytest.approx(55.0)  # re-sent
    assert "holding 55.00 °C (the last setpoint the device confirmed)" in events[-1][2]
    with pytest.raises(WatchdogError, match="in its safe state"):
        safe.set_setpoint(40.0)


def test_watchdog_trips_to_stop(clock, thermostat):
    safe = SafeThermostat(thermostat, safe_state="stop", watchdog=Watchdog(max_failures=2, backoff_s=0.5))
    thermostat.reads_fail_at_s = 0.0
    with pytest.raises(WatchdogError):
        safe.read_bath()
    assert thermostat.running is False


def test_safe_state_when_the_device_is_gone_is_reported(clock, thermostat):
    events = []
    safe = SafeThermostat(thermostat, safe_state="stop", watchdog=Watchdog(max_failures=1),
                          on_event=lambda t, lvl, m: events.append(m))
    thermostat.gone_at_s = 0.0
    with pytest.raises(WatchdogError):
        safe.read_bath()
    assert "could not stop the circulator" in events[-1]


def test_recipe_incompatible_with_device_limits(short_recipe):
    lim = ThermostatLimits(35.0, 80.0, 0.5, source="device")
    with pytest.raises(LimitError, match=r"segment 3 target 30 °C is below the lower limit 35 °C of thermostat "
                                         r"'julabo' \(device limits\).*segment 2 rate 0.8 °C/min exceeds the "
                                         r"ramp limit 0.5 °C/min"):
        lim.check_profile(short_recipe, "julabo")


def test_for_recipe_limits():
    p = ThermocycleProfile(40, 0.1, 60, [Segment(20, 0.2), Segment(50, 0.8)])
    lim = ThermostatLimits.for_recipe(p, margin_c=5.0, rate_factor=2.0)
    assert (lim.min_c, lim.max_c, lim.max_rate_c_min, lim.source) == (15.0, 65.0, 1.6, "recipe")


@pytest.mark.parametrize("kw, match", [
    (dict(min_c=10.0, max_c=5.0), "min_c < max_c"),
    (dict(max_rate_c_min=0.0), "max_rate_c_min must be > 0"),
    (dict(min_c="cold"), "must be a number"),
])
def test_bad_limits(kw, match):
    with pytest.raises(ConfigError, match=match):
        ThermostatLimits(**kw)


def test_bad_safe_state_and_watchdog(thermostat):
    with pytest.raises(ConfigError, match="safe_state must be one of"):
        SafeThermostat(thermostat, safe_state="explode")
    with pytest.raises(ConfigError, match="max_failures must be a whole number >= 1"):
        Watchdog(max_failures=0)


def test_impossible_ramp_on_sim_is_refused_before_the_run_is_created(tmp_path):
    from crystalloop.control import run
    from crystalloop.store import ExperimentStore

    fast = ThermocycleProfile(40, 0.1, 50.0, [Segment(30.0, 1000.0)], name="fast")
    db = ExperimentStore(tmp_path / "runs.db")
    with pytest.raises(SafetyError, match=r"recipe 'fast' is incompatible with the limits: segment 1 rate 1000 °C/min "
                                          r"exceeds the ramp limit 4 °C/min of thermostat 'sim-thermostat'"):
        run(fast, backend="sim://", store=db)
    assert db.runs().empty


def test_device_ramp_capability_is_part_of_the_effective_limits(clock, make_thermostat):
    th = make_thermostat(clock, limits=ThermostatLimits(-20.0, 80.0, 0.5, source="device"))
    safe = SafeThermostat(th, limits=ThermostatLimits(0.0, 60.0, 3.0, source="recipe"))
    assert safe.limits == ThermostatLimits(0.0, 60.0, 0.5, source="device+recipe")
    with pytest.raises(SafetyError, match=r"ramp 2 °C/min exceeds the ramp limit 0.5 °C/min \(device\+recipe limits\)"):
        safe.ramp_to(10.0, 2.0)


def test_limits_must_be_the_limits_type(thermostat):
    with pytest.raises(ConfigError, match="SafeThermostat limits must be ThermostatLimits, got tuple"):
        SafeThermostat(thermostat, limits=(0.0, 50.0))


def test_a_unit_without_limits_contributes_none(clock, make_thermostat):
    th = make_thermostat(clock, limits=ThermostatLimits())  # reports nothing, nothing given for it
    safe = SafeThermostat(th, limits=ThermostatLimits(10.0, 50.0, 1.0, source="recipe"))
    assert safe.limits == ThermostatLimits(10.0, 50.0, 1.0, source="recipe")
    with pytest.raises(SafetyError, match=r"upper limit 50.00 °C \(recipe limits\) of thermostat 'fake'"):
        safe.set_setpoint(60.0)
