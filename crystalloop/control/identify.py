"""Identify the NMPC's thermal model from logged setpoint, jacket and reactor temperatures.

For a real reactor there is no ``ThermalParams``: log a run with a few setpoint steps or
ramps (any recipe run with ``crystalloop run`` logs ``T_set_c``, ``T_jacket_c`` and
``T_reactor_c``) and fit the two-state model of :class:`~crystalloop.control.nmpc.ThermalModel`
by output-error least squares: the model is simulated from the first measured state under
the logged setpoint (held between samples) and ``tau_s``, ``k_jacket_per_s`` and
``k_ambient_per_s`` are chosen to minimise the squared error of both simulated temperatures.

On a real reactor ``data`` is ``store.samples(run_id, wide=True)`` of a logged run, and the
model goes to the controller with ``run(recipe, backend="julabo:///dev/ttyUSB0",
controller="nmpc", controller_options={"model": model})``. Here a known model is simulated
through three setpoint steps and recovered from its own trajectory:

>>> import numpy as np, pandas as pd
>>> from crystalloop.control.nmpc import ThermalModel
>>> true = ThermalModel(tau_s=90.0, k_jacket_per_s=1 / 400, max_bath_rate_c_min=5.0,
...                     k_ambient_per_s=2e-5, t_ambient_c=21.0)
>>> t = np.arange(0.0, 4 * 3600.0, 60.0)
>>> setpoint = np.where(t < 3600, 40.0, np.where(t < 7200, 25.0, 45.0))
>>> x = simulate_thermal_model(true, t, setpoint, (40.0, 40.0))
>>> data = pd.DataFrame({"time_s": t, "T_set_c": setpoint, "T_jacket_c": x[:, 0], "T_reactor_c": x[:, 1]})
>>> model = identify_thermal_model(data, t_ambient_c=21.0, max_bath_rate_c_min=5.0)
>>> round(model.tau_s), round(1 / model.k_jacket_per_s)
(90, 400)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.control.nmpc import ThermalModel
from crystalloop.errors import ConfigError, SchemaError

__all__ = ["identify_thermal_model", "simulate_thermal_model"]

_COLUMNS = ("time_s", "T_set_c", "T_jacket_c", "T_reactor_c")


def simulate_thermal_model(model: ThermalModel, time_s: np.ndarray, setpoint_c: np.ndarray,
                           x0: tuple[float, float], *, max_step_s: float = 5.0) -> np.ndarray:
    """Simulate ``(T_b, T_r)`` at ``time_s`` under a setpoint held constant between samples.

    Returns an array of shape ``(len(time_s), 2)``; row 0 is ``x0``.
    """
    t = np.asarray(time_s, dtype=float)
    u = np.asarray(setpoint_c, dtype=float)
    out = np.empty((len(t), 2))
    x = np.asarray(x0, dtype=float)
    out[0] = x
    for i in range(len(t) - 1):
        span = t[i + 1] - t[i]
        n = max(1, math.ceil(span / max_step_s))
        h = span / n
        for _ in range(n):
            k1 = model.rhs_numpy(x, u[i])
            k2 = model.rhs_numpy(x + h / 2 * k1, u[i])
            k3 = model.rhs_numpy(x + h / 2 * k2, u[i])
            k4 = model.rhs_numpy(x + h * k3, u[i])
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out[i + 1] = x
    return out


def identify_thermal_model(
    data: pd.DataFrame,
    *,
    t_ambient_c: float = 20.0,
    max_bath_rate_c_min: float = math.inf,
    fit_ambient_loss: bool = True,
    return_info: bool = False,
) -> ThermalModel | tuple[ThermalModel, dict[str, Any]]:
    """Fit a :class:`ThermalModel` to logged data.

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s, T_set_c, T_jacket_c, T_reactor_c`` (e.g. ``RunResult.timeseries``
        or ``store.samples(run_id, wide=True)``); rows with a missing value are dropped.
        The data must excite the dynamics: a few setpoint steps or ramps of several °C.
    t_ambient_c : float
        Room temperature, °C.
    max_bath_rate_c_min : float
        The thermostat's ramp limit if known (°C/min); not fitted.
    fit_ambient_loss : bool
        Also fit the loss to the room (else ``k_ambient_per_s = 0``).
    return_info : bool
        Also return a dict with the RMS fit errors (°C) of both temperatures and the
        optimiser's status.

    Raises
    ------
    SchemaError
        A column is missing or fewer than 10 usable rows remain.
    ConfigError
        The setpoint hardly moves (nothing to identify) or the fit fails.
    """
    from scipy.optimize import least_squares

    if not isinstance(data, pd.DataFrame):
        raise SchemaError(f"data must be a DataFrame with columns {list(_COLUMNS)}, got {type(data).__name__}")
    missing = [c for c in _COLUMNS if c not in data.columns]
    if missing:
        raise SchemaError(f"data lacks column(s) {missing}; identification needs {list(_COLUMNS)}")
    d = data[list(_COLUMNS)].apply(pd.to_numeric, errors="coerce").dropna().sort_values("time_s")
    d = d[~d["time_s"].duplicated()]
    if len(d) < 10:
        raise SchemaError(f"only {len(d)} rows with all of {list(_COLUMNS)}; identification needs at least 10")
    t = d["time_s"].to_numpy()
    u = d["T_set_c"].to_numpy()
    y = d[["T_jacket_c", "T_reactor_c"]].to_numpy()
    if np.ptp(u) < 1.0:
        raise ConfigError(f"the setpoint moves only {np.ptp(u):.2f} °C in the data; identification needs "
                          f"steps or ramps of several °C")
    x0 = (y[0, 0], y[0, 1])

    def model_of(theta: np.ndarray) -> ThermalModel:
        tau, kj = math.exp(theta[0]), math.exp(theta[1])
        ka = math.exp(theta[2]) if fit_ambient_loss else 0.0
        return ThermalModel(tau_s=tau, k_jacket_per_s=kj, max_bath_rate_c_min=max_bath_rate_c_min,
                            k_ambient_per_s=ka, t_ambient_c=t_ambient_c)

    def residuals(theta: np.ndarray) -> np.ndarray:
        sim = simulate_thermal_model(model_of(theta), t, u, x0, max_step_s=10.0)
        return (sim - y).ravel()

    theta0 = np.log([120.0, 1.0 / 300.0] + ([1e-5] if fit_ambient_loss else []))
    lo = np.log([1.0, 1e-5] + ([1e-9] if fit_ambient_loss else []))
    hi = np.log([3600.0, 1.0] + ([1e-2] if fit_ambient_loss else []))
    res = least_squares(residuals, theta0, bounds=(lo, hi), x_scale=1.0, diff_step=1e-3, max_nfev=200)
    if not res.success:
        raise ConfigError(f"thermal model identification did not converge: {res.message}")
    model = model_of(res.x)
    if not return_info:
        return model
    err = res.fun.reshape(-1, 2)
    info = {"rms_jacket_c": float(np.sqrt(np.mean(err[:, 0] ** 2))),
            "rms_reactor_c": float(np.sqrt(np.mean(err[:, 1] ** 2))),
            "n_rows": int(len(d)), "status": res.message, "nfev": int(res.nfev)}
    return model, info
