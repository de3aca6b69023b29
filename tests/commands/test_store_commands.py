"""Tests of the ``crystalloop runs`` and ``crystalloop export`` commands."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import ExperimentStore


@pytest.fixture
def app():
    from crystalloop.cli import app as crystalloop_app

    return crystalloop_app


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "p.db"
    with ExperimentStore(path) as s:
        prof = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, 0.2)])
        ok = s.start_run(prof, backend="sim://?seed=3", seed=3, kind="simulation")
        s.log_samples(ok, [(0.0, "T_reactor_c", 60.0), (60.0, "T_reactor_c", 59.8), (60.0, "counts", 12.0)])
        s.log_cqas(ok, {"D50_um": 182.345, "DoA_pct": 12.0})
        s.finish_run(ok)
        bad = s.start_run(None, backend="julabo:///dev/ttyUSB0")
        s.finish_run(bad, "failed", "Thermostat alarm E14: low level")
    return path


def test_runs_lists_every_run(app, project):
    res = CliRunner().invoke(app, ["runs", "--store", str(project)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "2 run(s) in" in res.output and "completed" in res.output and "failed" in res.output
    assert "D50=182.3" in res.output and "DoA=12" in res.output
    assert "Thermostat alarm E14: low level" in res.output and "sim://?seed=3" in res.output
    res = CliRunner().invoke(app, ["runs", "--store", str(project), "--status", "failed"], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "1 run(s)" in res.output and "completed" not in res.output
    assert "run 2 (failed): Thermostat alarm E14" in res.output  # narrow terminal: reasons below the table


def test_runs_default_store_from_environment(app, project):
    res = CliRunner().invoke(app, ["runs"], env={"CRYSTALLOOP_STORE": str(project)})
    assert res.exit_code == 0 and "2 run(s)" in res.output


def test_runs_missing_store_is_a_clean_error(app, tmp_path):
    res = CliRunner().invoke(app, ["runs", "--store", str(tmp_path / "nope.db")])
    assert res.exit_code == 2  # an input error: the path the user gave
    assert "error: No experiment store at" in res.output and "nope.db: the file does not exist" in res.output
    assert "create=False" not in res.output
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_tables_and_plot(app, project, tmp_path, fmt):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["export", "1", "--out", str(out), "--format", fmt, "--store", str(project)])
    assert res.exit_code == 0, res.output
    d = out / "run_1"
    assert (d / "samples.png").stat().st_size > 1000
    wide = pd.read_csv(d / "samples_wide.csv") if fmt == "csv" else pd.read_parquet(d / "samples_wide.parquet")
    assert wide.columns.tolist() == ["time_s", "T_reactor_c", "counts"]
    assert wide["T_reactor_c"].tolist() == [60.0, 59.8]
    assert json.loads((d / "run.json").read_text())["backend"] == "sim://?seed=3"


def test_export_errors(app, project, tmp_path):
    res = CliRunner().invoke(app, ["export", "7", "--store", str(project), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error: Run 7 not found in experiment store" in res.output
    res = CliRunner().invoke(app, ["export", "1", "--store", str(project), "-f", "xlsx", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "export format must be 'csv' or 'parquet', got 'xlsx'" in res.output


def test_commands_are_registered_in_the_main_cli():
    from crystalloop.cli import app as main_app

    res = CliRunner().invoke(main_app, ["--help"])
    assert res.exit_code == 0 and "runs" in res.output and "export" in res.output
