import numpy as np
import pytest

from crystalloop.control.pid import Observation
from crystalloop.control.ssc import SupersaturationController
from crystalloop.errors import ConfigError


def _lin(T):  # c* = 0.02 + 0.001 T kg/kg
    return 0.02 + 0.001 * T


def _ctrl(**kw):
    kw = {"t_min_c": 10.0, "t_max_c": 50.0, "max_rate_c_min": 0.5, "filter_window": 1, **kw}
    return SupersaturationController(_lin, 0.002, **kw)


def test_saturation_temperature_inverts_the_solubility():
    c = _ctrl()
    assert c.saturation_temperature(_lin(33.3)) == pytest.approx(33.3, abs=1e-6)
    assert c.saturation_temperature(0.0) == 10.0 and c.saturation_temperature(1.0) == 50.0


def test_setpoint_follows_c_minus_delta_at_most_at_the_rate_limit():
    c = _ctrl()
    c.reset(Observation(0.0, 40.0, 40.0, 40.0))
    # c = c*(40): target T_sat(c - 0.002) = 38 °C, reached in 4 min at 0.5 °C/min
    sp = [c.setpoint(Observation(60.0 * k, 40.0, 40.0, 40.0, conc_kg_kg=_lin(40.0))) for k in range(6)]
    assert sp == pytest.approx([40.0, 39.5, 39.0, 38.5, 38.0, 38.0])
    # concentration falls: the setpoint follows the solubility curve down
    assert c.setpoint(Observation(360.0, 38.0, 38.0, 38.0, conc_kg_kg=_lin(37.8))) == pytest.approx(37.5)


def test_finishes_after_hold_at_minimum():
    c = _ctrl(t_min_c=39.0, final_hold_min=2.0)
    c.reset(Observation(0.0, 40.0, 40.0, 40.0))
    done = None
    for k in range(20):
        obs = Observation(60.0 * k, 40.0, 40.0, 40.0, conc_kg_kg=0.0)
        c.setpoint(obs)
        if c.finished(obs):
            done = k
            break
    assert done == 4  # at 39 °C after 2 min, then 2 min hold


@pytest.mark.parametrize("kw, match", [
    (dict(t_min_c=50.0, t_max_c=10.0), "t_min_c < t_max_c"),
    (dict(max_rate_c_min=0.0), "max_rate_c_min must be > 0"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ConfigError, match=match):
        _ctrl(**kw)


def test_solubility_must_increase():
    with pytest.raises(ConfigError, match="solubility must increase"):
        SupersaturationController(lambda T: 0.05 - 0.001 * T, 0.001, t_min_c=10.0, t_max_c=50.0)
    with pytest.raises(ConfigError, match="supersaturation > 0"):
        SupersaturationController(_lin, 0.0, t_min_c=10.0, t_max_c=50.0)


def test_ssc_on_the_virtual_crystallizer():
    from crystalloop.control.runner import run
    from crystalloop.hardware import connect
    from crystalloop.profiles import Segment, ThermocycleProfile

    recipe = ThermocycleProfile(40.0, 0.1, 44.0, [Segment(10.0, 0.3, 30)])
    cz = connect("sim://?seed=1&n_classes=80", recipe=recipe)
    res = run(recipe, crystallizer=cz, controller="ssc", controller_options={"delta_c_setpoint": 0.002},
              recipe_margin_c=10.0)
    ts = res.timeseries
    assert res.status == "completed" and ts["T_reactor_c"].iloc[-1] == pytest.approx(10.0, abs=0.5)
    ss = ts["conc_kg_kg"].to_numpy() - np.array([cz.ground_truth.solubility_kg_kg(T) for T in ts["T_reactor_c"]])
    mid = np.nanmedian(ss[len(ss) // 10: -len(ss) // 5])
    assert 0.3 * 0.002 < mid < 1.5 * 0.002  # held near the setpoint while cooling


def test_ssc_needs_a_concentration_sensor(crystallizer, short_recipe):
    from crystalloop.control.runner import run

    with pytest.raises(ConfigError, match="needs solubility="):
        run(short_recipe, crystallizer=crystallizer, controller="ssc", controller_options={"delta_c_setpoint": 0.001})
    with pytest.raises(ConfigError, match="needs a concentration sensor"):
        run(short_recipe, crystallizer=crystallizer, controller="ssc",
            controller_options={"delta_c_setpoint": 0.001, "solubility": _lin})
