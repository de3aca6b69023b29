"""Every model family of every brand, as fakes written from the manuals (hardware.testing).

Capabilities are probed once at connect, a missing optional function gives one warning and
a fallback, and a short recipe runs to ``completed`` through ``crystalloop run`` with the
stored bath temperatures equal to what the unit reported.
"""

import re
import warnings

import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.errors import CapabilityWarning, DeviceAlarm
from crystalloop.hardware.base import VirtualClock, connect
from crystalloop.hardware.replay import replay_trace
from crystalloop.hardware.testing import FAKE_FAMILIES, start_fake
from crystalloop.store import ExperimentStore

# what each family has (from the fakes' docstrings, i.e. the manuals), and the warnings expected
EXPECTED = {
    "julabo/magio": (dict(external=True, limits=True, status=True, mode=True, control_sensor=True), []),
    "julabo/corio": (dict(external=False, limits=False, status=True, mode=True, control_sensor=False),
                     ["external Pt100 temperature", "high/low warning limits"]),
    "julabo/f_series": (dict(external=False, limits=False, status=True, mode=False, control_sensor=False),
                        ["external Pt100 temperature", "start/stop read-back", "high/low warning limits"]),
    "huber/pilot_one": (dict(external=True, limits=True, status=True, faults=True, device_ramp=True), []),
    "huber/pilot_one_basic": (dict(external=False, limits=True, status=True, faults=True, device_ramp=False),
                              ["process (external Pt100) temperature"]),
    "huber/cc": (dict(external=True, limits=False, status=False, faults=True, device_ramp=False),
                 ["status word", "setpoint limits"]),
    "lauda/integral": (dict(external=True, limits=True, status=True, faults=True, mode=True, comm_watchdog=True), []),
    "lauda/eco": (dict(external=False, limits=False, status=True, faults=True, mode=True, comm_watchdog=False),
                  ["external Pt100 temperature", "outflow limits"]),
    "lauda/re": (dict(external=True, limits=False, status=True, faults=False, mode=False, comm_watchdog=False),
                 ["fault flags", "standby read-back", "outflow limits"]),
}
BATH_QUERY = {"julabo": "in_pv_00", "huber": "{M01****", "lauda": "IN_PV_00"}


def _reported_celsius(scheme, reply):
    """A bath reading as the unit sent it (parsed here from the manual's format, not by the driver)."""
    if scheme == "huber":
        raw = int(reply[4:8], 16)
        return (raw - 0x10000 if raw & 0x8000 else raw) / 100
    return float(reply)


@pytest.mark.parametrize("family", sorted(FAKE_FAMILIES))
def test_capabilities_probed_once_with_one_warning_per_missing_function(family):
    clock = VirtualClock()
    present, warned = EXPECTED[family]
    unit, url = start_fake(family, clock=clock, link="socket" if family.startswith("huber") else "pty")
    with unit:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cz = connect(url + "?timeout_s=0.3", clock=clock)
        with cz:
            caps = {c.name: c for c in cz.thermostat.capabilities()}
            assert {n: caps[n].present for n in present} == present
            assert all(c.present for c in caps.values() if c.essential and c.name != "start_stop")
            messages = [str(w.message) for w in record if issubclass(w.category, CapabilityWarning)]
            assert len(messages) == len(warned), messages
            for text, message in zip(warned, messages, strict=True):
                assert text in message and "not available on this unit" in message
            # remembered: reading and status later never ask for a missing function again
            n_probe = len(unit.log)
            cz.thermostat.read_process()
            cz.thermostat.status()
            asked = unit.commands()[n_probe:]
            for name, c in caps.items():
                if c.present is False and c.commands != "-":
                    first = c.commands.split(",")[0].strip()
                    assert not any(a == first or a.startswith("{M" + first) for a in asked), (name, asked)


def _run_cli(family, tmp_path, recipe, extra=()):
    unit, url = start_fake(family, setpoint_c=25.0, tau_s=5.0, tau_reactor_s=10.0)
    store = tmp_path / "runs.db"
    trace = tmp_path / "trace.txt"
    with unit:
        res = CliRunner().invoke(app, ["run", str(recipe), "--backend", url + "?timeout_s=0.5", "--store", str(store),
                                       "--out", str(tmp_path / "out"), "--sample-interval-s", "3",
                                       "--trace", str(trace), *extra])
    return unit, url, store, trace, res


FAST = ["julabo/f_series", "huber/cc", "lauda/re"]  # the families the issue found failing


@pytest.mark.parametrize("family", [f if f in FAST else pytest.param(f, marks=pytest.mark.slow)
                                    for f in sorted(FAKE_FAMILIES)])
def test_each_family_runs_a_recipe_to_completed_through_the_cli(family, tmp_path):
    recipe = tmp_path / "short.yaml"
    recipe.write_text("name: short\nc0_mg_g: 40\nseed_loading: 0.1\nt_start_c: 25\n"
                      "segments:\n  - {target_c: 24.9, rate_c_min: 1.0}\n", encoding="utf-8")
    unit, url, store, trace, res = _run_cli(family, tmp_path, recipe)
    assert res.exit_code == 0, res.output
    assert "completed" in res.output
    # one warning line per function this family lacks
    for text in EXPECTED[family][1]:
        assert len(re.findall(rf"warning: .*{re.escape(text)}.*not available on this unit", res.output)) == 1
    db = ExperimentStore(store)
    run = db.runs().iloc[-1]
    assert run["status"] == "completed"
    samples = db.samples(int(run["run_id"]))
    stored = samples.loc[samples["channel"] == "T_jacket_c", "value"].round(2).tolist()
    scheme = url.split(":")[0]
    reported = [_reported_celsius(scheme, r) for r in unit.replies_to(BATH_QUERY[scheme])]
    if not EXPECTED[family][0]["external"]:  # T_reactor_c comes from the same bath query
        stored += samples.loc[samples["channel"] == "T_reactor_c", "value"].round(2).tolist()
    assert len(stored) >= 3
    assert sorted(stored) == sorted(reported[1:])  # every bath reading after the connect probe, as reported
    # the trace of the run replays identically against the driver
    replayed = replay_trace(trace)
    assert replayed.ok, replayed.differences
    assert replayed.calls > 5 and replayed.exchanges == len(unit.log)


def test_recipe_faster_than_the_device_ramp_is_refused_before_the_run_exists(tmp_path):
    recipe = tmp_path / "fast.yaml"
    recipe.write_text("name: fast\nc0_mg_g: 40\nseed_loading: 0.1\nt_start_c: 25\n"
                      "segments:\n  - {target_c: 20, rate_c_min: 1000}\n", encoding="utf-8")
    unit, url = start_fake("julabo/corio", setpoint_c=25.0)
    store = tmp_path / "runs.db"
    with unit:
        res = CliRunner().invoke(app, ["run", str(recipe), "--backend", url + "?timeout_s=0.5&max_rate_c_min=2",
                                       "--store", str(store), "--out", str(tmp_path / "out")])
        sent = [c for c in unit.commands() if c.startswith("out_")]
    assert res.exit_code == 2, res.output
    assert ("segment 1 rate 1000 °C/min exceeds the ramp limit 2 °C/min of thermostat 'julabo' (url+recipe limits)"
            in res.output)
    assert sent == [] and (not store.exists() or ExperimentStore(store).runs().empty)


def test_probe_command_prints_the_capability_table_and_the_url(tmp_path):
    unit, url = start_fake("lauda/eco")
    with unit:
        res = CliRunner().invoke(app, ["thermostat", "probe", url, "--timeout", "0.3", "--trace",
                                       str(tmp_path / "probe.txt")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "found 9600 baud 8N1: ECO RE 1050 S 1.12" in lines
    table = lines[lines.index("capabilities:") + 1:]
    assert re.match(r"  function +commands +kind +present", table[0])
    row = {ln.split()[0]: ln for ln in table[1:] if ln.startswith("  ") and not ln.startswith("  function")}
    assert re.search(r"IN_PV_03 +optional +no +IN_PV_03 answered ERR_8.*outflow sensor", row["external"])
    assert re.search(r"IN_SP_00, OUT_SP_00 +needed +yes +20.00 °C", row["setpoint"])
    assert re.search(r"optional +no .*not armed", row["comm_watchdog"])
    assert lines[-1] == f"use: {url}?baudrate=9600&framing=8N1"
    assert replay_trace(tmp_path / "probe.txt").ok


def test_an_essential_function_missing_is_a_clear_error():
    class NoSetpoint(FAKE_FAMILIES["lauda/re"][0]):
        commands_known = frozenset({"TYPE", "IN_PV_00", "STATUS"})

    clock = VirtualClock()
    with NoSetpoint(clock=clock) as unit:
        with pytest.raises(DeviceAlarm, match=r"LAUDA 'lauda' on .* does not support setpoint \(IN_SP_00, OUT_SP_00\), "
                                              r"which the driver needs: IN_SP_00 answered ERR_3: wrong command"):
            connect(f"lauda://{unit.url}?timeout_s=0.3", clock=clock)


def test_probe_and_show_never_arm_or_write_anything():
    from crystalloop.hardware.probe import probe_line_settings, snapshot

    clock = VirtualClock()
    unit, url = start_fake("lauda/integral", clock=clock)
    with unit:
        res = probe_line_settings(url, clock=clock, timeout_s=0.3)
        snap = snapshot(url + "?timeout_s=0.3", clock=clock)
        writes = [c for c in unit.commands() if c.startswith(("OUT_", "START", "STOP"))]
    assert writes == [] and unit.comm_timeout_s == 0
    for caps in (res.capabilities, snap["capabilities"]):
        assert {c.name: c.detail for c in caps}["comm_watchdog"] == "present; not armed (comm_timeout_s=0)"
