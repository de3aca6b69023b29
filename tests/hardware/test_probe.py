"""Line-settings probe, read-only snapshot and the ``crystalloop thermostat`` command, over a pty.

The units are fakes from :mod:`crystalloop.hardware.testing` set to another baud rate than the
driver's default, so the probe has to find it.
"""

import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.errors import BackendError, CapabilityWarning, DeviceError
from crystalloop.hardware.base import VirtualClock
from crystalloop.hardware.probe import probe_line_settings, snapshot
from crystalloop.hardware.testing import start_fake


def test_probe_finds_4800_baud_julabo_and_keeps_other_options():
    clock = VirtualClock()
    unit, url = start_fake("julabo/magio", clock=clock, baudrate=4800)
    with unit:
        res = probe_line_settings(f"{url}?name=bath&baudrate=9600", clock=clock, timeout_s=0.2)
        # at 9600 baud the unit heard noise and sent noise back
        assert not unit.exchanges[0][2].isascii()
    assert res.url == f"{url}?name=bath&baudrate=4800&framing=7E1"
    assert res.line_settings == "4800 baud 7E1" and res.model == "MAGIO MS-1000F"
    assert res.tried == [("9600 baud 8N1", "ProtocolError")]


def test_probe_reports_every_attempt_when_nothing_answers():
    clock = VirtualClock()
    unit, url = start_fake("lauda/integral", clock=clock, baudrate=1200)
    with unit:
        with pytest.raises(DeviceError, match=r"No line setting gave a valid reply from LAUDA .*tried 9600 baud 8N1: "
                                              r"ProtocolError; 19200 baud 8N1: ProtocolError; 4800 baud 8N1: "
                                              r"ProtocolError; 2400 baud 8N1: ProtocolError"):
            probe_line_settings(url, clock=clock, timeout_s=0.2)
        assert [r for _, _, r in unit.exchanges if r is not None and r.isascii()] == []
    with pytest.raises(BackendError, match="Cannot probe 'sim://'"):
        probe_line_settings("sim://")


def test_snapshot_reads_without_writing():
    clock = VirtualClock()
    unit, url = start_fake("huber/pilot_one_basic", clock=clock)  # no sensor in the process input
    with unit:
        with pytest.warns(CapabilityWarning, match=r"process \(external Pt100\) temperature \(07\) not available on "
                                                   r"this unit \(no sensor connected \(-151.00 °C\)\); T_reactor_c is "
                                                   r"recorded from the internal sensor"):
            snap = snapshot(f"{url}?timeout_s=0.2", clock=clock)
        writes = [c for c in unit.commands() if not c.endswith("****")]
    assert writes == []
    assert (snap["vendor"], snap["min_c"], snap["max_c"], snap["setpoint_c"]) == ("Huber", -33.0, 200.0, 20.0)
    assert snap["bath_c"] == pytest.approx(20.0, abs=0.01) and snap["running"] is True
    assert snap["process_c"] == pytest.approx(snap["bath_c"], abs=0.01)  # the fallback the warning named
    caps = {c.name: c for c in snap["capabilities"]}
    assert caps["external"].present is False and caps["limits"].present is True


def test_cli_probe_and_show():
    runner = CliRunner()
    unit, url = start_fake("julabo/magio", baudrate=4800)
    with unit:
        res = runner.invoke(app, ["thermostat", "probe", url, "--timeout", "0.2"])
        assert res.exit_code == 0, res.output
        assert "found 4800 baud 7E1: MAGIO MS-1000F 1.6" in res.output
        assert f"{url}?baudrate=4800&framing=7E1" in res.output.replace("\n", "")
        res = runner.invoke(app, ["thermostat", "show", f"{url}?baudrate=4800&min_interval_s=0"])
        assert res.exit_code == 0, res.output
        assert "MAGIO MS-1000F" in res.output and "-50.00 °C" in res.output and "03 REMOTE START" in res.output
    res = runner.invoke(app, ["thermostat", "show", "julabo:///dev/ttyNOPE0"])
    assert res.exit_code == 2 and "does not exist" in res.output
