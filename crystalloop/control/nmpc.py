"""Nonlinear model predictive control (NMPC) of the reactor temperature with CasADi/Ipopt.

Model (the virtual crystallizer's jacket/reactor thermal model, built from the same
:class:`~crystalloop.hardware.sim.thermal.ThermalParams`): states ``x = (T_b, T_r)``, the
bath/jacket and reactor temperatures, input ``u = T_set``::

    dT_b/dt = z / (1 + (z / r_max)^4)^(1/4),  z = (u - T_b) / tau     first-order lag, smoothly ramp-limited
    dT_r/dt = k_j (T_b - T_r) + k_a (T_amb - T_r) + d        heat balance U·A / (m c_p)

``d`` is an integrating disturbance (°C/s) estimated on line from the one-step prediction
error, which removes steady offsets from model mismatch (offset-free MPC).

Optimal control problem, multiple shooting with RK4 over a horizon of ``N`` control
intervals of ``dt_s`` seconds::

    min  sum_k w_y (T_r,k - ref_k)^2 + w_du (u_k - u_{k-1})^2
    s.t. x_0 = x_hat,  x_{k+1} = F(x_k, u_k),
         u_min <= u_k <= u_max,  |u_k - u_{k-1}| <= rate * dt,  T_r bounds (optional)

Each step is warm-started from the previous solution shifted by one interval (primal and
dual). When a solve fails or overruns ``time_budget_s`` the controller falls back to plain
profile tracking for that step and reports the event (``on_event``, ``events_``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crystalloop.control.pid import Observation, ProfileTracker
from crystalloop.errors import ConfigError
from crystalloop.profiles import ThermocycleProfile

__all__ = ["ThermalModel", "NMPCController", "thermal_model_from_params"]


@dataclass(frozen=True)
class ThermalModel:
    """The control-oriented jacket/reactor model (see module docstring).

    Attributes
    ----------
    tau_s : float
        Bath time constant, s.
    max_bath_rate_c_min : float
        Ramp limit of the bath, °C/min (``inf`` for none).
    k_jacket_per_s : float
        ``U A / (m c_p)`` of the jacket–reactor exchange, 1/s.
    k_ambient_per_s : float
        Loss coefficient to the surroundings, 1/s.
    t_ambient_c : float
        Ambient temperature, °C.
    """

    tau_s: float
    k_jacket_per_s: float
    max_bath_rate_c_min: float = math.inf
    k_ambient_per_s: float = 0.0
    t_ambient_c: float = 20.0

    def __post_init__(self) -> None:
        if not (self.tau_s > 0 and self.k_jacket_per_s > 0 and self.k_ambient_per_s >= 0
                and self.max_bath_rate_c_min > 0 and np.isfinite(self.t_ambient_c)):
            raise ConfigError(f"ThermalModel needs tau_s > 0, k_jacket_per_s > 0, k_ambient_per_s >= 0, "
                              f"max_bath_rate_c_min > 0, finite t_ambient_c; got {self}")

    def rhs_numpy(self, x: np.ndarray, u: float, d: float = 0.0) -> np.ndarray:
        """Time derivative (°C/s) of ``x = (T_b, T_r)`` for setpoint ``u`` (numpy, for simulation/tests)."""
        tb, tr = float(x[0]), float(x[1])
        drive = (u - tb) / self.tau_s
        if math.isfinite(self.max_bath_rate_c_min):
            r = self.max_bath_rate_c_min / 60.0
            drive = drive / (1.0 + (drive / r) ** 4) ** 0.25
        return np.array([drive, self.k_jacket_per_s * (tb - tr) + self.k_ambient_per_s * (self.t_ambient_c - tr) + d])


def thermal_model_from_params(params: Any) -> ThermalModel:
    """Reduce the virtual crystallizer's ``ThermalParams`` to the control model.

    The jacket of :mod:`crystalloop.hardware.sim.thermal` has a time constant of about a
    second, far below the control interval, so it is treated as quasi-steady:
    ``T_j = (F c_p T_b + U A T_r) / (F c_p + U A)``. The reactor then sees the bath
    through the series conductance ``k = (F c_p · U A / (F c_p + U A)) / C_r``.

    Parameters
    ----------
    params : ThermalParams or ThermalModel
    """
    if isinstance(params, ThermalModel):
        return params
    need = ("tau_bath_s", "max_ramp_c_min", "UA_W_K", "Fcp_W_K", "C_reactor_J_K", "UA_ambient_W_K", "T_ambient_c")
    missing = [n for n in need if not hasattr(params, n)]
    if missing:
        raise ConfigError(f"cannot build a thermal model from {type(params).__name__}: it lacks {missing}; "
                          f"pass a ThermalParams (crystalloop.hardware.sim.thermal) or a ThermalModel")
    ua, fcp, cr = float(params.UA_W_K), float(params.Fcp_W_K), float(params.C_reactor_J_K)
    return ThermalModel(
        tau_s=float(params.tau_bath_s),
        k_jacket_per_s=ua * fcp / (ua + fcp) / cr,
        max_bath_rate_c_min=float(params.max_ramp_c_min),
        k_ambient_per_s=float(params.UA_ambient_W_K) / cr,
        t_ambient_c=float(params.T_ambient_c),
    )


def _build_solver(model: ThermalModel, n: int, dt_s: float, substeps: int, w_y: float, w_du: float,
                  opts: dict[str, Any]):
    import casadi as ca

    x = ca.SX.sym("x", 2)
    u = ca.SX.sym("u")
    d = ca.SX.sym("d")
    drive = (u - x[0]) / model.tau_s
    if math.isfinite(model.max_bath_rate_c_min):
        r = model.max_bath_rate_c_min / 60.0
        drive = drive / (1.0 + (drive / r) ** 4) ** 0.25
    xdot = ca.vertcat(drive, model.k_jacket_per_s * (x[0] - x[1])
                      + model.k_ambient_per_s * (model.t_ambient_c - x[1]) + d)
    f = ca.Function("f", [x, u, d], [xdot])
    h = dt_s / substeps
    xk = x
    for _ in range(substeps):
        k1 = f(xk, u, d)
        k2 = f(xk + h / 2 * k1, u, d)
        k3 = f(xk + h / 2 * k2, u, d)
        k4 = f(xk + h * k3, u, d)
        xk = xk + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    step = ca.Function("F", [x, u, d], [xk])

    X = ca.SX.sym("X", 2, n + 1)
    U = ca.SX.sym("U", n)
    P = ca.SX.sym("P", 2 + 1 + 1 + n)  # x_hat, u_prev, d, ref_1..ref_N
    x_hat, u_prev, dist, ref = P[0:2], P[2], P[3], P[4:]
    g = [X[:, 0] - x_hat]
    J = 0
    for k in range(n):
        g.append(X[:, k + 1] - step(X[:, k], U[k], dist))
        J += w_y * (X[1, k + 1] - ref[k]) ** 2
        du = U[k] - (u_prev if k == 0 else U[k - 1])
        J += w_du * du**2
        g.append(du)
    w = ca.vertcat(ca.reshape(X, -1, 1), U)
    nlp = {"x": w, "f": J, "g": ca.vertcat(*g), "p": P}
    solver = ca.nlpsol("nmpc", "ipopt", nlp, opts)
    return solver, step


class NMPCController(ProfileTracker):
    """NMPC tracking of the reactor-temperature trajectory of a recipe.

    Parameters
    ----------
    profile : ThermocycleProfile
        The recipe; its setpoint trajectory is the reactor reference.
    model : ThermalModel or ThermalParams
        The thermal model (the virtual crystallizer's parameters, or identified ones).
    horizon : int
        Number of control intervals ``N`` in the prediction horizon.
    dt_s : float
        Control interval, s (the runner's control period).
    setpoint_limits : (float, float)
        Range of the thermostat setpoint in °C.
    rate_limit_c_min : float
        Largest setpoint change rate in °C/min.
    reactor_limits : (float, float), optional
        Hard bounds on the predicted reactor temperature, °C.
    w_y, w_du : float
        Weights on the squared tracking error and the squared setpoint moves.
    time_budget_s : float
        Wall-time budget of one solve; an overrun falls back to tracking for that step.
    disturbance_gain : float
        Gain (0–1) of the integrating disturbance estimate (0 disables offset-free action).
    substeps : int
        RK4 steps per control interval.
    ipopt_options : dict, optional
        Extra Ipopt options (e.g. ``{"max_iter": 50}``).
    on_event : callable(time_s, level, message), optional
        Receives fallback events.

    Attributes
    ----------
    solve_times_s_ : list of float
        Wall time of every solve.
    n_fallbacks_ : int
        Steps that fell back to tracking.
    events_ : list of (time_s, level, message)
    """

    name = "nmpc"

    def __init__(
        self,
        profile: ThermocycleProfile,
        model: Any,
        *,
        horizon: int = 20,
        dt_s: float = 60.0,
        setpoint_limits: tuple[float, float] = (-20.0, 80.0),
        rate_limit_c_min: float = 5.0,
        reactor_limits: tuple[float, float] | None = None,
        w_y: float = 1.0,
        w_du: float = 0.05,
        time_budget_s: float = 1.0,
        disturbance_gain: float = 0.3,
        substeps: int = 2,
        warm_start: bool = True,
        ipopt_options: dict[str, Any] | None = None,
        on_event: Callable[[float, str, str], None] | None = None,
    ) -> None:
        super().__init__(profile)
        if int(horizon) != horizon or horizon < 1:
            raise ConfigError(f"NMPC horizon must be a whole number >= 1 interval, got {horizon!r}")
        if not dt_s > 0:
            raise ConfigError(f"NMPC dt_s must be > 0 s, got {dt_s}")
        if not setpoint_limits[0] < setpoint_limits[1]:
            raise ConfigError(f"NMPC setpoint_limits need low < high, got {setpoint_limits}")
        if not rate_limit_c_min > 0:
            raise ConfigError(f"NMPC rate_limit_c_min must be > 0 °C/min, got {rate_limit_c_min}")
        if not time_budget_s > 0:
            raise ConfigError(f"NMPC time_budget_s must be > 0 s, got {time_budget_s}")
        if not 0 <= disturbance_gain <= 1:
            raise ConfigError(f"NMPC disturbance_gain must lie in [0, 1], got {disturbance_gain}")
        self.model = thermal_model_from_params(model)
        self.horizon = int(horizon)
        self.dt_s = float(dt_s)
        self.setpoint_limits = (float(setpoint_limits[0]), float(setpoint_limits[1]))
        self.rate_limit_c_min = float(rate_limit_c_min)
        self.reactor_limits = reactor_limits
        self.w_y, self.w_du = float(w_y), float(w_du)
        self.time_budget_s = float(time_budget_s)
        self.disturbance_gain = float(disturbance_gain)
        self.substeps = int(substeps)
        self.warm_start = bool(warm_start)
        self.on_event = on_event
        opts = {
            "ipopt.print_level": 0, "print_time": False, "ipopt.sb": "yes",
            "ipopt.tol": 1e-6, "ipopt.acceptable_tol": 1e-4,
            "ipopt.max_iter": 100,
        }
        if self.warm_start:
            opts.update({"ipopt.warm_start_init_point": "yes", "ipopt.warm_start_bound_push": 1e-6,
                         "ipopt.warm_start_mult_bound_push": 1e-6, "ipopt.mu_init": 1e-4})
        for k, v in (ipopt_options or {}).items():
            opts[k if "." in k else f"ipopt.{k}"] = v
        self._solver, self._step = _build_solver(self.model, self.horizon, self.dt_s, self.substeps,
                                                 self.w_y, self.w_du, opts)
        self._bounds()
        self.solve_times_s_: list[float] = []
        self.n_fallbacks_ = 0
        self.events_: list[tuple[float, str, str]] = []
        self._reset_state()

    # ------------------------------------------------------------------ setup
    def _bounds(self) -> None:
        n = self.horizon
        nx = 2 * (n + 1)
        lbx = np.full(nx + n, -np.inf)
        ubx = np.full(nx + n, np.inf)
        lbx[nx:], ubx[nx:] = self.setpoint_limits
        if self.reactor_limits is not None:
            lo, hi = self.reactor_limits
            lbx[3:nx:2], ubx[3:nx:2] = lo, hi  # T_r at k = 1..N
        self._lbx, self._ubx = lbx, ubx
        du = self.rate_limit_c_min * self.dt_s / 60.0
        lbg, ubg = [0.0, 0.0], [0.0, 0.0]
        for _ in range(n):
            lbg += [0.0, 0.0, -du]
            ubg += [0.0, 0.0, du]
        self._lbg, self._ubg = np.array(lbg), np.array(ubg)

    def _reset_state(self) -> None:
        self._w0 = None
        self._lam_x = None
        self._lam_g = None
        self._d = 0.0
        self._pred: np.ndarray | None = None
        self._t_prev: float | None = None
        self._u_prev: float | None = None
        self.last_plan_: np.ndarray | None = None

    def reset(self, obs: Observation) -> None:
        self._reset_state()
        self._u_prev = obs.T_set_c if np.isfinite(obs.T_set_c) else self.reference(obs.time_s)

    @property
    def solve_times_s(self) -> list[float]:
        """Wall time of each NMPC solve, s (:class:`~crystalloop.control.controller.Controller`)."""
        return list(self.solve_times_s_)

    def _event(self, t: float, level: str, msg: str) -> None:
        self.events_.append((t, level, msg))
        self._emit(t, level, msg)

    # ------------------------------------------------------------------ step
    def _state(self, obs: Observation) -> np.ndarray:
        tr = float(obs.T_reactor_c)
        tb = float(obs.T_jacket_c)
        if not np.isfinite(tb):
            tb = float(self._pred[0]) if self._pred is not None else tr
        return np.array([tb, tr])

    def solve(self, x_hat: np.ndarray, u_prev: float, t_s: float) -> tuple[np.ndarray, dict[str, Any], float]:
        """Solve the OCP from state ``x_hat`` at time ``t_s``; returns (setpoint plan, Ipopt stats, wall s)."""
        n = self.horizon
        ref = self.profile.setpoint_at(t_s + self.dt_s * np.arange(1, n + 1))
        p = np.concatenate([x_hat, [u_prev, self._d], ref])
        if self._w0 is None or not self.warm_start:
            x_guess = np.tile(x_hat.reshape(2, 1), (1, n + 1))
            x_guess[1, 1:] = ref
            u_guess = np.clip(ref, *self.setpoint_limits)
            w0 = np.concatenate([x_guess.reshape(-1, order="F"), u_guess])
            kw = {}
        else:
            w0 = self._w0
            kw = {"lam_x0": self._lam_x, "lam_g0": self._lam_g}
        t0 = time.perf_counter()
        sol = self._solver(x0=w0, p=p, lbx=self._lbx, ubx=self._ubx, lbg=self._lbg, ubg=self._ubg, **kw)
        wall = time.perf_counter() - t0
        stats = self._solver.stats()
        w = np.asarray(sol["x"]).ravel()
        nx = 2 * (n + 1)
        # shift for the next warm start
        X = w[:nx].reshape(2, n + 1, order="F")
        U = w[nx:]
        Xs = np.hstack([X[:, 1:], X[:, -1:]])
        Us = np.concatenate([U[1:], U[-1:]])
        self._w0 = np.concatenate([Xs.reshape(-1, order="F"), Us])
        lam_x = np.asarray(sol["lam_x"]).ravel()
        lam_g = np.asarray(sol["lam_g"]).ravel()
        self._lam_x, self._lam_g = lam_x, lam_g
        return U, stats, wall

    def setpoint(self, obs: Observation) -> float:
        t = float(obs.time_s)
        if self._u_prev is None:
            self.reset(obs)
        x_hat = self._state(obs)
        # offset-free: integrate the one-step prediction error of the reactor temperature
        if self._pred is not None and self._t_prev is not None and t > self._t_prev and self.disturbance_gain > 0:
            err = x_hat[1] - self._pred[1]
            self._d += self.disturbance_gain * err / (t - self._t_prev)
        u_prev = float(self._u_prev)
        fallback_reason = None
        try:
            U, stats, wall = self.solve(x_hat, u_prev, t)
            self.solve_times_s_.append(wall)
            if not stats.get("success", False):
                fallback_reason = f"solver status {stats.get('return_status', 'unknown')!r}"
            elif wall > self.time_budget_s:
                fallback_reason = f"solve took {wall * 1e3:.1f} ms, over the budget {self.time_budget_s * 1e3:.1f} ms"
        except RuntimeError as e:  # CasADi raises RuntimeError on evaluation errors
            fallback_reason = f"solver error {e}"
            U = None
        if fallback_reason is None:
            u = float(U[0])
            self.last_plan_ = U
        else:
            self.n_fallbacks_ += 1
            self._w0 = None  # cold start next time
            lo, hi = self.setpoint_limits
            step = self.rate_limit_c_min * self.dt_s / 60.0
            u = float(np.clip(self.reference(t), max(lo, u_prev - step), min(hi, u_prev + step)))
            self.last_plan_ = None
            self._event(t, "warning", f"NMPC fell back to profile tracking at t={t:.0f} s: {fallback_reason}; "
                                      f"setpoint {u:.2f} °C")
        self._pred = np.asarray(self._step(x_hat, u, self._d)).ravel()
        self._t_prev, self._u_prev = t, u
        return u
