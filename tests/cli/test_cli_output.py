"""What the command line prints: help without ``<bool>`` placeholders, tables that keep their
columns in narrow terminals, ASCII fallbacks for ``°``/``µ``, and one clear line (exit 2)
when the current directory or an output folder cannot be written."""

from __future__ import annotations

import pytest
import typer
from _cli import ROOT, error_lines, run_cli
from typer.testing import CliRunner

from crystalloop.cli import app
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import ExperimentStore

runner = CliRunner()
DOE = ROOT / "examples" / "doe" / "doe.csv"
HOLDOUT = ROOT / "examples" / "doe" / "holdout.csv"


def _command_paths(cmd, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _command_paths(sub, (*prefix, name))


def test_help_has_no_bool_placeholders():
    paths = list(_command_paths(typer.main.get_command(app)))
    assert len(paths) > 15 and ("twin", "fit") in paths and ("vision", "predict") in paths
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, path
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "--real-time" in res.output and "--help" in res.output and "<float>" in res.output


@pytest.fixture
def store_with_runs(tmp_path):
    path = tmp_path / "p.db"
    with ExperimentStore(path) as s:
        prof = ThermocycleProfile(40.0, 0.1, 60.0, [Segment(20.0, 0.2)])
        for seed in (3, 4):
            rid = s.start_run(prof, backend=f"sim://?seed={seed}", seed=seed, kind="simulation")
            s.log_cqas(rid, {"D50_um": 180.0 + seed, "DoA_pct": 12.0})
            s.finish_run(rid)
        bad = s.start_run(None, backend="julabo:///dev/ttyUSB0")
        s.finish_run(bad, "failed", "Thermostat alarm E14: low level")
    return path


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_runs_keeps_the_id_column_at_any_width(store_with_runs, columns):
    res = runner.invoke(app, ["runs", "--store", str(store_with_runs)], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"3 run(s) in {store_with_runs}"  # the path is never broken
    header = next(line for line in lines if "status" in line)
    assert header.split()[:3] == ["id", "kind", "status"]
    rows = [line.split() for line in lines[1:] if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"] and rows[2][2] == "failed"
    assert "Thermostat alarm E14: low level" in res.output


# --- output encoding ------------------------------------------------------------------------------


def test_help_falls_back_to_ascii(tmp_path):
    utf8 = run_cli(["design", "--help"], cwd=tmp_path, columns=200)
    assert utf8.returncode == 0 and "°C" in utf8.stdout.decode("utf-8")
    res = run_cli(["design", "--help"], cwd=tmp_path, columns=200, encoding="ascii")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode("ascii")  # raises if any non-ASCII byte got through
    assert "Thermostat lower limit, degC." in text and "Traceback" not in res.stderr.decode("ascii")


def test_errors_fall_back_to_ascii(tmp_path, particle_image):
    res = run_cli(["psd", particle_image, "--out", tmp_path / "o"], cwd=tmp_path, encoding="ascii")
    assert res.returncode == 2
    assert error_lines(res.stderr.decode("ascii")) == [
        "error: --pixel-size-um is required: the size of one pixel in um (e.g. --pixel-size-um 1.5)"]


def test_simulate_output_falls_back_to_ascii(tmp_path):
    recipe = ThermocycleProfile(40.0, 0.1, 45.0, [Segment(35.0, 1.0)], name="short").to_file(tmp_path / "r.yaml")
    res = run_cli(["simulate", recipe, "--store", tmp_path / "s.db", "--out", tmp_path / "o", "--no-images"],
                  cwd=tmp_path, encoding="ascii")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode("ascii")
    assert "CQAs - short on 'default' (seed 0)" in out and "D50_um" in out


# --- folders that cannot be written ---------------------------------------------------------------


@pytest.fixture
def ro(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    return d


def _one_unwritable_error(res, path_part: str) -> str:
    errs = error_lines(res.stderr)
    assert res.returncode == 2, res.stderr
    assert len(errs) == 1 and path_part in errs[0], res.stderr
    assert any(reason in errs[0] for reason in ("Read-only file system", "Permission denied", "is writable",
                                                 "read-only")), errs
    assert b"Traceback" not in res.stderr
    return errs[0]


def test_simulate_with_store_elsewhere_in_a_read_only_directory(tmp_path, ro):
    recipe = ThermocycleProfile(40.0, 0.1, 45.0, [Segment(35.0, 1.0)]).to_file(tmp_path / "r.yaml")
    res = run_cli(["simulate", recipe, "--store", tmp_path / "s.db", "--no-images"], cwd=ro, readonly=[ro])
    _one_unwritable_error(res, "out")


def test_run_in_a_read_only_directory(tmp_path, ro):
    recipe = ThermocycleProfile(40.0, 0.1, 45.0, [Segment(35.0, 1.0)]).to_file(tmp_path / "r.yaml")
    res = run_cli(["run", recipe], cwd=ro, readonly=[ro])
    _one_unwritable_error(res, "crystalloop.db")


def test_psd_into_a_read_only_folder(tmp_path, ro, particle_image):
    res = run_cli(["psd", particle_image, "--pixel-size-um", "2", "--out", ro / "psd"], cwd=tmp_path, readonly=[ro])
    _one_unwritable_error(res, str(ro / "psd"))


def test_campaign_into_a_read_only_folder(tmp_path, ro):
    res = run_cli(["campaign", DOE, "--out", ro / "camp", "--store", tmp_path / "c.db", "--rounds", "1",
                   "--batch", "1", "--pop", "8", "--gens", "2", "--splits", "3", "--cycles", "1"],
                  cwd=tmp_path, readonly=[ro])
    _one_unwritable_error(res, str(ro / "camp"))


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin") / "tw"
    res = runner.invoke(app, ["twin", "fit", str(DOE), "--out", str(out), "--grid", "fast", "--families", "svr",
                              "--splits", "5", "--no-augment", "--cqa", "D50", "--cqa", "DoA", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.slow  # fits a twin (about 10 s on an idle 2-core machine)
def test_twin_predict_into_a_read_only_folder(tmp_path, ro, twin_dir):
    res = run_cli(["twin", "predict", twin_dir, HOLDOUT, "--out", ro / "pred.csv"], cwd=tmp_path, readonly=[ro])
    _one_unwritable_error(res, str(ro / "pred.csv"))


@pytest.mark.slow
def test_design_in_a_read_only_directory_with_warnings_on_one_line(ro, twin_dir):
    res = run_cli(["design", twin_dir, "--pop", "8", "--gens", "2", "--cycles", "1"], cwd=ro, readonly=[ro])
    _one_unwritable_error(res, "design")
    stderr = res.stderr.decode()
    # the twin has not seen 1-cycle profiles for every CQA: its warning is one line, without source
    warns = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warns and all("extrapolates" in w for w in warns)
    assert ".py:" not in stderr and "warnings.warn" not in stderr
