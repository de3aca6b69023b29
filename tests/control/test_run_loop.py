"""The run loop step by step, argument checks before a run exists, and every way a run can end.

Faults are injected into the control tests' fake thermostat (``conftest.FakeThermostat``, a
thermal model on a virtual clock) and into a store that refuses writes like a full disk.
"""

from __future__ import annotations

import pytest

from crystalloop.control import (
    Controller,
    ControllerBase,
    RunLoop,
    RunOptions,
    continuation_of,
    run,
)
from crystalloop.control.pid import Observation, ProfileTracker
from crystalloop.errors import (
    BackendError,
    ConfigError,
    DeviceAlarm,
    KineticsError,
    SafetyError,
    StoreError,
)
from crystalloop.hardware.base import Crystallizer, ThermostatLimits
from crystalloop.store import ExperimentStore


@pytest.fixture
def store(tmp_path):
    return ExperimentStore(tmp_path / "lab.db")


# ------------------------------------------------------------------ options and protocol
@pytest.mark.parametrize(("field", "value", "match"), [
    ("controller", "bogus", "unknown controller 'bogus'; expected one of track, pid, nmpc, dnc, ssc"),
    ("sample_interval_s", 0, "sample_interval_s must be a finite number > 0 s, got 0"),
    ("image_interval_s", -60.0, "image_interval_s must be a finite number > 0 s, got -60.0"),
    ("control_interval_s", float("nan"), "control_interval_s must be a finite number > 0 s, got nan"),
    ("safe_state", "panic", "safe_state must be one of hold, stop, got 'panic'"),
    ("counts_from", "fbrm", "counts_from must be one of counter, camera, got 'fbrm'"),
    ("recipe_margin_c", -1.0, "recipe_margin_c must be a finite number >= 0 °C, got -1.0"),
    ("limits", (0, 50), "limits must be a ThermostatLimits, got tuple"),
    ("commit_interval_s", -1, "commit_interval_s must be a finite number >= 0 s, got -1"),
])
def test_run_options_refuse_bad_values(field, value, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        RunOptions(**{field: value})


def test_run_options_defaults_and_copies():
    o = RunOptions()
    assert o.controller_name == "track" and o.control_period_s == 60.0
    o2 = o.with_(sample_interval_s=30.0, control_interval_s=10.0)
    assert (o2.sample_interval_s, o2.control_period_s, o.sample_interval_s) == (30.0, 10.0, 60.0)
    with pytest.raises(ConfigError, match=r"unknown run option\(s\) \['sample_interval'\]"):
        o.with_(sample_interval=30.0)


def test_every_shipped_controller_implements_the_protocol(short_recipe):
    from crystalloop.control import make_controller
    from crystalloop.hardware.sim.thermal import ThermalParams

    built = [make_controller("track", short_recipe), make_controller("pid", short_recipe),
             make_controller("nmpc", short_recipe, model=ThermalParams()),
             make_controller("dnc", short_recipe, counts_setpoint=200.0),
             make_controller("ssc", short_recipe, solubility=lambda t: 0.01 * t, delta_c_setpoint=0.002)]
    for c in built:
        assert isinstance(c, Controller), type(c).__name__
        assert set(c.measurements) <= {"counts", "conc_kg_kg"}
        assert list(c.solve_times_s) == [] and c.on_event is None
    assert [c.name for c in built] == ["track", "pid", "nmpc", "dnc", "ssc"]
    assert built[3].measurements == ("counts",) and built[4].measurements == ("conc_kg_kg",)


def test_an_object_without_the_protocol_is_refused_by_name():
    class Half:
        name = "half"

        def setpoint(self, obs):
            return 20.0

    with pytest.raises(ConfigError, match=r"Half lacks \['measurements', 'on_event', 'duration_s', 'solve_times_s', "
                                          r"'reset', 'reference', 'finished'\]"):
        RunOptions(controller=Half())


def test_a_custom_controller_on_the_base_class_runs(crystallizer, thermostat, store):
    class Hold(ControllerBase):
        name = "hold25"
        duration_s = 1800.0

        def reset(self, obs):
            self.events = []

        def reference(self, t_s):
            return 25.0

        def setpoint(self, obs):
            self._emit(obs.time_s, "info", "step") if obs.time_s == 0 else None
            return 25.0

        def finished(self, obs):
            return False

    res = run(None, crystallizer=crystallizer, store=store, controller=Hold(), limits=ThermostatLimits(0, 70, 5))
    assert res.status == "completed" and res.controller == "hold25"
    assert store.run(res.run_id)["kind"] == "hold25"
    assert thermostat.writes[-1][1] == pytest.approx(25.0)
    assert "step" in list(res.events["message"])


# ------------------------------------------------------------------ nothing stored for bad arguments
def test_argument_errors_create_no_run(crystallizer, short_recipe, store, tmp_path, clock, make_thermostat):
    with pytest.raises(ConfigError, match="unknown controller"):
        run(short_recipe, crystallizer=crystallizer, store=store, controller="bogus")
    with pytest.raises(ConfigError, match="image_interval_s must be a finite number > 0 s, got 0"):
        run(short_recipe, crystallizer=crystallizer, store=store, image_interval_s=0)
    with pytest.raises(KineticsError, match="bogus"):
        run(short_recipe, backend="sim://?kinetics=bogus", store=store)
    with pytest.raises(BackendError, match="malformed"):
        run(short_recipe, backend="not a url", store=store)
    cold = Crystallizer("fake://", clock, make_thermostat(clock, limits=ThermostatLimits(0.0, 50.0)))
    with pytest.raises(SafetyError, match="60"):  # the recipe starts at 60 °C
        run(short_recipe, crystallizer=cold, store=store)
    with pytest.raises(ConfigError, match="needs a concentration sensor"):
        run(short_recipe, crystallizer=crystallizer, store=store, controller="ssc",
            controller_options={"solubility": lambda t: 0.01 * t, "delta_c_setpoint": 0.002})
    assert store.runs().empty
    assert not cold.thermostat.writes and not crystallizer.thermostat.writes


# ------------------------------------------------------------------ the steps one by one
def test_samples_are_committed_in_batches_on_a_virtual_clock(crystallizer, short_recipe, store):
    calls = []

    class Counting:
        path = store.path

        def __getattr__(self, name):
            fn = getattr(store, name)
            if name == "log_samples":
                def wrapped(*a, **kw):
                    calls.append(len(a[1]))
                    return fn(*a, **kw)
                return wrapped
            return fn

    res = run(short_recipe, crystallizer=crystallizer, store=Counting(), sample_interval_s=60.0, commit_interval_s=1.0)
    assert res.status == "completed" and sum(calls) == len(res.samples) == len(store.samples(res.run_id))
    assert len(calls) < 10 < len(res.timeseries)  # a few commits, not one per instant
    calls.clear()
    res = run(short_recipe, crystallizer=crystallizer, store=Counting(), sample_interval_s=600.0)
    assert len(calls) == len(res.timeseries) + 1  # the default: one commit per instant (+ the readings at start)


def test_run_loop_steps(crystallizer, thermostat, short_recipe, store, clock):
    loop = RunLoop(crystallizer, short_recipe, RunOptions(sample_interval_s=600.0, control_interval_s=300.0),
                   store=store)
    loop.prepare()
    assert thermostat.exchanges == 0 and store.runs().empty  # prepare() talks to nothing
    assert isinstance(loop.controller, ProfileTracker) and loop.end_s == short_recipe.batch_time_s
    run_id = loop.open_run()
    assert store.run(run_id)["status"] == "running" and thermostat.exchanges == 0
    obs = loop.start()
    assert isinstance(obs, Observation) and obs.time_s == 0.0 and obs.T_set_c == 60.0
    assert set(store.samples(run_id)["channel"]) == {"T_jacket_c", "T_reactor_c"}
    assert loop.tick() is False  # t = 0: control and sampling both due
    assert thermostat.writes == [] and loop.latest["T_set_c"] == 60.0  # already at the recipe's start
    assert loop.next_ctrl == 300.0 and loop.next_sample == 600.0
    loop.wait()
    assert clock.now() == 300.0
    loop.tick()  # control only: the first cooling setpoint, no sensor sample
    assert thermostat.writes == [(300.0, pytest.approx(60.0 - 0.3 * 5))]
    assert len(store.samples(run_id, channels="counts")) == 1
    while not loop.tick():
        loop.wait()
    assert clock.now() == pytest.approx(short_recipe.batch_time_s)
    res = loop.finish()
    assert res.status == "completed" and store.run(run_id)["status"] == "completed"
    ref = res.timeseries.dropna(subset=["T_ref_c"])["time_s"]  # one control instant every 300 s
    assert list(ref) == [300.0 * k for k in range(int(short_recipe.batch_time_s // 300) + 1)]


# ------------------------------------------------------------------ every way a run can end
class _Ctrl(ProfileTracker):
    """Tracking that raises at a chosen time."""

    def __init__(self, profile, at_s, exc):
        super().__init__(profile)
        self.at_s, self.exc = at_s, exc

    def setpoint(self, obs):
        if obs.time_s >= self.at_s:
            raise self.exc
        return super().setpoint(obs)


class _FullDisk:
    """An ExperimentStore whose writes fail like a full disk from the ``fail_from``-th sample batch."""

    def __init__(self, db, fail_from, recovers):
        self.db, self.fail_from, self.recovers, self.n = db, fail_from, recovers, 0
        self.path = db.path
        self.failed = False

    def start_run(self, *a, **kw):
        return self.db.start_run(*a, **kw)

    def _maybe(self, name, *a, **kw):
        if self.failed and not self.recovers:
            raise StoreError(f"cannot {name} in {self.path}: database or disk is full")
        return getattr(self.db, name)(*a, **kw)

    def log_samples(self, *a, **kw):
        self.n += 1
        if self.n == self.fail_from:
            self.failed = True
            raise StoreError(f"cannot log samples in {self.path}: database or disk is full")
        return self._maybe("log_samples", *a, **kw)

    def log_event(self, *a, **kw):
        return self._maybe("log_event", *a, **kw)

    def log_image(self, *a, **kw):
        return self._maybe("log_image", *a, **kw)

    def log_cqas(self, *a, **kw):
        return self._maybe("log_cqas", *a, **kw)

    def finish_run(self, *a, **kw):
        return self._maybe("finish_run", *a, **kw)


def test_store_error_puts_the_plant_safe_then_records_the_reason_when_writable(crystallizer, thermostat,
                                                                                 short_recipe, store):
    full = _FullDisk(store, fail_from=5, recovers=True)
    res = run(short_recipe, crystallizer=crystallizer, store=full, safe_state="stop", sample_interval_s=300.0)
    assert res.status == "failed" and res.reason.startswith("StoreError: cannot log samples")
    assert thermostat.running is False  # safe state applied
    info = store.run(res.run_id)
    assert info["status"] == "failed" and "database or disk is full" in info["reason"]
    assert res.store_error is None
    # the refused batch was written afterwards: memory and store agree
    assert len(store.samples(res.run_id)) == len(res.samples)
    assert any("safe state: stopped the circulator" in m for m in store.events(res.run_id)["message"])


def test_store_error_with_the_store_gone_for_good_prints_the_end(crystallizer, thermostat, short_recipe, store,
                                                                   capsys):
    full = _FullDisk(store, fail_from=3, recovers=False)
    res = run(short_recipe, crystallizer=crystallizer, store=full, safe_state="stop", sample_interval_s=300.0)
    assert res.status == "failed" and thermostat.running is False
    err = capsys.readouterr().err
    assert f"crystalloop: run {res.run_id} failed: StoreError: cannot log samples" in err
    assert "the store could not record it (StoreError: cannot log_samples" in err
    assert res.store_error.startswith("StoreError: cannot log_samples")
    assert store.run(res.run_id)["status"] == "running"  # becomes 'interrupted' once this process is gone


@pytest.mark.parametrize(("exc", "status", "reason"), [
    (DeviceAlarm("thermostat 'fake' reports LOW LEVEL ALARM"), "failed",
     "DeviceAlarm: thermostat 'fake' reports LOW LEVEL ALARM"),
    (KeyboardInterrupt(), "aborted", "aborted by the user (KeyboardInterrupt: Ctrl-C or SIGINT)"),
])
def test_faults_in_the_loop_end_in_the_safe_state(crystallizer, thermostat, short_recipe, store, exc, status, reason):
    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="stop",
              controller=_Ctrl(short_recipe, 1800.0, exc))
    assert (res.status, res.reason) == (status, reason)
    assert thermostat.running is False
    assert store.run(res.run_id)["status"] == status and store.run(res.run_id)["reason"] == reason
    msgs = list(store.events(res.run_id)["message"])
    assert msgs.index(next(m for m in msgs if m.startswith("safe state: stopped"))) < msgs.index(f"run {status}: {reason}")


def test_watchdog_timeout_holds_the_last_confirmed_setpoint(crystallizer, thermostat, short_recipe, store):
    thermostat.reads_fail_at_s = 3000.0
    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="hold")
    assert res.status == "failed" and res.reason.startswith("watchdog: 3 consecutive failed exchanges")
    last_before = [v for t, v in thermostat.writes if t < 3000.0][-1]
    assert thermostat.writes[-1][1] == pytest.approx(last_before)  # the hold command
    assert store.run(res.run_id)["reason"] == res.reason


def test_an_unexpected_error_is_recorded_then_raised(crystallizer, thermostat, short_recipe, store):
    with pytest.raises(ZeroDivisionError):
        run(short_recipe, crystallizer=crystallizer, store=store, safe_state="stop",
            controller=_Ctrl(short_recipe, 600.0, ZeroDivisionError("bug")))
    info = store.runs().iloc[-1]
    assert info["status"] == "failed" and info["reason"] == "unexpected ZeroDivisionError: bug"
    assert thermostat.running is False


def test_failure_before_the_first_sample_says_so(clock, make_thermostat, short_recipe, store):
    th = make_thermostat(clock)
    th.gone_at_s = 0.0
    res = run(short_recipe, crystallizer=Crystallizer("fake://", clock, th), store=store)
    assert res.status == "failed" and res.n_samples == 0 and res.duration_h == 0.0
    assert res.summary().endswith("(before its first sample)") and "watchdog" in res.summary()
    with pytest.raises(ConfigError, match="before its first sample.*nothing to plot"):
        res.plot(store.path.parent / "x.png")


# ------------------------------------------------------------------ resume once
def _abort_at(t_s):
    def tick(info):
        if info["time_s"] >= t_s:
            raise KeyboardInterrupt
    return tick


def test_resuming_twice_continues_the_continuation_or_refuses(crystallizer, short_recipe, store, clock,
                                                               make_thermostat):
    first = run(short_recipe, crystallizer=crystallizer, store=store, on_tick=_abort_at(1800.0))
    assert first.status == "aborted"

    def fresh():
        return Crystallizer("fake://", clock, make_thermostat(clock))

    second = run(crystallizer=fresh(), store=store, resume_run_id=first.run_id, on_tick=_abort_at(7200.0))
    assert second.status == "aborted" and continuation_of(store, first.run_id) == second.run_id
    # resuming the first run again continues the continuation, not a second branch
    third = run(crystallizer=fresh(), store=store, resume_run_id=first.run_id)
    assert third.status == "completed"
    assert store.run(third.run_id)["meta"]["resumed_from"] == second.run_id
    assert store.run(third.run_id)["meta"]["resumed_at_s"] >= 7200.0
    n = len(store.runs())
    with pytest.raises(ConfigError, match=rf"run {first.run_id} was already continued by run {third.run_id} "
                                          rf"\({first.run_id} -> {second.run_id} -> {third.run_id}\), which is "
                                          r"completed; there is nothing left to resume"):
        run(crystallizer=fresh(), store=store, resume_run_id=first.run_id)
    assert len(store.runs()) == n


# ------------------------------------------------------------------ device health and real clocks
def test_a_device_alarm_during_the_run_ends_it_in_the_safe_state(crystallizer, thermostat, short_recipe, store):
    """The unit's own fault word (low level, sensor fault) is read at every sample."""
    from crystalloop.hardware.base import ThermostatStatus

    healthy = thermostat.status

    def status():
        s = healthy()
        if thermostat.clock.now() >= 3600.0:
            return ThermostatStatus(s.running, 1, "-01 LOW LEVEL ALARM", ("LOW LEVEL ALARM",))
        return s

    thermostat.status = status
    res = run(short_recipe, crystallizer=crystallizer, store=store, safe_state="stop", sample_interval_s=300.0)
    assert res.status == "failed"
    assert res.reason == "DeviceAlarm: device fault on thermostat 'fake': LOW LEVEL ALARM"
    assert thermostat.running is False  # the stop command was sent
    t = store.samples(res.run_id, wide=True)["time_s"]
    assert t.max() == pytest.approx(3600.0)  # the readings of the faulty instant are kept
    msgs = list(store.events(res.run_id)["message"])
    assert any(m.startswith("safe state: stopped") for m in msgs)


def test_a_tick_slower_than_the_sample_interval_on_a_real_clock_runs_on(short_recipe, store, make_thermostat):
    """A slow serial device makes a real-time run fall behind: it catches up, it does not fail."""
    import time as _time

    from crystalloop.hardware.base import RealClock, Reading

    clock = RealClock()
    th = make_thermostat(clock)

    class SlowSensor:
        name = "slow"

        def read(self):
            _time.sleep(0.06)
            return Reading(1.0, clock.now(), "counts", "#/frame")

        def close(self):
            pass

    cz = Crystallizer(url="fake://", clock=clock, thermostat=th, counter=SlowSensor())
    res = run(short_recipe, crystallizer=cz, store=store, sample_interval_s=0.02, control_interval_s=0.02,
              duration_s=0.5, safe_state="stop")
    assert res.status == "completed", res.reason
    counts = store.samples(res.run_id, wide=True)["counts"].dropna()
    assert 3 <= len(counts) <= 12  # about one sample per slow read (0.06 s) over 0.5 s, missed ticks skipped
