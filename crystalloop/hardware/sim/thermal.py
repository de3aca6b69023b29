"""Thermostat bath, jacket and reactor temperatures of a lab jacketed crystallizer.

Three states ``x = (T_bath, T_jacket, T_reactor)`` in °C. The circulating thermostat's bath
follows its setpoint ``T_sp`` with a first-order lag, limited by the unit's maximal ramp
and clipped to its working range; the bath fluid flows through the jacket; the reactor
content exchanges heat with the jacket through the wall (U·A, DOMAIN.md §3) and a little
with the room::

    dT_bath/dt    = clip((clip(T_sp, min_c, max_c) - T_bath) / tau_bath_s, -r, +r),  r = max_ramp_c_min/60
    C_j dT_jacket/dt  = F c_pj (T_bath - T_jacket) - U A (T_jacket - T_reactor)
    C_r dT_reactor/dt = U A (T_jacket - T_reactor) + UA_amb (T_amb - T_reactor)

with ``C_j = ρ_j c_pj V_j`` (jacket volume ``V_j = jacket_volume_ratio · V``), ``C_r = ρ c_p V``
and ``F`` the circulation mass flow. Heat of crystallization and stirrer power are neglected
(they are < 1 % of the exchanged heat for a 1 L vessel at a few % solids).

:func:`thermal_rhs` is the pure right-hand side (the NMPC mirrors it in CasADi:
replace ``min``/``max`` by ``casadi.fmin``/``fmax``). :func:`advance_thermal` integrates it
exactly for the linear jacket/reactor pair (matrix exponential with the bath temperature
linear over each substep), so the stiff jacket (time constant ≈ 1 s) costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from crystalloop.errors import ConfigError

__all__ = ["ThermalParams", "thermal_rhs", "advance_thermal", "steady_state"]


@dataclass(frozen=True)
class ThermalParams:
    """Lab 1 L jacketed vessel with a circulating thermostat (all SI unless suffixed).

    Attributes
    ----------
    tau_bath_s : float
        First-order lag of the bath temperature to its setpoint, s.
    max_ramp_c_min : float
        Largest heating/cooling rate the thermostat unit achieves, °C/min.
    min_c, max_c : float
        Working range of the thermostat, °C (setpoints outside raise ``LimitError`` at the device).
    U_W_m2K : float
        Overall heat-transfer coefficient of the jacket wall, W/(m² K).
    area_m2 : float
        Wetted heat-transfer area, m².
    volume_L : float
        Liquid volume in the reactor, L.
    rho_kg_m3, cp_J_kgK : float
        Density and heat capacity of the reactor content.
    jacket_volume_ratio : float
        Jacket volume / liquid volume (≈ 0.14, DOMAIN.md §3).
    rho_jacket_kg_m3, cp_jacket_J_kgK : float
        Thermal fluid (silicone oil) properties.
    flow_L_min : float
        Circulation flow through the jacket, L/min.
    UA_ambient_W_K : float
        Heat loss coefficient to the room, W/K.
    T_ambient_c : float
        Room temperature, °C.
    """

    tau_bath_s: float = 60.0
    max_ramp_c_min: float = 4.0
    min_c: float = -20.0
    max_c: float = 80.0
    U_W_m2K: float = 500.0
    area_m2: float = 0.045
    volume_L: float = 1.0
    rho_kg_m3: float = 850.0
    cp_J_kgK: float = 2400.0
    jacket_volume_ratio: float = 0.14
    rho_jacket_kg_m3: float = 950.0
    cp_jacket_J_kgK: float = 1500.0
    flow_L_min: float = 10.0
    UA_ambient_W_K: float = 0.3
    T_ambient_c: float = 20.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"ThermalParams.{name} must be a finite number, got {value!r}")
            if name not in ("min_c", "max_c", "T_ambient_c", "UA_ambient_W_K") and value <= 0:
                raise ConfigError(f"ThermalParams.{name} must be > 0, got {value!r}")
        if self.UA_ambient_W_K < 0:
            raise ConfigError(f"ThermalParams.UA_ambient_W_K must be >= 0 W/K, got {self.UA_ambient_W_K}")
        if self.min_c >= self.max_c:
            raise ConfigError(f"ThermalParams needs min_c < max_c, got {self.min_c} °C and {self.max_c} °C")

    # derived heat capacities / conductances (W/K and J/K)
    @property
    def C_reactor_J_K(self) -> float:
        return self.rho_kg_m3 * self.cp_J_kgK * self.volume_L * 1e-3

    @property
    def C_jacket_J_K(self) -> float:
        return self.rho_jacket_kg_m3 * self.cp_jacket_J_kgK * self.jacket_volume_ratio * self.volume_L * 1e-3

    @property
    def UA_W_K(self) -> float:
        return self.U_W_m2K * self.area_m2

    @property
    def Fcp_W_K(self) -> float:
        return self.rho_jacket_kg_m3 * self.flow_L_min * 1e-3 / 60.0 * self.cp_jacket_J_kgK

    def to_dict(self) -> dict:
        return asdict(self)


def thermal_rhs(x: np.ndarray, T_sp_c: float, p: ThermalParams) -> np.ndarray:
    """Right-hand side ``dx/dt`` (°C/s) of ``x = (T_bath_c, T_jacket_c, T_reactor_c)``.

    Parameters
    ----------
    x : array_like, shape (3,)
        Bath, jacket and reactor temperatures, °C.
    T_sp_c : float
        Thermostat setpoint, °C (clipped to ``[p.min_c, p.max_c]`` as the unit does).
    p : ThermalParams

    Returns
    -------
    ndarray, shape (3,)
    """
    Tb, Tj, Tr = float(x[0]), float(x[1]), float(x[2])
    sp = min(max(T_sp_c, p.min_c), p.max_c)
    r = p.max_ramp_c_min / 60.0
    dTb = min(max((sp - Tb) / p.tau_bath_s, -r), r)
    dTj = (p.Fcp_W_K * (Tb - Tj) - p.UA_W_K * (Tj - Tr)) / p.C_jacket_J_K
    dTr = (p.UA_W_K * (Tj - Tr) + p.UA_ambient_W_K * (p.T_ambient_c - Tr)) / p.C_reactor_J_K
    return np.array([dTb, dTj, dTr])


def steady_state(T_bath_c: float, p: ThermalParams) -> tuple[float, float]:
    """Jacket and reactor temperatures at steady state for a constant bath temperature."""
    a, b = p.Fcp_W_K, p.UA_W_K
    d = p.UA_ambient_W_K
    # linear 2x2: a(Tb-Tj) = b(Tj-Tr);  b(Tj-Tr) = d(Tr-Tamb)
    # => Tj = (a Tb + b Tr)/(a+b);  b(Tj - Tr) = a b (Tb - Tr)/(a+b) = d (Tr - Tamb)
    k = a * b / (a + b)
    Tr = (k * T_bath_c + d * p.T_ambient_c) / (k + d)
    Tj = (a * T_bath_c + b * Tr) / (a + b)
    return Tj, Tr


class _ExactPair:
    """Exact propagator of the linear jacket/reactor pair for a bath temperature held constant."""

    def __init__(self, p: ThermalParams) -> None:
        a = p.Fcp_W_K / p.C_jacket_J_K
        b = p.UA_W_K / p.C_jacket_J_K
        c = p.UA_W_K / p.C_reactor_J_K
        d = p.UA_ambient_W_K / p.C_reactor_J_K
        self.A = ((-(a + b), b), (c, -(c + d)))
        tr = -(a + b) - (c + d)
        det = (a + b) * (c + d) - b * c
        disc = math.sqrt(tr * tr / 4.0 - det)
        self.l1 = tr / 2.0 + disc
        self.l2 = tr / 2.0 - disc
        self.p = p
        self._cache: dict[float, tuple] = {}

    def expm(self, h: float) -> tuple[float, float, float, float]:
        got = self._cache.get(h)
        if got is not None:
            return got
        (a11, a12), (a21, a22) = self.A
        l1, l2 = self.l1, self.l2
        e1, e2 = math.exp(l1 * h), math.exp(l2 * h)
        f = 1.0 / (l1 - l2)
        # e^{Ah} = (e1 (A - l2 I) - e2 (A - l1 I)) / (l1 - l2)
        m = (f * (e1 * (a11 - l2) - e2 * (a11 - l1)), f * (e1 - e2) * a12,
             f * (e1 - e2) * a21, f * (e1 * (a22 - l2) - e2 * (a22 - l1)))
        if len(self._cache) < 64:
            self._cache[h] = m
        return m


_PAIRS: dict[ThermalParams, _ExactPair] = {}


def advance_thermal(
    x: tuple[float, float, float],
    setpoint: Callable[[float], float] | float,
    t0_s: float,
    t1_s: float,
    p: ThermalParams,
    max_substep_s: float = 15.0,
) -> tuple[float, float, float]:
    """Integrate the thermal model from ``t0_s`` to ``t1_s``.

    The bath update is exact for a constant setpoint within a substep (first-order lag
    with the ramp limit applied to the step); the jacket/reactor pair is propagated exactly
    for a bath temperature varying linearly across the substep. Substeps are at most
    ``max_substep_s``.

    Parameters
    ----------
    x : (T_bath_c, T_jacket_c, T_reactor_c)
    setpoint : float or callable ``t_s -> T_sp_c``
    t0_s, t1_s : float
    p : ThermalParams

    Returns
    -------
    tuple of float
        New ``(T_bath_c, T_jacket_c, T_reactor_c)``.
    """
    pair = _PAIRS.get(p)
    if pair is None:
        pair = _PAIRS[p] = _ExactPair(p)
    Tb, Tj, Tr = x
    span = t1_s - t0_s
    if span <= 0:
        return Tb, Tj, Tr
    n = max(1, math.ceil(span / max_substep_s - 1e-9))
    h = span / n
    e_tau = math.exp(-h / p.tau_bath_s)
    rmax = p.max_ramp_c_min / 60.0 * h
    a = p.Fcp_W_K / p.C_jacket_J_K
    d = p.UA_ambient_W_K / p.C_reactor_J_K
    (a11, a12), (a21, a22) = pair.A
    det = a11 * a22 - a12 * a21
    m11, m12, m21, m22 = pair.expm(h)
    const_sp = not callable(setpoint)
    sp = float(setpoint) if const_sp else 0.0
    lo, hi = p.min_c, p.max_c
    t = t0_s
    for _ in range(n):
        if not const_sp:
            sp = float(setpoint(t + 0.5 * h))
        sp_c = hi if sp > hi else (lo if sp < lo else sp)
        Tb_new = sp_c + (Tb - sp_c) * e_tau
        dTb = Tb_new - Tb
        if dTb > rmax:
            Tb_new = Tb + rmax
        elif dTb < -rmax:
            Tb_new = Tb - rmax
        # forcing f(τ) = (a (Tb + s τ), d T_amb), linear over the substep: particular solution
        # y_p(τ) = u + v τ with A v = -(a s, 0) and A u = v - f(0); then y = y_p + e^{Aτ}(y0 - y_p(0))
        s = (Tb_new - Tb) / h
        v1 = -(a22 * a * s) / det
        v2 = (a21 * a * s) / det
        w1, w2 = v1 - a * Tb, v2 - d * p.T_ambient_c
        u1 = (a22 * w1 - a12 * w2) / det
        u2 = (-a21 * w1 + a11 * w2) / det
        dj, dr = Tj - u1, Tr - u2
        Tj = u1 + v1 * h + m11 * dj + m12 * dr
        Tr = u2 + v2 * h + m21 * dj + m22 * dr
        Tb = Tb_new
        t += h
    return Tb, Tj, Tr
