import math

import numpy as np
import pytest

from crystalloop.control.nmpc import NMPCController, ThermalModel, thermal_model_from_params
from crystalloop.control.pid import Observation, ProfileTracker
from crystalloop.errors import ConfigError
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal


def _closed_loop(ctrl, profile, dt=60.0, params=None, t_end=None):
    p = params or ThermalParams()
    x = (profile.t_start_c,) * 3
    sp = profile.t_start_c
    ctrl.reset(Observation(0.0, x[2], x[0], sp))
    ts, ys, sps = [], [], [sp]
    t = 0.0
    t_end = t_end or profile.batch_time_s
    while t < t_end:
        sp = ctrl.setpoint(Observation(t, x[2], x[0], sp))
        sps.append(sp)
        x = advance_thermal(x, sp, t, t + dt, p)
        t += dt
        ts.append(t)
        ys.append(x[2])
    err = np.array(ys) - profile.setpoint_at(np.array(ts))
    return math.sqrt(np.mean(err**2)), np.array(sps)


def test_reduced_model_matches_the_plant_step_response():
    p = ThermalParams()
    m = thermal_model_from_params(p)
    assert m.tau_s == p.tau_bath_s and m.max_bath_rate_c_min == p.max_ramp_c_min
    x3 = (20.0, 20.0, 20.0)
    x2 = np.array([20.0, 20.0])
    for k in range(60):  # 30 min step to 40 °C
        x3 = advance_thermal(x3, 40.0, k * 30.0, (k + 1) * 30.0, p)
        for _ in range(30):
            x2 = x2 + 1.0 * m.rhs_numpy(x2, 40.0)
        assert abs(x2[1] - x3[2]) < 0.25


def test_nmpc_tracks_reactor_far_better_than_plain_tracking(short_recipe):
    lim = (-10.0, 75.0)
    nmpc = NMPCController(short_recipe, ThermalParams(), horizon=20, setpoint_limits=lim, rate_limit_c_min=3.0)
    rms_nmpc, sps = _closed_loop(nmpc, short_recipe)
    rms_track, _ = _closed_loop(ProfileTracker(short_recipe), short_recipe)
    assert rms_nmpc < 0.25 * rms_track
    assert rms_nmpc < 0.3
    assert nmpc.n_fallbacks_ == 0
    # constraints hold on every move
    assert sps.min() >= lim[0] - 1e-6 and sps.max() <= lim[1] + 1e-6
    assert np.abs(np.diff(sps[1:])).max() <= 3.0 + 1e-6
    assert len(nmpc.solve_times_s_) == math.ceil(short_recipe.batch_time_s / 60.0)


def test_offset_free_under_model_mismatch(short_recipe):
    # the controller's model thinks U is 40 % higher than the plant's
    plant = ThermalParams(U_W_m2K=350.0)
    nmpc = NMPCController(short_recipe, ThermalParams(U_W_m2K=500.0), disturbance_gain=0.3)
    no_d = NMPCController(short_recipe, ThermalParams(U_W_m2K=500.0), disturbance_gain=0.0)
    rms_d, _ = _closed_loop(nmpc, short_recipe, params=plant, t_end=5400.0)
    rms_0, _ = _closed_loop(no_d, short_recipe, params=plant, t_end=5400.0)
    assert rms_d < rms_0


def test_failed_solve_falls_back_to_tracking_and_logs(short_recipe):
    events = []
    nmpc = NMPCController(short_recipe, ThermalParams(), ipopt_options={"max_iter": 0},
                          rate_limit_c_min=5.0, on_event=lambda t, lvl, m: events.append((t, lvl, m)))
    _, sps = _closed_loop(nmpc, short_recipe, t_end=600.0)
    assert nmpc.n_fallbacks_ == 10 and len(events) == 10
    assert "fell back to profile tracking" in events[0][2] and "Maximum_Iterations_Exceeded" in events[0][2]
    # tracking setpoint = recipe (within the rate limit)
    assert sps[1:] == pytest.approx(short_recipe.setpoint_at(np.arange(10) * 60.0))


def test_overrun_falls_back(short_recipe):
    nmpc = NMPCController(short_recipe, ThermalParams(), time_budget_s=1e-9)
    obs = Observation(0.0, 60.0, 60.0, 60.0)
    nmpc.reset(obs)
    nmpc.setpoint(obs)
    assert nmpc.n_fallbacks_ == 1
    assert "over the budget" in nmpc.events_[0][2]


def test_warm_start_needs_fewer_iterations(four_cycles):
    iters = {}
    for warm in (True, False):
        c = NMPCController(four_cycles, ThermalParams(), warm_start=warm)
        x = (60.0, 60.0, 60.0)
        sp = 60.0
        c.reset(Observation(0.0, 60.0, 60.0, 60.0))
        n = 0
        for k in range(25):
            sp = c.setpoint(Observation(k * 60.0, x[2], x[0], sp))
            n += c._solver.stats()["iter_count"]
            x = advance_thermal(x, sp, k * 60.0, (k + 1) * 60.0, ThermalParams())
        iters[warm] = n
    assert iters[True] < iters[False]


@pytest.mark.parametrize("kw, match", [
    (dict(horizon=0), "horizon must be a whole number >= 1"),
    (dict(setpoint_limits=(50, 10)), "setpoint_limits need low < high"),
    (dict(time_budget_s=0), "time_budget_s must be > 0"),
])
def test_bad_parameters(short_recipe, kw, match):
    with pytest.raises(ConfigError, match=match):
        NMPCController(short_recipe, ThermalParams(), **kw)


def test_bad_model(short_recipe):
    with pytest.raises(ConfigError, match="lacks"):
        NMPCController(short_recipe, object())
    with pytest.raises(ConfigError, match="tau_s > 0"):
        ThermalModel(tau_s=0.0, k_jacket_per_s=0.01)
