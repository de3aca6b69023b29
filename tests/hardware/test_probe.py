"""Line-settings probe, read-only snapshot and the ``crystalloop thermostat`` command, over a pty."""

import pytest
from thermostat_fakes import FakeHuber, FakeJulabo, FakeLauda
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.errors import BackendError, CapabilityWarning, DeviceError
from crystalloop.hardware.base import VirtualClock
from crystalloop.hardware.probe import probe_line_settings, snapshot


def test_probe_finds_4800_baud_julabo_and_keeps_other_options():
    clock = VirtualClock()
    with FakeJulabo(clock=clock, baudrate=4800) as fake:
        res = probe_line_settings(f"julabo://{fake.url}?name=bath&baudrate=9600", clock=clock, timeout_s=0.2)
    assert res.url == f"julabo://{fake.url}?name=bath&baudrate=4800&framing=7E1"
    assert res.line_settings == "4800 baud 7E1" and res.model == "FP50-HE"
    assert res.tried == [("9600 baud 8N1", "ProtocolError")]


def test_probe_reports_every_attempt_when_nothing_answers():
    clock = VirtualClock()
    with FakeLauda(clock=clock, baudrate=1200) as fake:
        with pytest.raises(DeviceError, match=r"No line setting gave a valid reply from LAUDA .*tried 9600 baud 8N1: ProtocolError; 19200 baud 8N1: ProtocolError; 4800 baud 8N1: ProtocolError; 2400 baud 8N1: ProtocolError"):
            probe_line_settings(f"lauda://{fake.url}", clock=clock, timeout_s=0.2)
    with pytest.raises(BackendError, match="Cannot probe 'sim://'"):
        probe_line_settings("sim://")


def test_snapshot_reads_without_writing():
    clock = VirtualClock()
    with FakeHuber(clock=clock) as fake:
        fake.process_sensor = False
        with pytest.warns(CapabilityWarning, match=r"process \(external Pt100\) temperature \(07\) not available on "
                                                   r"this unit \(no sensor connected \(-151.00 °C\)\); T_reactor_c is "
                                                   r"recorded from the internal sensor"):
            snap = snapshot(f"huber://{fake.url}?timeout_s=0.2", clock=clock)
        writes = [c for c in fake.received if not c.endswith(b"****")]
    assert writes == []
    assert (snap["vendor"], snap["min_c"], snap["max_c"], snap["setpoint_c"]) == ("Huber", -40.0, 200.0, 20.0)
    assert snap["bath_c"] == pytest.approx(20.0, abs=0.01) and snap["running"] is True
    assert snap["process_c"] == pytest.approx(snap["bath_c"], abs=0.01)  # the fallback the warning named
    caps = {c.name: c for c in snap["capabilities"]}
    assert caps["external"].present is False and caps["limits"].present is True


def test_cli_probe_and_show():
    runner = CliRunner()
    with FakeJulabo(baudrate=4800) as fake:
        res = runner.invoke(app, ["thermostat", "probe", f"julabo://{fake.url}", "--timeout", "0.2"])
        assert res.exit_code == 0, res.output
        assert "found 4800 baud 7E1: FP50-HE 2.0" in res.output
        assert f"julabo://{fake.url}?baudrate=4800&framing=7E1" in res.output.replace("\n", "")
        res = runner.invoke(app, ["thermostat", "show", f"julabo://{fake.url}?baudrate=4800&min_interval_s=0"])
        assert res.exit_code == 0, res.output
        assert "FP50-HE" in res.output and "-20.00 °C" in res.output and "03 REMOTE START" in res.output
    res = runner.invoke(app, ["thermostat", "show", "julabo:///dev/ttyNOPE0"])
    assert res.exit_code == 2 and "does not exist" in res.output
