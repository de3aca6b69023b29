"""Traces: every exchange written as plain text, replayed against the driver; a trace is a test."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.errors import BackendError, ConfigError, DeviceTimeout
from crystalloop.hardware.base import VirtualClock, connect
from crystalloop.hardware.replay import replay_trace
from crystalloop.hardware.testing import start_fake
from crystalloop.hardware.trace import (
    decode_bytes,
    encode_bytes,
    read_trace,
    with_trace,
)

TRACES = Path(__file__).parent / "traces"


@pytest.mark.parametrize("brand", ["julabo", "huber", "lauda"])
def test_recorded_trace_of_each_brand_replays_identically(brand):
    """Recorded with ``crystalloop run --trace`` on the JULABO F-series, Huber CC and LAUDA RE fakes."""
    sessions = read_trace(TRACES / f"{brand}.trace")
    assert len(sessions) == 1 and sessions[0].url.startswith(f"{brand}:///dev/ttyUSB0")
    kinds = [e.kind for e in sessions[0].events]
    assert kinds[0] == "CALL" and {"OUT", "IN", "RET"} <= set(kinds)
    res = replay_trace(TRACES / f"{brand}.trace")
    assert res.ok, res.differences
    assert res.sessions == 1 and res.calls >= 10
    assert res.exchanges == kinds.count("OUT")


def test_replay_reports_where_the_driver_behaves_differently(tmp_path):
    text = (TRACES / "lauda.trace").read_text(encoding="ascii").splitlines()
    i = next(n for n, line in enumerate(text) if line.endswith("OUT IN_PV_00\\r\\n") and n > 40)
    text[i + 1] = text[i + 1].split(" IN ")[0] + " IN 099.99\\r\\n"  # the unit now reports another bath value
    bad = tmp_path / "bad.trace"
    bad.write_text("\n".join(text) + "\n", encoding="ascii")
    res = replay_trace(bad)
    assert not res.ok and len(res.differences) == 1
    assert "read_bath gave RET 99.99, the trace has RET" in res.differences[0]
    out = CliRunner().invoke(app, ["thermostat", "replay", str(bad)])
    assert out.exit_code == 1
    assert "error: the driver no longer behaves as recorded in" in out.output and "difference: " in out.output
    # a command the driver no longer sends is named with its trace line
    text = (TRACES / "julabo.trace").read_text(encoding="ascii").replace("OUT in_pv_02\\r", "OUT in_pv_09\\r", 1)
    bad.write_text(text, encoding="ascii")
    res = replay_trace(bad)
    assert any("the driver wrote b'in_pv_02\\r', the trace has b'in_pv_09\\r'" in d for d in res.differences)


def test_a_timeout_is_recorded_and_replays_as_the_same_error(tmp_path):
    clock = VirtualClock()
    trace = tmp_path / "t.trace"
    unit, url = start_fake("julabo/magio", clock=clock)
    with unit, connect(f"{url}?timeout_s=0.2&trace={trace}", clock=clock) as cz:
        cz.thermostat.set_setpoint(30.0)
        unit.inject("silent", when="in_pv_00")
        with pytest.raises(DeviceTimeout):
            cz.thermostat.read_bath()
        assert cz.thermostat.read_bath().value > 0
    lines = trace.read_text(encoding="ascii").splitlines()
    assert any(line.endswith(" IN TIMEOUT") for line in lines)
    assert any(" ERR DeviceTimeout: JULABO on " in line for line in lines)
    assert any(line.endswith("CALL set_setpoint 30.0") for line in lines)
    res = replay_trace(trace)
    assert res.ok, res.differences
    assert res.calls == 5  # initialize, set_setpoint, the failed and the good read_bath, close


@given(st.binary(max_size=64))
def test_bytes_encoding_round_trips_and_stays_one_printable_line(data):
    text = encode_bytes(data)
    assert decode_bytes(text) == data
    assert "\n" not in text and "\r" not in text and text.isascii() and text.isprintable()


@pytest.mark.parametrize("content, match", [
    ("", "is empty"),
    ("0.1 OUT x\n", "expected the header '# crystalloop thermostat trace v1'"),
    ("# crystalloop thermostat trace v1\n# url: lauda://x\n0.1 SEND x\n", r":3: malformed trace line '0.1 SEND x'"),
    ("# crystalloop thermostat trace v1\n0.1 OUT x\n", "trace session has no '# url:' line"),
])
def test_malformed_traces_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "x.trace"
    path.write_text(content, encoding="ascii")
    with pytest.raises(ConfigError, match=match):
        read_trace(path)


def test_trace_needs_a_serial_backend(tmp_path):
    with pytest.raises(BackendError, match=r"--trace records serial exchanges: it needs a serial thermostat backend "
                                           r"\(julabo://, huber://, lauda://\), got 'sim://'"):
        with_trace("sim://", tmp_path / "t.trace")
    assert with_trace("lauda://COM3?name=x", "/tmp/a b.trace") == "lauda://COM3?name=x&trace=/tmp/a%20b.trace"
    with pytest.raises(ConfigError, match="Trace file .*nothere.trace does not exist"):
        replay_trace(tmp_path / "nothere.trace")
