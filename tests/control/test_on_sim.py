"""Controllers and runner on the virtual crystallizer (sim://, VirtualClock)."""

import pytest
from typer.testing import CliRunner

from crystalloop.control.runner import run
from crystalloop.hardware import connect
from crystalloop.profiles import Segment, ThermocycleProfile


@pytest.fixture(scope="module")
def cycle():
    return ThermocycleProfile(40.0, 0.1, 50.0, [Segment(35.0, 0.3), Segment(45.0, 0.8, 5.0), Segment(30.0, 0.3)],
                              name="one-cycle")


@pytest.fixture(scope="module")
def results(cycle):
    return {c: run(cycle, backend="sim://?seed=4&n_classes=80", controller=c) for c in ("track", "pid", "nmpc")}


def test_pid_and_nmpc_track_the_reactor_better_than_plain_tracking(results):
    m = {c: r.metrics() for c, r in results.items()}
    assert all(r.status == "completed" for r in results.values())
    assert m["track"]["rms_error_c"] > 0.5
    assert m["pid"]["rms_error_c"] < 0.5 * m["track"]["rms_error_c"]
    assert m["nmpc"]["rms_error_c"] < 0.25 * m["track"]["rms_error_c"]
    assert m["nmpc"]["overshoot_c"] < 0.5
    assert results["nmpc"].solve_times_s and not results["nmpc"].events["message"].str.contains("fell back").any()


def test_sim_run_reports_ground_truth_cqas(results, cycle):
    cq = results["track"].cqas
    assert {"D50_um", "yield_pct"} <= set(cq)
    assert cq["batch_time_min"] == pytest.approx(cycle.batch_time_min, abs=1.5)


def test_ctrl_c_on_sim_stops_the_circulator(cycle, tmp_path):
    from crystalloop.store import ExperimentStore

    cz = connect("sim://?seed=1&n_classes=60", recipe=cycle)

    def ctrl_c(tick):
        if tick["time_s"] >= 900:
            raise KeyboardInterrupt

    db = ExperimentStore(tmp_path / "s.db")
    res = run(cycle, crystallizer=cz, store=db, safe_state="stop", on_tick=ctrl_c)
    assert res.status == "aborted" and cz.plant.running is False
    assert db.run(res.run_id)["status"] == "aborted"
    # the bath drifts towards ambient once stopped: the setpoint no longer drives it
    cz.clock.sleep(3600)
    assert not cz.thermostat.status().running


def test_run_command_end_to_end(cycle, tmp_path):
    from crystalloop.cli import app

    recipe = cycle.to_file(tmp_path / "r.yaml")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(recipe), "--backend", "sim://?seed=2&n_classes=60", "--controller",
                                 "pid", "--store", str(tmp_path / "lab.db"), "--out", str(out),
                                 "--sample-interval-s", "120"])
    assert r.exit_code == 0, r.output
    assert "completed" in r.output and "reactor tracking: RMS" in r.output
    assert (out / "run_1.png").stat().st_size > 10_000


def test_run_command_bad_backend(cycle, tmp_path):
    from crystalloop.cli import app

    recipe = cycle.to_file(tmp_path / "r.yaml")
    r = CliRunner().invoke(app, ["run", str(recipe), "--backend", "foo://x", "--store", str(tmp_path / "lab.db")])
    assert r.exit_code == 2
    assert "Unknown backend URL scheme 'foo'" in r.output


def test_missing_serial_port_is_a_clear_error(cycle):
    from crystalloop.errors import CrystalloopError

    with pytest.raises(CrystalloopError, match="/dev/ttyNOPE"):
        run(cycle, backend="julabo:///dev/ttyNOPE")


@pytest.mark.slow
def test_dnc_vs_linear_cooling_on_sim():
    lin = ThermocycleProfile(40.0, 0.1, 44.0, [Segment(10.0, 0.3, 30)])
    with connect("sim://?seed=1", recipe=lin) as cz:
        n0 = cz.counter.read().value
    out = {}
    for name, ctrl, opts in [("linear", "track", {}),
                             ("dnc", "dnc", dict(counts_setpoint=8 * n0, band=1.6 * n0, t_max_c=48.0,
                                                 heating_rate_c_min=0.5, cooling_rate_c_min=0.3, filter_window=1,
                                                 max_duration_min=1500))]:
        cz = connect("sim://?seed=1", recipe=lin)
        r = run(lin, crystallizer=cz, controller=ctrl, controller_options=opts, recipe_margin_c=10)
        psd = cz.ground_truth.psd()
        out[name] = (r, float(psd.loc[psd["size_upper_um"] <= 20.0, "Q3"].max()))
    assert out["dnc"][0].timeseries["T_reactor_c"].iloc[-1] == pytest.approx(10.0, abs=0.5)
    assert out["dnc"][1] < out["linear"][1]  # fewer fines
    assert (out["dnc"][0].timeseries["counts"] > 8 * n0 * 1.2).any()  # the band was left and heating acted
