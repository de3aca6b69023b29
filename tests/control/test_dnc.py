import pytest

from crystalloop.control.dnc import DirectNucleationController, dnc_mode
from crystalloop.control.pid import Observation
from crystalloop.errors import ConfigError


@pytest.mark.parametrize("n, mode", [(121, "heat"), (120, "hold"), (100, "hold"), (80, "hold"), (79, "cool")])
def test_law_switching_at_band_edges(n, mode):
    assert dnc_mode(n, 100, 20) == mode


def _ctrl(**kw):
    kw = {"t_min_c": 10.0, "t_max_c": 50.0, "heating_rate_c_min": 0.5, "cooling_rate_c_min": 0.2,
          "filter_window": 1, "final_hold_min": 10.0, **kw}
    return DirectNucleationController(100.0, 20.0, **kw)


def _drive(ctrl, counts, t0=0.0, dt=60.0, sp0=40.0):
    ctrl.reset(Observation(t0, sp0, sp0, sp0, counts[0]))
    out = []
    for k, n in enumerate(counts):
        out.append(ctrl.setpoint(Observation(t0 + k * dt, sp0, sp0, sp0, n)))
    return out


def test_heats_cools_and_holds_at_the_documented_rates():
    ctrl = _ctrl()
    sp = _drive(ctrl, [200, 200, 200, 100, 100, 50, 50, 50])
    # step k applies the mode decided at step k-1 over one minute
    assert sp == pytest.approx([40.0, 40.5, 41.0, 41.5, 41.5, 41.5, 41.3, 41.1])
    assert [h[2] for h in ctrl.history_] == ["heat"] * 3 + ["hold"] * 2 + ["cool"] * 3


def test_temperature_limits_are_respected():
    ctrl = _ctrl(t_max_c=41.0)
    sp = _drive(ctrl, [500] * 20)
    assert max(sp) == pytest.approx(41.0)
    ctrl = _ctrl(t_min_c=39.0)
    sp = _drive(ctrl, [0] * 20)
    assert min(sp) == pytest.approx(39.0)


def test_filter_averages_counts():
    ctrl = _ctrl(filter_window=3)
    _drive(ctrl, [0, 0, 500])  # mean 166 > 120 → heat
    assert ctrl.mode_ == "heat"
    ctrl = _ctrl(filter_window=3)
    _drive(ctrl, [100, 100, 160])  # mean 120 → hold
    assert ctrl.mode_ == "hold"


def test_finishes_after_final_hold_at_minimum():
    ctrl = _ctrl(t_min_c=39.0, final_hold_min=5.0)
    counts = [0] * 30
    ctrl.reset(Observation(0.0, 40, 40, 40, 0))
    done_at = None
    for k, n in enumerate(counts):
        obs = Observation(k * 60.0, 40, 40, 40, n)
        ctrl.setpoint(obs)
        if ctrl.finished(obs):
            done_at = k
            break
    # reaches 39 °C after 5 min of cooling (decided at k=0), then 5 min hold
    assert done_at == 10


def test_no_counts_means_hold():
    ctrl = _ctrl()
    sp = _drive(ctrl, [float("nan")] * 5)
    assert sp == pytest.approx([40.0] * 5)


@pytest.mark.parametrize("kw, match", [
    (dict(t_min_c=50.0, t_max_c=10.0), "t_min_c < t_max_c"),
    (dict(heating_rate_c_min=0.0), "heating_rate_c_min must be > 0"),
    (dict(filter_window=0), "filter_window"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ConfigError, match=match):
        _ctrl(**kw)


def test_hold_times_out_into_cooling():
    ctrl = _ctrl(max_hold_min=3.0)
    sp = _drive(ctrl, [100] * 7)  # always in band
    assert [h[2] for h in ctrl.history_] == ["hold"] * 3 + ["cool"] * 4
    assert sp[-1] == pytest.approx(40.0 - 0.2 * 3)
    pure = _ctrl(max_hold_min=float("inf"))
    assert _drive(pure, [100] * 7) == pytest.approx([40.0] * 7)
