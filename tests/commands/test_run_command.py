"""``crystalloop run``: a run that fails before its first sample, argument errors, resuming twice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.hardware.base import _BACKENDS, Crystallizer, VirtualClock, register_backend
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import ExperimentStore

_spec = importlib.util.spec_from_file_location("_control_fakes", Path(__file__).parents[1] / "control" / "conftest.py")
_fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fakes)


@pytest.fixture
def recipe(tmp_path):
    p = ThermocycleProfile(40.0, 0.1, 50.0, [Segment(30.0, 0.5)], name="cli-run")
    return p.to_file(tmp_path / "r.yaml")


@pytest.fixture
def dead_backend():
    """A thermostat that never answers: the run fails at its very first exchange."""

    def factory(parsed, clock=None, **kw):
        clock = clock or VirtualClock()
        th = _fakes.FakeThermostat(clock, t0_c=50.0)
        th.gone_at_s = 0.0
        return Crystallizer(url=parsed.url, clock=clock, thermostat=th)

    register_backend("deadfake", factory)
    yield "deadfake://"
    _BACKENDS.pop("deadfake", None)


def test_failure_before_the_first_sample_is_explained(tmp_path, recipe, dead_backend):
    r = CliRunner().invoke(app, ["run", str(recipe), "--backend", dead_backend, "--store", str(tmp_path / "s.db"),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "failed — watchdog: 3 consecutive failed exchanges with thermostat 'fake'" in r.output
    assert "the run ended before its first sample (no plot)" in r.output
    assert "did not answer within 1.0 s" in r.output  # the error events are shown
    assert "nan" not in r.output and "Warning" not in r.output
    assert not (tmp_path / "o").exists()
    runs = ExperimentStore(tmp_path / "s.db").runs()
    assert list(runs["status"]) == ["failed"] and runs["reason"].iloc[0].startswith("watchdog:")


def test_argument_errors_leave_no_run(tmp_path, recipe):
    db = tmp_path / "s.db"
    for args, msg in ((["--backend", "sim://?kinetics=bogus"], "Unknown kinetic set 'bogus'"),
                      (["--image-interval-s", "0"], "error: --image-interval-s must be a finite number > 0 s, got 0.0"),
                      (["--controller", "mpc"], "unknown controller 'mpc'"),
                      (["--safe-state", "off"], "error: --safe-state must be one of hold, stop, got 'off'")):
        r = CliRunner().invoke(app, ["run", str(recipe), "--store", str(db), *args])
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
    hot = ThermocycleProfile(40.0, 0.1, 50.0, [Segment(30.0, 0.5), Segment(95.0, 1.0), Segment(30.0, 0.5)])
    r = CliRunner().invoke(app, ["run", str(hot.to_file(tmp_path / "hot.yaml")), "--store", str(db)])
    assert r.exit_code == 2 and "95" in r.output
    assert not db.exists() or ExperimentStore(db).runs().empty


def test_resume_twice_does_not_fork(tmp_path, recipe):
    from crystalloop.control import run

    db, out = tmp_path / "s.db", tmp_path / "o"

    def ctrl_c(tick):
        if tick["time_s"] >= 600.0:
            raise KeyboardInterrupt

    first = run(recipe, backend="sim://?n_classes=60", store=db, on_tick=ctrl_c)
    assert first.status == "aborted"
    r = CliRunner().invoke(app, ["run", "--resume", str(first.run_id), "--backend", "sim://?n_classes=60",
                                 "--store", str(db), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["run", "--resume", str(first.run_id), "--backend", "sim://?n_classes=60",
                                 "--store", str(db), "--out", str(out)])
    assert r.exit_code == 2
    assert (f"run {first.run_id} was already continued by run {first.run_id + 1} ({first.run_id} -> "
            f"{first.run_id + 1}), which is completed; there is nothing left to resume") in r.output
    runs = ExperimentStore(db).runs()
    assert list(runs["status"]) == ["aborted", "completed"]
    assert runs["meta"].iloc[1]["resumed_from"] == first.run_id
