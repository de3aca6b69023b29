"""Safe states at the driver/safety level, against the fake units: what the unit's log shows.

* hold never re-sends a stale command whose read-back timed out;
* a device fault (alarm) and a watchdog timeout (the unit stops answering) each put the unit
  in its safe state, hold or stop;
* a LAUDA unit with the interface safety mode falls back on its own when the computer
  stops talking.
"""

import re

import pytest

from crystalloop.control.safety import SafeThermostat, Watchdog
from crystalloop.errors import DeviceAlarm, WatchdogError
from crystalloop.hardware.base import VirtualClock, connect
from crystalloop.hardware.testing import start_fake

# the families' missing functions are asserted in test_families.py; here they are only noise
pytestmark = pytest.mark.filterwarnings("ignore::crystalloop.errors.CapabilityWarning")


def _open(family, clock, safe_state="hold", options="", **unit_kw):
    unit, url = start_fake(family, clock=clock, **unit_kw)
    cz = connect(f"{url}?timeout_s=0.2{options}", clock=clock)
    events = []
    safe = SafeThermostat(cz.thermostat, safe_state=safe_state, watchdog=Watchdog(max_failures=3, backoff_s=1.0),
                          on_event=lambda t, lvl, m: events.append(m))
    return unit, cz, safe, events


def test_hold_never_resends_a_command_whose_read_back_timed_out():
    clock = VirtualClock()
    unit, cz, safe, events = _open("julabo/magio", clock, setpoint_c=20.0)
    with unit, cz:
        safe.set_setpoint(19.91, ramp=False)
        clock.sleep(60.0)
        unit.inject("silent", when="in_sp_00", times=3)  # the unit takes 19.83, its read-backs are lost
        with pytest.raises(WatchdogError, match="3 consecutive failed exchanges .* during set_setpoint"):
            safe.set_setpoint(19.83, ramp=False)
        writes = [c for c in unit.commands() if c.startswith("out_sp_00")]
    assert writes[0] == "out_sp_00 19.91" and "out_sp_00 19.91" not in writes[1:]
    assert writes[-1] == "out_sp_00 19.83" and unit.bath.setpoint_c == pytest.approx(19.83)
    assert "holding 19.83 °C (the setpoint the device reports now)" in events[-1]


def test_hold_falls_back_to_the_bath_temperature_when_the_setpoint_cannot_be_read():
    clock = VirtualClock()
    unit, cz, safe, events = _open("julabo/corio", clock, setpoint_c=20.0, temperature_c=20.0)
    with unit, cz:
        safe.set_setpoint(19.91, ramp=False)
        clock.sleep(60.0)
        unit.inject("silent", when="in_sp_00", times=4)  # ... and the hold's own setpoint query too
        with pytest.raises(WatchdogError):
            safe.set_setpoint(19.83, ramp=False)
        bath = unit.replies_to("in_pv_00")[-1]
        writes = [c for c in unit.commands() if c.startswith("out_sp_00")]
    assert "out_sp_00 19.91" not in writes[1:]
    assert float(writes[-1].split()[1]) == float(bath) and float(bath) != 19.83
    assert f"holding {float(bath):.2f} °C (the current bath temperature)" in events[-1]


def test_hold_re_sends_the_last_confirmed_setpoint_after_a_clean_command():
    clock = VirtualClock()
    unit, cz, safe, events = _open("huber/pilot_one", clock)
    with unit, cz:
        safe.set_setpoint(19.91, ramp=False)
        unit.inject("silent", when="{M01", times=3)  # bath reads time out: the watchdog trips
        with pytest.raises(WatchdogError, match="during read_bath"):
            safe.read_bath()
        writes = [c for c in unit.commands() if c.startswith("{M00") and not c.endswith("****")]
    assert writes == ["{M0007C7", "{M0007C7"]  # 19.91 °C, then the hold re-sends it
    assert "holding 19.91 °C (the last setpoint the device confirmed)" in events[-1]


@pytest.mark.parametrize("safe_state, command", [("hold", "OUT_SP_00_35.0"), ("stop", "STOP")])
def test_watchdog_timeout_puts_the_unit_in_its_safe_state(safe_state, command):
    clock = VirtualClock()
    unit, cz, safe, events = _open("lauda/eco", clock, safe_state=safe_state)
    with unit, cz:
        safe.set_setpoint(35.0, ramp=False)
        n = len(unit.log)
        unit.inject("silent", when="IN_PV", times=3)
        with pytest.raises(WatchdogError, match=r"watchdog: 3 consecutive failed exchanges with thermostat 'lauda'"):
            safe.read_process()
        after = unit.commands()[n:]
    assert after[-1] == command and after[:3] == ["IN_PV_00"] * 3  # the ECO has no Pt100: bath fallback
    assert "safe state:" in events[-1] and "reason: watchdog" in events[-1]
    if safe_state == "stop":
        assert unit.bath.running is False


@pytest.mark.parametrize("family, fault, alarm", [
    ("lauda/integral", lambda u: setattr(u, "stat", "0000100"), "low level"),
    ("julabo/magio", lambda u: setattr(u, "alarm", -1), "-01 LOW LEVEL ALARM"),
    ("huber/pilot_one", lambda u: setattr(u, "error", -1234), "error -1234 (register 05)"),
])
def test_device_fault_puts_the_unit_in_its_safe_state(family, fault, alarm):
    clock = VirtualClock()
    unit, cz, safe, events = _open(family, clock)
    with unit, cz:
        safe.set_setpoint(30.0, ramp=False)
        assert safe.check_health().ok
        n = len(unit.log)
        fault(unit)
        with pytest.raises(DeviceAlarm, match=f"device fault on thermostat '{cz.thermostat.name}': .*{re.escape(alarm)}"):
            safe.check_health()
        after = unit.commands()[n:]
    hold = {"lauda": "OUT_SP_00_30.0", "julabo": "out_sp_00 30.0", "huber": "{M000BB8"}[family.split("/")[0]]
    assert hold in after  # the hold command is in the unit's log
    assert "safe state: holding 30.00 °C (the last setpoint the device confirmed)" in events[-1]
    assert safe.tripped is not None


def test_lauda_safety_mode_is_armed_and_the_unit_falls_back_when_the_computer_stops_talking():
    clock = VirtualClock()
    unit, url = start_fake("lauda/integral", clock=clock, setpoint_c=40.0)
    with unit, connect(f"{url}?timeout_s=0.2&comm_timeout_s=30&safe_setpoint_c=25", clock=clock) as cz:
        th = cz.thermostat
        assert "OUT_SP_06_25.0" in unit.commands() and "OUT_SP_07_30" in unit.commands()
        caps = {c.name: c for c in th.capabilities()}
        assert caps["comm_watchdog"].present and caps["comm_watchdog"].detail.startswith("armed: 25.00 °C after 30 s")
        th.set_setpoint(45.0)
        for _ in range(5):  # a driver that keeps talking every 20 s keeps the unit under control
            clock.sleep(20.0)
            th.read_bath()
        assert unit.wait_for(lambda: unit.bath.setpoint_c == 45.0, 1.0) and not unit.watchdog_tripped
        clock.sleep(31.0)  # the computer stops talking
        assert unit.wait_for(lambda: unit.watchdog_tripped, 2.0)
        assert unit.bath.setpoint_c == 25.0
        assert unit.events[-1][1] == "communication timeout 30 s: safety setpoint 25.00 °C"
        assert th.get_setpoint() == 25.0


def test_closing_the_driver_disarms_the_safety_mode_so_the_unit_keeps_its_setpoint():
    clock = VirtualClock()
    unit, url = start_fake("lauda/integral", clock=clock, setpoint_c=40.0)
    with unit:
        with connect(f"{url}?timeout_s=0.2&comm_timeout_s=30&safe_setpoint_c=25", clock=clock) as cz:
            cz.thermostat.set_setpoint(12.0)  # e.g. the hold at the end of a batch
        assert unit.commands()[-1] == "OUT_SP_07_0" and unit.comm_timeout_s == 0
        clock.sleep(60.0)
        assert not unit.wait_for(lambda: unit.watchdog_tripped, 0.3) and unit.bath.setpoint_c == 12.0


def test_safety_mode_not_armed_on_request_and_bad_timeout_refused():
    from crystalloop.errors import ConfigError

    clock = VirtualClock()
    unit, url = start_fake("lauda/integral", clock=clock)
    with unit:
        with connect(f"{url}?timeout_s=0.2&comm_timeout_s=0", clock=clock) as cz:
            assert not any(c.startswith("OUT_SP_07") for c in unit.commands())
            assert {c.name: c for c in cz.thermostat.capabilities()}["comm_watchdog"].detail.endswith("comm_timeout_s=0)")
        with pytest.raises(ConfigError, match=r"comm_timeout_s=5000.0 for thermostat 'lauda' must be 0 "
                                              r"\(do not arm\) or 1..999 s"):
            connect(f"{url}?timeout_s=0.2&comm_timeout_s=5000", clock=clock)


def test_keepalive_holds_the_safety_mode_off_while_connected_and_the_unit_falls_back_once_gone(tmp_path):
    """Real clock: the run may sample less often than the timeout; the driver keeps the link alive,
    so only a gone process (here: the port closed without a word) lets the unit fall back."""
    import time

    from crystalloop.hardware.base import RealClock
    from crystalloop.hardware.replay import replay_trace

    clock = RealClock()
    unit, url = start_fake("lauda/integral", clock=clock, setpoint_c=40.0)
    trace = tmp_path / "k.trace"
    with unit:
        cz = connect(f"{url}?timeout_s=0.5&comm_timeout_s=2&safe_setpoint_c=25&trace={trace}", clock=clock)
        detail = {c.name: c for c in cz.thermostat.capabilities()}["comm_watchdog"].detail
        assert detail.startswith("armed: 25.00 °C after 2 s without a command; kept alive every 0.666667 s")
        time.sleep(3.0)  # the run says nothing for 3 s: the keep-alive does
        assert not unit.watchdog_tripped and unit.bath.setpoint_c == 40.0
        n_alive = unit.commands().count("IN_SP_00") - 1  # one IN_SP_00 is the connect probe
        assert 2 <= n_alive <= 10
        cz.thermostat.stop_keepalive()  # the process "dies": no more words, no goodbye
        cz.thermostat.transport.close()
        assert unit.wait_for(lambda: unit.watchdog_tripped, 6.0)
        assert unit.bath.setpoint_c == 25.0
    res = replay_trace(trace)  # keep-alives are recorded as operations and replay like any other
    assert res.ok, res.differences
    assert res.calls >= 1 + n_alive
