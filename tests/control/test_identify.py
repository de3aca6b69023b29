import numpy as np
import pandas as pd
import pytest

from crystalloop.control.identify import identify_thermal_model, simulate_thermal_model
from crystalloop.control.nmpc import thermal_model_from_params
from crystalloop.errors import ConfigError, SchemaError
from crystalloop.hardware.sim.thermal import ThermalParams, advance_thermal


def _step_test(p, dt=60.0, noise=0.02, seed=0):
    """Log of the sim's 3-state thermal plant under setpoint steps and ramps."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 3 * 3600.0, dt)
    sp = np.where(t < 1800, 40.0, np.where(t < 3600, 30.0, np.where(t < 5400, 45.0, 45.0 - (t - 5400) / 120.0)))
    x = (40.0, 40.0, 40.0)
    rows = []
    for i, ti in enumerate(t):
        rows.append((ti, sp[i], x[0] + rng.normal(0, noise), x[2] + rng.normal(0, noise)))
        x = advance_thermal(x, sp[i], ti, ti + dt, p)
    return pd.DataFrame(rows, columns=["time_s", "T_set_c", "T_jacket_c", "T_reactor_c"])


def test_identifies_the_plant_from_a_step_test():
    p = ThermalParams()
    data = _step_test(p)
    model, info = identify_thermal_model(data, max_bath_rate_c_min=p.max_ramp_c_min,
                                         t_ambient_c=p.T_ambient_c, return_info=True)
    true = thermal_model_from_params(p)
    assert model.tau_s == pytest.approx(true.tau_s, rel=0.2)
    assert model.k_jacket_per_s == pytest.approx(true.k_jacket_per_s, rel=0.15)
    assert info["rms_reactor_c"] < 0.1 and info["rms_jacket_c"] < 0.1
    # the identified model predicts a new experiment about as well as the exact reduction
    other = _step_test(ThermalParams(), seed=1)
    sim = simulate_thermal_model(model, other.time_s, other.T_set_c, (40.0, 40.0))
    assert np.sqrt(np.mean((sim[:, 1] - other.T_reactor_c) ** 2)) < 0.15


def test_identification_input_errors():
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['T_jacket_c'\]"):
        identify_thermal_model(pd.DataFrame({"time_s": [0.0], "T_set_c": [1.0], "T_reactor_c": [1.0]}))
    flat = pd.DataFrame({"time_s": np.arange(20.0), "T_set_c": 25.0, "T_jacket_c": 25.0, "T_reactor_c": 25.0})
    with pytest.raises(ConfigError, match="setpoint moves only 0.00 °C"):
        identify_thermal_model(flat)
    with pytest.raises(SchemaError, match="at least 10"):
        identify_thermal_model(flat.iloc[:5])
