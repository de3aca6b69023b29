"""Thermostat bath / jacket / reactor model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from crystalloop.errors import ConfigError
from crystalloop.hardware.sim.thermal import (
    ThermalParams,
    advance_thermal,
    steady_state,
    thermal_rhs,
)


def _reference(p, x0, sp, t_end):
    sol = solve_ivp(lambda t, x: thermal_rhs(x, sp(t) if callable(sp) else sp, p), (0, t_end), x0,
                    method="LSODA", rtol=1e-9, atol=1e-9, max_step=1.0)
    return sol.y[:, -1]


@pytest.mark.parametrize("sp", [20.0, lambda t: 50.0 - 0.5 / 60 * t])
def test_exact_integrator_matches_the_rhs(sp):
    p = ThermalParams()
    x0 = (50.0, 50.0, 50.0)
    ref = _reference(p, x0, sp, 1800.0)
    got = advance_thermal(x0, sp, 0.0, 1800.0, p)
    np.testing.assert_allclose(got, ref, atol=0.02)


def test_bath_respects_ramp_limit_and_range():
    p = ThermalParams(max_ramp_c_min=2.0, tau_bath_s=30.0, min_c=-10.0, max_c=60.0)
    x = advance_thermal((20.0, 20.0, 20.0), 100.0, 0.0, 60.0, p)
    assert x[0] == pytest.approx(22.0, abs=1e-9)  # 2 °C/min ramp limit
    x = advance_thermal((20.0, 20.0, 20.0), 100.0, 0.0, 7200.0, p)
    assert x[0] == pytest.approx(60.0, abs=1e-6)  # clipped to max_c


def test_reactor_lags_bath_during_ramp_and_settles_at_steady_state():
    p = ThermalParams()
    ramp = lambda t: 50.0 - 0.5 / 60 * t  # noqa: E731
    x = advance_thermal((50.0, 50.0, 50.0), ramp, 0.0, 1800.0, p)
    assert ramp(1800.0) < x[0] < x[1] < x[2]  # bath lags setpoint, jacket lags bath, reactor lags jacket
    assert 0.5 < x[2] - ramp(1800.0) < 5.0
    x = advance_thermal((50.0, 50.0, 50.0), 10.0, 0.0, 4 * 3600.0, p)
    tj, tr = steady_state(x[0], p)
    assert x[1] == pytest.approx(tj, abs=1e-6) and x[2] == pytest.approx(tr, abs=1e-6)
    # small loss to a 20 °C room keeps the reactor slightly above the bath
    assert 10.0 < tr < 10.2


def test_thermal_params_validation():
    with pytest.raises(ConfigError, match=r"ThermalParams.U_W_m2K must be > 0, got -1"):
        ThermalParams(U_W_m2K=-1)
    with pytest.raises(ConfigError, match=r"min_c < max_c"):
        ThermalParams(min_c=50, max_c=40)
    with pytest.raises(ConfigError, match=r"tau_bath_s must be a finite number, got nan"):
        ThermalParams(tau_bath_s=float("nan"))
    p = ThermalParams()
    assert p.C_jacket_J_K == pytest.approx(950 * 1500 * 0.14e-3)
