import numpy as np
import pandas as pd
import pytest

from crystalloop.control.runner import run, run_status, tracking_metrics
from crystalloop.control.safety import Watchdog
from crystalloop.errors import BackendError, ConfigError, SafetyError
from crystalloop.hardware.base import ThermostatLimits
from crystalloop.profiles import Segment, ThermocycleProfile
from crystalloop.store import ExperimentStore


@pytest.fixture
def store(tmp_path):
    return ExperimentStore(tmp_path / "lab.db")


def _writes_ok(writes, lim):
    for (t0, v0), (t1, v1) in zip(writes, writes[1:], strict=False):
        assert lim.min_c - 1e-9 <= v1 <= lim.max_c + 1e-9
        assert abs(v1 - v0) <= lim.max_rate_c_min * (t1 - t0) / 60.0 + 1e-9


def test_completed_run_logs_every_channel(crystallizer, short_recipe, store):
    res = run(short_recipe, crystallizer=crystallizer, controller="track", store=store,
              sample_interval_s=120.0, control_interval_s=60.0, image_interval_s=1800.0)
    assert res.status == "completed" and res.reason is None
    info = store.run(res.run_id)
    assert info["status"] == "completed" and info["kind"] == "track"
    assert info["meta"]["controller"] == "track"
    wide = store.samples(res.run_id, wide=True)
    for ch in ("T_set_c", "T_ref_c", "T_jacket_c", "T_reactor_c", "counts"):
        assert ch in wide.columns
    # memory and store agree on every sample
    long = store.samples(res.run_id)
    assert len(long) == len(res.samples)
    assert np.allclose(np.sort(long["value"]), np.sort(res.samples["value"]))
    assert res.timeseries["time_s"].max() == pytest.approx(short_recipe.batch_time_s, abs=60.0)
    # images: every 30 min, saved as PNG and logged
    imgs = store.images(res.run_id)
    assert len(imgs) == len(res.images) == int(short_recipe.batch_time_s // 1800) + 1
    assert all(p.exists() and p.suffix == ".png" for p in res.images)
    # plain tracking: the setpoint is the recipe
    ts = res.timeseries.dropna(subset=["T_set_c", "T_ref_c"])
    assert np.allclose(ts["T_set_c"], ts["T_ref_c"], atol=1e-6)


def test_commands_stay_within_device_and_recipe_limits(clock, make_thermostat, short_recipe, store):
    from crystalloop.hardware.base import Crystallizer

    th = make_thermostat(clock, limits=ThermostatLimits(20.0, 65.0, 2.0))
    cz = Crystallizer("fake://", clock, th)
    res = run(short_recipe, crystallizer=cz, controller="pid", store=store, recipe_margin_c=3.0,
              controller_options={"kp": 8.0, "max_correction_c": 30.0})
    assert res.status == "completed"
    lim = ThermostatLimits(27.0, 63.0, 2.0)  # recipe 30..60 ± 3, device rate 2 °C/min
    _writes_ok([(0.0, 60.0)] + th.writes, lim)
    sp = np.array([w[1] for w in th.writes])
    assert sp.min() < 29.0  # the PID overdrives the jacket below the recipe, yet stays inside 27 °C


def test_watchdog_failure_goes_safe_marks_failed_and_keeps_samples(crystallizer, thermostat, short_recipe, store):
    thermostat.process_fails_at_s = 3600.0  # the Pt100 read times out from 1 h on; the rest works
    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="hold",
              watchdog=Watchdog(max_failures=3, backoff_s=1.0))
    assert res.status == "failed"
    info = store.run(res.run_id)
    assert info["status"] == "failed" and "watchdog" in info["reason"]
    assert "3 consecutive failed exchanges" in info["reason"]
    # every sample read before the failure is in the store
    long = store.samples(res.run_id)
    assert long["time_s"].max() == pytest.approx(3600.0, abs=1.0)  # the bath read of the failing tick
    assert len(long) == len(res.samples)
    assert long[long.channel == "T_reactor_c"]["time_s"].max() == pytest.approx(3540.0)
    # safe state: the last setpoint the device confirmed was re-sent
    assert thermostat.writes[-1][1] == pytest.approx(thermostat.writes[-2][1])
    ev = store.events(res.run_id)
    assert ev["message"].str.contains("the last setpoint the device confirmed").any()


def test_device_gone_with_stop_safe_state(crystallizer, thermostat, short_recipe, store):
    thermostat.gone_at_s = 1000.0
    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="stop",
              watchdog=Watchdog(max_failures=2, backoff_s=5.0))
    assert res.status == "failed"
    assert store.events(res.run_id)["message"].str.contains("could not stop the circulator").any()


def test_keyboard_interrupt_stops_safely(crystallizer, thermostat, short_recipe, store):
    def ctrl_c(tick):
        if tick["time_s"] >= 1200.0:
            raise KeyboardInterrupt

    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="stop", on_tick=ctrl_c)
    assert res.status == "aborted"
    assert thermostat.running is False
    info = store.run(res.run_id)
    assert info["status"] == "aborted" and "KeyboardInterrupt" in info["reason"]
    assert store.samples(res.run_id)["time_s"].max() == pytest.approx(1200.0)


def test_resume_continues_from_last_logged_time(crystallizer, short_recipe, store):
    def ctrl_c(tick):
        if tick["time_s"] >= 1800.0:
            raise KeyboardInterrupt

    first = run(short_recipe, crystallizer=crystallizer, store=store, on_tick=ctrl_c)
    st = run_status(store, first.run_id)
    assert st["status"] == "aborted" and st["last_time_s"] == pytest.approx(1800.0)
    assert 0.1 < st["fraction_done"] < 0.2
    second = run(crystallizer=crystallizer, store=store, resume_run_id=first.run_id)
    assert second.status == "completed" and second.run_id != first.run_id
    assert store.run(second.run_id)["meta"]["resumed_from"] == first.run_id
    s2 = store.samples(second.run_id)
    assert s2["time_s"].min() == pytest.approx(1800.0, abs=1.0)
    assert s2["time_s"].max() == pytest.approx(short_recipe.batch_time_s, abs=60.0)
    with pytest.raises(ConfigError, match="is completed; only an interrupted, failed or aborted run"):
        run(crystallizer=crystallizer, store=store, resume_run_id=second.run_id)


def test_dnc_runs_on_counts(crystallizer, short_recipe, store):
    res = run(short_recipe, crystallizer=crystallizer, controller="dnc", store=store,
              controller_options={"counts_setpoint": 150.0, "band": 20.0, "final_hold_min": 10.0,
                                  "max_duration_min": 600.0})
    assert res.status == "completed"
    ts = res.timeseries
    assert ts["counts"].notna().sum() > 10
    assert ts["T_set_c"].min() >= short_recipe.end_temperature_c - 1e-9
    assert ts["T_set_c"].max() <= short_recipe.t_start_c + 1e-9


# ------------------------------------------------------------------ bad input


def test_unknown_backend_scheme(short_recipe):
    with pytest.raises(BackendError, match=r"Unknown backend URL scheme 'foo'.*expected one of"):
        run(short_recipe, backend="foo://bar")


def test_malformed_backend_url(short_recipe):
    with pytest.raises(BackendError, match="malformed"):
        run(short_recipe, backend="julabo")


def test_recipe_incompatible_with_device_limits(clock, make_thermostat, short_recipe, store):
    from crystalloop.hardware.base import Crystallizer

    th = make_thermostat(clock, limits=ThermostatLimits(35.0, 80.0, 0.5))
    cz = Crystallizer("fake://", clock, th)
    with pytest.raises(SafetyError, match=r"recipe 'short' is incompatible with the limits: segment 3 target 30 °C "
                                          r"is below the lower limit 35 °C .*segment 2 rate 0.8 °C/min exceeds "
                                          r"the ramp limit 0.5 °C/min of thermostat 'fake'"):
        run(short_recipe, crystallizer=cz, store=store)
    assert th.writes == [] and store.runs().empty


def test_setpoint_out_of_range_in_user_limits(crystallizer, store):
    hot = ThermocycleProfile(40, 0.1, 95.0, [Segment(60.0, 0.5)])
    with pytest.raises(SafetyError, match=r"start temperature 95 °C exceeds the upper limit 80 °C"):
        run(hot, crystallizer=crystallizer, store=store)


@pytest.mark.parametrize("kw, match", [
    (dict(controller="bangbang"), "unknown controller 'bangbang'; expected one of track, pid, nmpc, dnc"),
    (dict(sample_interval_s=0.0), "sample_interval_s must be a finite number > 0 s"),
    (dict(controller="dnc"), "needs counts_setpoint="),
    (dict(controller="track", controller_options={"kp": 1}), "takes no options"),
])
def test_bad_arguments(crystallizer, short_recipe, kw, match):
    with pytest.raises(ConfigError, match=match):
        run(short_recipe, crystallizer=crystallizer, **kw)


def test_nmpc_needs_a_model_on_real_hardware(crystallizer, short_recipe):
    with pytest.raises(ConfigError, match="needs a thermal model"):
        run(short_recipe, crystallizer=crystallizer, controller="nmpc")


def test_tracking_metrics_on_known_series(short_recipe):
    t = np.unique(np.concatenate([np.arange(0.0, short_recipe.batch_time_s + 1, 60.0), short_recipe.knots[0]]))
    ref = short_recipe.setpoint_at(t)
    ts = pd.DataFrame({"time_s": t, "T_reactor_c": ref + 0.5})
    m = tracking_metrics(ts, short_recipe)
    assert m["rms_error_c"] == pytest.approx(0.5)
    assert m["overshoot_c"] == pytest.approx(0.5)  # 0.5 °C past the heating target of 55 °C


def test_camera_faults_are_logged_and_the_run_goes_on(crystallizer, short_recipe, store):
    def broken():
        raise RuntimeError("frame buffer overrun")

    crystallizer.camera.grab = broken
    res = run(short_recipe, crystallizer=crystallizer, store=store, image_interval_s=600.0,
              watchdog=Watchdog(max_failures=2))
    assert res.status == "completed" and res.images == []
    msgs = store.events(res.run_id)["message"]
    assert msgs.str.contains("frame buffer overrun").sum() == 2
    assert msgs.str.contains("imaging stopped after 2 consecutive camera failures").any()


def test_same_runner_on_a_real_clock(short_recipe, make_thermostat):
    """The runner code path on wall-clock time (short intervals; no timing asserted)."""
    from crystalloop.hardware.base import Crystallizer, RealClock

    clock = RealClock()
    th = make_thermostat(clock)
    res = run(short_recipe, crystallizer=Crystallizer("fake://", clock, th), sample_interval_s=0.05,
              duration_s=0.25)
    assert res.status == "completed"
    t = res.timeseries["time_s"].to_numpy()
    assert len(t) >= 2 and np.all(np.diff(t) > 0) and t.max() >= 0.2


def test_crash_mid_run_is_reported_and_resumable(tmp_path, short_recipe):
    """A process killed mid-run (os._exit: no cleanup) leaves an 'interrupted' run that resumes."""
    import subprocess
    import sys

    db = tmp_path / "crash.db"
    recipe = short_recipe.to_file(tmp_path / "r.yaml")
    code = f"""
import os
from crystalloop.control.runner import run
def crash(tick):
    if tick["time_s"] >= 1800:
        os._exit(1)
run({str(recipe)!r}, backend="sim://?seed=1&n_classes=60", store={str(db)!r}, on_tick=crash)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    store = ExperimentStore(db)  # opening recovers runs whose writer died
    st = run_status(store, 1)
    assert st["status"] == "interrupted" and "ended without finishing" in st["reason"]
    assert st["last_time_s"] == pytest.approx(1800.0)
    assert st["controller"] == "track" and st["recipe"] == short_recipe
    res = run(backend="sim://?seed=1&n_classes=60", store=store, resume_run_id=1)
    assert res.status == "completed"
    assert store.samples(res.run_id)["time_s"].min() == pytest.approx(1800.0)
