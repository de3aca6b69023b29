"""Population balance of a batch cooling crystallizer: conservative finite volumes.

State
-----
On a uniform size grid (``n`` classes of width ``ΔL`` on ``[0, L_max]``, pivots ``L_i`` at the
class centres) the model carries the *number of particles per class in the vessel* for two
crystalline populations, primary crystals ``Np`` and agglomerates ``Na``, plus the mass of a
lumped metastable amorphous solid ``M_am`` and the dissolved solute. A particle in class
``i`` has the mass ``m_i = ρ_c k_v L_i³``, so the crystalline mass is ``Σ m_i (Np_i + Na_i)``.

Mass closure by construction
----------------------------
The conserved total ``M_tot = M_solute + M_cryst + M_am`` is fixed at the start (and raised by
exactly the seed mass when seeds are charged, :meth:`PopulationBalance.add_seeds`), and after
every step the solute is ``M_tot - M_cryst - M_am``. Every transfer is therefore counted
exactly once: the growth flux moves particles to heavier pivots (solute pays the pivot-mass
difference), nuclei are born in class 0 with the mass ``m_0`` each, particles that leave
through ``L = 0`` while dissolving return exactly their pivot mass ``m_0``, agglomeration and
breakage use the fixed-pivot technique (Kumar & Ramkrishna 1996) which conserves the
crystalline volume to round-off, and the amorphous solid exchanges mass with the solute
only. The relative error of the total is round-off (≈1e-15) at *any* grid size; the ledger
in :attr:`PopulationBalance.ledger` keeps the individual transfers for checking.

Numerics
--------
Growth/dissolution is advected with the flux-limited Lax–Wendroff scheme of Sweby (1984)
(second order where smooth, TVD for Courant ``ν ≤ 1``, limiter ``vanleer`` or ``koren``;
``upwind`` gives the first-order baseline), the form Gunawan, Fusman & Braatz (2004)
recommend for crystallization PBMs. Time steps are explicit and adaptive:
``ν ≤ cfl`` (0.9), the crystallizing mass per step at most ``rel_tol`` of the current driving
force ``|c - c*|`` (5× that while dissolving; so supersaturation cannot overshoot), and the
agglomeration/breakage probability per step ≤ 0.2. Agglomeration (an O(m²) fixed-pivot
sum over the occupied classes) is operator-split: its kernel is integrated over steps and
applied at most every ``agg_interval_s``. The convergence study in
``docs/virtual_crystallizer.md`` justifies the defaults.

Heavy seeding makes the solute coupling stiff: with a seed charge near or above the dissolved
solute, the crystal surface relaxes the solution onto saturation within seconds and the explicit
mass-transfer limit would cut the step to a fraction of a second. When that limit falls below a
tenth of what the Courant number, the event limits and the caller allow, the step is taken
implicitly in the concentration instead (backward Euler: the end concentration ``c`` solves
``c = c_after(rates(T_end, c))`` through the discrete update itself, by Brent's method). Its root
lies between ``c*(T_end)`` and the current concentration, so growing crystals never take the
solution below saturation, at any seed load; an explicit growth step that would end below
``c*(T_end)`` is rejected and retried implicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq

from crystalloop.errors import ConfigError, SimulationError
from crystalloop.hardware.sim.kinetics import KineticParams

__all__ = ["Grid", "PopulationBalance", "SimulationError", "LIMITERS"]

LIMITERS = ("vanleer", "koren", "upwind")
# take a step implicitly in the solute when the explicit mass-transfer limit is below this fraction
# of the step the Courant number, the event limits and the caller allow (see PopulationBalance._stiff)
_STIFF_RATIO = 0.1


@dataclass(frozen=True)
class Grid:
    """Uniform size grid.

    Attributes
    ----------
    edges_um : ndarray, shape (n + 1,)
    centers_um : ndarray, shape (n,)
    dL_um : float
    """

    edges_um: np.ndarray
    centers_um: np.ndarray
    dL_um: float

    @classmethod
    def uniform(cls, l_max_um: float, n_classes: int) -> Grid:
        if not (isinstance(n_classes, (int, np.integer)) and n_classes >= 10):
            raise ConfigError(f"n_classes must be a whole number >= 10, got {n_classes!r}")
        if not (math.isfinite(l_max_um) and l_max_um > 0):
            raise ConfigError(f"l_max_um must be a positive number of µm, got {l_max_um!r}")
        edges = np.linspace(0.0, float(l_max_um), int(n_classes) + 1)
        return cls(edges, 0.5 * (edges[1:] + edges[:-1]), float(edges[1] - edges[0]))

    @property
    def n(self) -> int:
        return self.centers_um.size


def _fixed_pivot(v: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split new particles of volumes ``target`` onto neighbouring pivots ``v`` (ascending).

    Returns ``(k0, k1, f0, f1)``: ``f0`` particles go to class ``k0``, ``f1`` to ``k1``, with
    ``f0 + f1 = 1`` and ``f0 v[k0] + f1 v[k1] = target`` inside the grid; above the last pivot
    all goes to the last class with ``f0 = target / v[-1]`` (volume kept, number not); below
    the first pivot likewise into class 0.
    """
    n = v.size
    k = np.searchsorted(v, target, side="right") - 1
    k0 = np.clip(k, 0, n - 1)
    k1 = np.clip(k + 1, 0, n - 1)
    inside = (k >= 0) & (k < n - 1)
    vk0, vk1 = v[k0], v[k1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f0 = np.where(inside, (vk1 - target) / (vk1 - vk0), target / vk0)
    f1 = np.where(inside, 1.0 - f0, 0.0)
    return k0, k1, f0, f1


@dataclass
class _Ledger:
    seeded_kg: float = 0.0
    nucleated_number: float = 0.0
    nucleated_kg: float = 0.0
    dissolved_out_number: float = 0.0
    dissolved_out_kg: float = 0.0
    amorphous_formed_kg: float = 0.0
    amorphous_dissolved_kg: float = 0.0
    agglomeration_events: float = 0.0
    breakage_events: float = 0.0
    steps: int = 0
    rejected_steps: int = 0
    implicit_steps: int = 0


@dataclass
class _Rates:
    T_K: float
    c: float
    csat: float
    sigma: float
    G: float
    B: float
    beta: float
    S_break: float
    amorph_sat: float
    dMdt_cryst: float = 0.0
    dMdt_am: float = 0.0


class _Proposal(NamedTuple):
    """The state after a tentative step (committed by :meth:`PopulationBalance._commit`)."""

    P: np.ndarray
    top: int
    M_cryst: float
    M_am: float
    M_sol: float
    born: float
    out_n: float
    broken_n: float
    formed: float
    dissolved: float


@dataclass
class PopulationBalance:
    """Crystal population + solute + amorphous solid of one batch (see module docstring).

    Parameters
    ----------
    kinetics : KineticParams
    volume_L : float
        Liquid volume, L (constant).
    n_classes, l_max_um : int, float
        Size grid; defaults from the kinetic set.
    limiter : {"vanleer", "koren", "upwind"}
    cfl : float
        Largest Courant number (≤ 1).
    rel_tol : float
        Largest fraction of the driving force ``|c - c*|`` consumed per step (5× that, at most 1,
        while crystals dissolve: a stiff relaxation onto c* that the midpoint rule keeps stable).
    agg_interval_s : float
        Operator-splitting interval of agglomeration.
    """

    kinetics: KineticParams
    volume_L: float = 1.0
    n_classes: int | None = None
    l_max_um: float | None = None
    limiter: str = "vanleer"
    cfl: float = 0.9
    rel_tol: float = 0.3
    agg_interval_s: float = 300.0
    ledger: _Ledger = field(default_factory=_Ledger)

    def __post_init__(self) -> None:
        k = self.kinetics
        if self.limiter not in LIMITERS:
            raise ConfigError(f"limiter must be one of {LIMITERS}, got {self.limiter!r}")
        if not 0 < self.cfl <= 1:
            raise ConfigError(f"cfl must be in (0, 1], got {self.cfl!r}")
        if not 0 < self.rel_tol <= 1:
            raise ConfigError(f"rel_tol must be in (0, 1], got {self.rel_tol!r}")
        if not (math.isfinite(self.volume_L) and self.volume_L > 0):
            raise ConfigError(f"volume_L must be > 0 L, got {self.volume_L!r}")
        self.grid = Grid.uniform(self.l_max_um or k.l_max_um, self.n_classes or k.n_classes)
        g = self.grid
        self.L = g.centers_um
        self.L2 = self.L**2
        self.L3 = self.L**3
        self._m_per_um3 = k.crystal_density_kg_m3 * k.shape_factor * 1e-18  # kg per µm³ of L³
        self.m_particle = self._m_per_um3 * self.L3  # kg per particle of each class
        self.V_m3 = self.volume_L * 1e-3
        self.m_solvent_kg = k.solvent_density_kg_m3 * self.V_m3
        # concentration basis: mass of solute per unit of c
        self.basis_amount = self.m_solvent_kg if k.basis == "kg/kg" else self.V_m3
        self.nuc_scale = self.V_m3 if k.nucleation_per == "m3" else self.m_solvent_kg
        # size-dependent growth factor at the interior interfaces (ASL form)
        edges_in = g.edges_um[1:-1]
        if k.growth_gamma_per_um > 0 and k.growth_p > 0:
            self.g_factor = (1.0 + k.growth_gamma_per_um * edges_in) ** k.growth_p
        else:
            self.g_factor = None
        self.g_factor_max = 1.0 if self.g_factor is None else float(self.g_factor.max())
        # row 0: primary crystals, row 1: agglomerates (only with an agglomeration model)
        self._rows = 2 if k.agglomeration is not None else 1
        self.P = np.zeros((self._rows, g.n))
        self._top = 0  # highest occupied class (the scheme moves mass at most one class per step)
        self.M_am = 0.0
        self.M_total = 0.0
        self.M_solute = 0.0
        self.M_seed = 0.0
        self._beta_acc = 0.0
        self._t_acc = 0.0
        self._ntot_last = 0.0
        self._M_cryst = 0.0
        self._agg = None
        if k.agglomeration is not None and k.agglomeration.beta0_m3_s > 0:
            self._agg = self._build_agglomeration()
        # dissolution speed of each population relative to compact crystals, shape (rows, 1)
        f_agg = k.agglomeration.dissolution_factor if k.agglomeration is not None else 1.0
        Ld = k.dissolution_size_um
        size_f = 1.0 + Ld / edges_in if Ld > 0 else np.ones_like(edges_in)
        # per population and interior interface, in the reversed (dissolution) order
        self._diss_factor = (np.array([[1.0], [f_agg]])[: self._rows] * size_f[None, :])[:, ::-1].copy()
        self._diss_factor_max = float(self._diss_factor.max())
        self._size_f = size_f
        self._f_agg = f_agg
        # mass-rate weights at the class centres for the step-size control
        self._diss_w = np.array([[1.0], [f_agg]])[: self._rows] * (
            (1.0 + Ld / self.L) if Ld > 0 else np.ones_like(self.L))[None, :] * self.L2[None, :]
        self._brk = None
        if k.agglomeration is not None and k.agglomeration.k_break_s > 0:
            self._brk = _fixed_pivot(self.L3, 0.5 * self.L3)

    # ------------------------------------------------------------------ setup
    def _build_agglomeration(self) -> tuple:
        n = self.grid.n
        # pairs i <= j ordered by j so that pairs inside the occupied range [0, m) form a prefix
        jj, ii = [], []
        for j in range(n):
            ii.append(np.arange(j + 1))
            jj.append(np.full(j + 1, j))
        pi = np.concatenate(ii)
        pj = np.concatenate(jj)
        w = np.where(pi == pj, 0.5, 1.0)
        lc = self.kinetics.agglomeration.efficiency_size_um
        if math.isfinite(lc):
            w = w / (1.0 + self.L[pi] * self.L[pj] / lc**2)
        k0, k1, f0, f1 = _fixed_pivot(self.L3, self.L3[pi] + self.L3[pj])
        return pi, pj, w, k0, k1, f0, f1

    def initialize(self, c0: float, seed_mass_kg: float = 0.0) -> None:
        """Start a batch: concentration ``c0`` (set's basis) and seeds of total mass ``seed_mass_kg``
        distributed log-normally by number (kinetics ``seeds``)."""
        if not (math.isfinite(c0) and c0 > 0):
            raise ConfigError(f"initial concentration must be > 0, got {c0!r}")
        self.P = np.zeros((self._rows, self.grid.n))
        self.M_am = 0.0
        self.ledger = _Ledger()
        self.M_seed = self._M_cryst = 0.0
        self.M_solute = c0 * self.basis_amount
        self.M_total = self.M_solute
        self._top = 0
        if seed_mass_kg:
            self.add_seeds(seed_mass_kg)

    def add_seeds(self, seed_mass_kg: float) -> None:
        """Charge seeds of total mass ``seed_mass_kg`` (log-normal number PSD of the kinetic set).

        The seeds enter the vessel from outside: the conserved total grows by their mass.
        """
        if not (math.isfinite(seed_mass_kg) and seed_mass_kg >= 0):
            raise ConfigError(f"seed mass must be >= 0 kg, got {seed_mass_kg!r}")
        if seed_mass_kg == 0:
            return
        sp = self.kinetics.seed
        w = np.exp(-0.5 * (np.log(self.L / sp.d50_um) / sp.sigma_ln) ** 2) / self.L
        if not float(w @ self.m_particle) > 0:
            raise ConfigError(f"seed PSD (d50 {sp.d50_um} µm) does not fit the size grid 0..{self.grid.edges_um[-1]:g} µm")
        w[w < 1e-12 * w.max()] = 0.0  # cut the far log-normal tails
        added = w * (seed_mass_kg / float(w @ self.m_particle))
        m_added = float(added @ self.m_particle)
        self.P[0] += added
        self._update_top()
        self._M_cryst = self.crystal_mass()
        self.M_seed += m_added
        self.M_total += m_added
        self.ledger.seeded_kg += m_added

    # ------------------------------------------------------------------ state
    @property
    def Np(self) -> np.ndarray:
        """Primary crystals per size class in the vessel (#)."""
        return self.P[0]

    @property
    def Na(self) -> np.ndarray:
        """Agglomerates per size class in the vessel (#), by volume-equivalent size."""
        return self.P[1] if self._rows == 2 else np.zeros(self.grid.n)

    def number(self) -> np.ndarray:
        """All crystalline particles per size class (#)."""
        return self.P[0] + self.P[1] if self._rows == 2 else self.P[0].copy()

    def crystal_mass(self) -> float:
        """Crystalline mass in the vessel, kg."""
        return float((self.P @ self.m_particle).sum())

    def _update_top(self) -> None:
        nz = np.flatnonzero(self.P.any(axis=0))
        self._top = int(nz[-1]) if nz.size else 0

    def concentration(self) -> float:
        """Solute concentration in the set's basis."""
        return self.M_solute / self.basis_amount

    def concentration_kg_kg(self) -> float:
        return self.M_solute / self.m_solvent_kg

    def mass_balance_error(self) -> float:
        """``|M_solute + M_cryst + M_am - M_total| / M_total`` recomputed from the state."""
        tot = self.M_solute + self.crystal_mass() + self.M_am
        return abs(tot - self.M_total) / self.M_total if self.M_total else 0.0

    # ------------------------------------------------------------------ rates
    def rates(self, T_K: float, c: float | None = None) -> _Rates:
        """Kinetic rates at temperature ``T_K`` and concentration ``c`` (default: current)."""
        k = self.kinetics
        if c is None:
            c = self.M_solute / self.basis_amount
        cs = k.solubility(T_K)
        if not cs > 0:
            raise SimulationError(f"solubility of '{k.name}' is {cs:g} at {T_K - 273.15:.2f} °C; it must be > 0")
        sigma = (c - cs) / cs
        G = B = beta = S = 0.0
        if sigma > 0:
            g = k.growth
            x = sigma if g.driving_force == "relative" else c - cs
            G = g.arrhenius(T_K) * x**g.n if g.k else 0.0
            p = k.primary
            if p.k:
                x = sigma if p.driving_force == "relative" else c - cs
                B += p.arrhenius(T_K) * x**p.n
            s = k.secondary
            if s.k:
                x = sigma if s.driving_force == "relative" else c - cs
                solids = self._solids_measure(self._M_cryst)
                if solids > 0 or s.s == 0:
                    B += s.arrhenius(T_K) * x**s.n * (solids**s.s if s.s else 1.0)
            B *= self.nuc_scale
            a = k.agglomeration
            if self._agg is not None:
                beta = a.beta0_m3_s * sigma**a.n
        elif sigma < 0:
            d = k.dissolution
            x = -sigma if d.driving_force == "relative" else cs - c
            G = -d.arrhenius(T_K) * x**d.n if d.k else 0.0
            if self._brk is not None:
                a = k.agglomeration
                S = a.k_break_s * (-sigma) ** a.n_break
        am = k.amorphous
        amorph_sat = am.solubility_ratio * cs if am is not None else math.inf
        return _Rates(T_K, c, cs, sigma, G, B, beta, S, amorph_sat)

    def _solids_measure(self, m: float) -> float:
        k = self.kinetics
        if k.secondary_solids == "volume_fraction":
            return m / k.crystal_density_kg_m3 / self.V_m3
        if k.secondary_solids == "mass_kg_kg":
            return m / self.m_solvent_kg
        return m / self.V_m3

    # ------------------------------------------------------------------ stepping
    def max_dt(self, r: _Rates, dt_max: float) -> float:
        """Largest stable/accurate step for the current rates (see module docstring)."""
        dt = self._event_dt(r, min(dt_max, self._cfl_dt(r.G)))
        dM = abs(r.dMdt_cryst) + abs(r.dMdt_am)
        if dM > 0:
            drive = max(abs(r.c - r.csat), 0.01 * r.csat) * self.basis_amount
            # dissolution relaxes c onto c* within minutes (a stiff, self-correcting quasi-steady
            # state whose outcome is set by the solubility): 5x looser, within the stability margin
            tol = self.rel_tol if r.G >= 0 else min(5.0 * self.rel_tol, 1.0)
            if tol * drive < dM * dt:
                dt = tol * drive / dM
        return dt

    def _event_dt(self, r: _Rates, dt: float) -> float:
        """``dt`` cut so that breakage and agglomeration stay below 0.2 events per particle."""
        if r.S_break > 0:
            dt = min(dt, 0.2 / r.S_break)
        if r.beta > 0:
            ntot = self._ntot_last = float(self.P.sum())
            if ntot > 0:
                dt = min(dt, max(0.2 * self.V_m3 / (r.beta * ntot), 1e-3))
        return dt

    def _cfl_dt(self, G: float) -> float:
        """Largest step with Courant number ≤ ``cfl`` at every interface for growth rate ``G``."""
        if G == 0.0 or self._M_cryst <= 0:
            return math.inf
        if G > 0:
            fmax = self.g_factor_max
        else:
            # fastest interface that carries particles this step: just below the smallest occupied class
            occ = np.flatnonzero(self.P.any(axis=0))
            if occ.size == 0:
                return math.inf
            fmax = float(self._size_f[max(int(occ[0]) - 1, 0)])
            if self._rows == 2 and self.P[1].any():
                fmax *= self._f_agg
        return self.cfl * self.grid.dL_um / (abs(G) * fmax)

    def _mass_rates(self, r: _Rates, mom2: float) -> None:
        """Fill ``r.dMdt_cryst`` and ``r.dMdt_am`` (kg/s) for the current state."""
        r.dMdt_cryst = self._m_per_um3 * (3.0 * r.G * mom2) + r.B * self.m_particle[0]
        if r.G < 0 and self._diss_factor_max > 1:
            # fines and agglomerates dissolve faster
            r.dMdt_cryst = (self._m_per_um3 * 3.0 * r.G * float((self.P * self._diss_w).sum())
                            + r.B * self.m_particle[0])
        am = self.kinetics.amorphous
        if am is None:
            r.dMdt_am = 0.0
        elif r.c > r.amorph_sat:
            r.dMdt_am = am.k_form_s * (r.c - r.amorph_sat) * self.basis_amount
        elif self.M_am > 0:
            r.dMdt_am = -am.k_diss(r.T_K) * (1 - r.c / r.amorph_sat) * self.M_am
        else:
            r.dMdt_am = 0.0

    def step(self, T_K: float, dt_max: float, dTdt: float = 0.0) -> float:
        """Advance one adaptive step of at most ``dt_max`` s.

        The rates are evaluated at the predicted mid-step concentration and temperature
        (explicit midpoint rule for the solute coupling; second order in time together with
        the Lax–Wendroff advection). A step that would drive the solute negative or overshoot
        saturation is rejected and halved.

        Parameters
        ----------
        T_K : float
            Reactor temperature at the start of the step, K.
        dt_max : float
            Largest step, s.
        dTdt : float
            Current rate of change of the reactor temperature, K/s.

        Returns
        -------
        float
            The step taken, s.
        """
        mom2 = float((self.P @ self.L2).sum())
        r0 = self.rates(T_K)
        self._mass_rates(r0, mom2)
        dt = self.max_dt(r0, dt_max)
        if self._stiff(r0, dt, dt_max):
            taken = self._implicit_step(T_K, r0, dt_max, dTdt)
            if taken is not None:
                return taken
        dM0 = r0.dMdt_cryst + r0.dMdt_am
        implicit_tried = False
        for _ in range(40):
            c_half = r0.c - 0.5 * dt * dM0 / self.basis_amount
            rh = self.rates(T_K + 0.5 * dt * dTdt, c_half)
            cfl_dt = self._cfl_dt(rh.G)
            if dt > cfl_dt:  # the mid-step rate is faster (e.g. growth turned into dissolution)
                dt = cfl_dt
                continue
            if self._try(rh, dt, r0, T_K + dt * dTdt):
                self.ledger.steps += 1
                return dt
            self.ledger.rejected_steps += 1
            if r0.G > 0 and self._M_cryst > 0 and not implicit_tried:
                # the explicit step overshot saturation: the coupling is stiff here
                implicit_tried = True
                taken = self._implicit_step(T_K, r0, dt, dTdt)
                if taken is not None:
                    return taken
            dt *= 0.5
        raise SimulationError(f"no acceptable step at T = {T_K - 273.15:.2f} °C, σ = {r0.sigma:.3g}")

    def _try(self, r: _Rates, dt: float, r0: _Rates, T_end: float) -> bool:
        """Compute one step with rates ``r``; commit and return True if acceptable."""
        prop = self._propose(r, dt)
        if prop is None:
            return False
        if r0.G > 0 or r.G > 0:
            # crystals that grow never take the solution below saturation (at the step's end)
            cs_end = self.kinetics.solubility(T_end)
            if prop.M_sol / self.basis_amount < cs_end * (1.0 - 1e-12):
                return False
        self._commit(prop, r, dt)
        return True

    def _stiff(self, r0: _Rates, dt: float, dt_max: float) -> bool:
        """True when the solute coupling, not the advection or the caller, limits the explicit step.

        That is the heavily seeded regime: so much crystal surface that the solution relaxes onto
        saturation in seconds. The explicit step would crawl (and its acceptance tolerance would
        let c fall below c*), so such steps are taken implicitly in the concentration.
        """
        if r0.sigma == 0.0 or self._M_cryst <= 0.0 or r0.G == 0.0:
            return False
        am = self.kinetics.amorphous
        if am is not None and (self.M_am > 0.0 or r0.c >= r0.amorph_sat):
            return False
        free = self._event_dt(r0, dt_max if r0.G > 0 else min(dt_max, self._cfl_dt(r0.G)))
        return dt < _STIFF_RATIO * free

    def _implicit_step(self, T_K: float, r0: _Rates, dt_max: float, dTdt: float) -> float | None:
        """One backward-Euler step in the solute concentration (see :meth:`_stiff`).

        The end-of-step concentration ``c`` solves ``c = c_after(rates(T_end, c))``, where
        ``c_after`` is the concentration left by the *discrete* growth/dissolution, nucleation and
        breakage update driven by those rates. Its root lies strictly between ``c*(T_end)`` and
        the current concentration, so a growing population never takes the solution below
        saturation and a dissolving one never above it, whatever the seed load; the step is limited
        only by the Courant number, the event limits and ``dt_max``. Returns the step taken, or
        None to fall back to the explicit step.
        """
        B = self.basis_amount
        c0 = self.M_solute / B
        dt = self._event_dt(r0, dt_max)
        for _ in range(12):
            T1 = T_K + dt * dTdt
            cs = self.kinetics.solubility(T1)
            if not cs > 0 or c0 == cs:
                return None

            def resid(c: float, dt: float = dt, T1: float = T1) -> float:
                prop = self._propose(self.rates(T1, c), dt)
                return c - (prop.M_sol / B if prop is not None else -np.inf)

            lo, hi = (cs, c0) if c0 > cs else (c0, cs)
            try:
                c = brentq(resid, lo, hi, xtol=1e-13 * max(abs(c0), 1e-30), rtol=1e-15, maxiter=200)
            except ValueError:  # no sign change (e.g. a proposal drove the solute negative)
                return None
            r = self.rates(T1, c)
            cfl_dt = self._cfl_dt(r.G)
            if dt > cfl_dt:
                dt = 0.9 * cfl_dt
                continue
            prop = self._propose(r, dt)
            if prop is None:
                return None
            self._commit(prop, r, dt)
            self.ledger.steps += 1
            self.ledger.implicit_steps += 1
            return dt
        return None

    def _propose(self, r: _Rates, dt: float) -> _Proposal | None:
        """The state after one step of ``dt`` s with rates ``r`` (None if the solute would go negative)."""
        k = self.kinetics
        P = self.P.copy()
        out_n = 0.0
        n = self.grid.n
        top = self._top
        # 1. growth / dissolution (flux-limited finite volumes, both populations at once), on the
        #    occupied classes plus two empty ones (nothing moves further than one class per step)
        m = min(top + 3, n)
        if r.G > 0.0:
            nu = r.G * dt / self.grid.dL_um
            P[:, :m] = _advect(P[:, :m], nu if self.g_factor is None else nu * self.g_factor[:m - 1],
                               self.limiter)
            top = min(top + 1, n - 1)
        elif r.G < 0.0:
            nu = -r.G * dt / self.grid.dL_um
            fac = self._diss_factor[:, n - m:]
            Pr, gone = _advect_out(P[:, m - 1::-1], nu * fac if self._diss_factor_max > 1 else nu,
                                   self.limiter)
            P[:, :m] = Pr[:, ::-1]
            out_n = float(gone.sum())
        # 2. nucleation into the first class
        born = r.B * dt
        if born > 0:
            P[0, 0] += born
        # 3. breakage of agglomerates (undersaturation): Na_i -> 2 primaries of v_i/2
        broken_n = 0.0
        if r.S_break > 0 and self._rows == 2 and P[1].any():
            broken = P[1] * (1.0 - math.exp(-r.S_break * dt))
            P[1] -= broken
            k0, k1, f0, f1 = self._brk
            P[0] += np.bincount(k0, 2.0 * broken * f0, minlength=n) + np.bincount(k1, 2.0 * broken * f1, minlength=n)
            broken_n = float(broken.sum())
        # round-off guard: the TVD update is positive up to round-off (denormal dust when the last
        # crystals dissolve); less than a millionth of a particle in the vessel counts as none
        np.maximum(P, 0.0, out=P)
        if out_n and P.sum() < 1e-6:
            P[:] = 0.0
        M_cryst = float((P @ self.m_particle).sum())
        # 4. amorphous solid: forms above c*_am, dissolves below (exact relaxation per step)
        am = k.amorphous
        M_am = self.M_am
        formed = dissolved = 0.0
        if am is not None:
            B = self.basis_amount
            c = (self.M_total - M_cryst - M_am) / B
            x0 = self.M_solute / B - r.amorph_sat  # excess over c*_am at the start of the step
            if x0 > 0 and am.k_form_s > 0:
                # formation and crystallization act together: with the crystals taking solute at the
                # constant rate R of this step, x = c - c*_am obeys dx/dt = -R/B - k x, solved exactly
                # until x reaches 0 (then formation stops)
                kf = am.k_form_s
                R = (M_cryst - self._M_cryst) / dt
                x_inf = -R / (kf * B)
                t_end = dt
                if x_inf < 0:
                    t_end = min(dt, math.log((x0 - x_inf) / -x_inf) / kf)
                formed = max(kf * B * (x_inf * t_end + (x0 - x_inf) * (1.0 - math.exp(-kf * t_end)) / kf), 0.0)
            elif c > r.amorph_sat and am.k_form_s > 0:
                formed = (c - r.amorph_sat) * B * (1.0 - math.exp(-am.k_form_s * dt))
            elif c < r.amorph_sat and M_am > 0:
                kd = am.k_diss(r.T_K) * (1.0 - c / r.amorph_sat)
                dissolved = min(M_am * (1.0 - math.exp(-kd * dt)), (r.amorph_sat - c) * self.basis_amount)
            M_am = M_am + formed - dissolved
        # 5. solute closes the balance
        M_sol = self.M_total - M_cryst - M_am
        if M_sol < 0.0:
            return None
        return _Proposal(P, top, M_cryst, M_am, M_sol, born, out_n, broken_n, formed, dissolved)

    def _commit(self, prop: _Proposal, r: _Rates, dt: float) -> None:
        """Make a proposed step the state and book its transfers."""
        P, top, M_cryst, M_am, M_sol, born, out_n, broken_n, formed, dissolved = prop
        self.P = P
        self._top = top
        self._M_cryst = M_cryst
        self.M_am = M_am
        self.M_solute = M_sol
        led = self.ledger
        if born > 0:
            led.nucleated_number += born
            led.nucleated_kg += born * self.m_particle[0]
        if out_n:
            led.dissolved_out_number += out_n
            led.dissolved_out_kg += out_n * self.m_particle[0]
        led.breakage_events += broken_n
        led.amorphous_formed_kg += formed
        led.amorphous_dissolved_kg += dissolved
        # 6. agglomeration (operator-split, kernel integrated over the interval)
        if self._agg is not None:
            self._beta_acc += r.beta * dt
            self._t_acc += dt
            # apply when the interval is over or the accumulated collision probability gets large
            if self._beta_acc > 0 and (self._t_acc >= self.agg_interval_s
                                       or self._beta_acc * self._ntot_last / self.V_m3 > 0.1):
                self._agglomerate(self._beta_acc / self.V_m3)
                self._beta_acc = 0.0
                self._t_acc = 0.0

    def flush_agglomeration(self) -> None:
        """Apply the agglomeration accumulated since the last split step (call before reading the PSD)."""
        if self._agg is not None and self._beta_acc > 0:
            self._agglomerate(self._beta_acc / self.V_m3)
            self.M_solute = self.M_total - self.crystal_mass() - self.M_am
        self._beta_acc = 0.0
        self._t_acc = 0.0

    def _agglomerate(self, beta_int: float) -> None:
        """Fixed-pivot binary agglomeration with integrated kernel ``∫β dt / V`` (1/#).

        Events ``e_ij = ∫β dt/V · ψ_ij N_i N_j`` (i ≤ j, halved for i = j) remove one particle
        from class i and one from class j and add one agglomerate of volume ``v_i + v_j``, split
        onto the two neighbouring pivots so that number and volume are kept. Integrated with
        Heun's method (second order) over the split interval.
        """
        P = self.P
        N = P.sum(axis=0)
        nz = np.flatnonzero(N > 0)
        if nz.size == 0:
            return
        m = int(nz[-1]) + 1
        ntot = float(N.sum())
        # cap the collision probability per particle at 0.5 (the step control keeps it ≤ 0.2)
        scale = beta_int if beta_int * ntot <= 0.5 else 0.5 / ntot
        d1, ev1 = self._agg_change(P, m, scale)
        P1 = np.maximum(P + d1, 0.0)
        nz1 = np.flatnonzero(P1.any(axis=0))
        d2, ev2 = self._agg_change(P1, int(nz1[-1]) + 1, scale)
        self.P = np.maximum(P + 0.5 * (d1 + d2), 0.0)
        self._update_top()
        self._M_cryst = self.crystal_mass()
        self.ledger.agglomeration_events += 0.5 * (ev1 + ev2)

    def _agg_change(self, P: np.ndarray, m: int, scale: float) -> tuple[np.ndarray, float]:
        """Change of ``P`` by agglomeration events over the classes ``[0, m)``, and the event count."""
        pi, pj, w, k0, k1, f0, f1 = self._agg
        n_pairs = m * (m + 1) // 2
        N = P.sum(axis=0)
        ipi, ipj = pi[:n_pairs], pj[:n_pairs]
        ev = scale * w[:n_pairs] * N[ipi] * N[ipj]
        n = self.grid.n
        deaths = np.bincount(ipi, ev, minlength=n) + np.bincount(ipj, ev, minlength=n)
        births = np.bincount(k0[:n_pairs], ev * f0[:n_pairs], minlength=n) + np.bincount(
            k1[:n_pairs], ev * f1[:n_pairs], minlength=n)
        frac = np.divide(deaths, N, out=np.zeros(n), where=N > 0)
        d = -P * frac
        d[1] += births
        return d, float(ev.sum())


def _limited_slope(a: np.ndarray, b: np.ndarray, limiter: str) -> np.ndarray:
    """``b · ψ(a/b)`` for the van Leer or Koren limiter (0 for upwind)."""
    if limiter == "vanleer":
        aa, ab = np.abs(a), np.abs(b)
        return (a * ab + aa * b) / (aa + ab + 1e-300)
    if limiter == "koren":
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(b != 0, a / np.where(b != 0, b, 1.0), 0.0)
        psi = np.maximum(0.0, np.minimum(np.minimum(2.0 * r, (1.0 + 2.0 * r) / 3.0), 2.0))
        return b * psi
    return np.zeros_like(b)


def _fluxes(N: np.ndarray, nu, limiter: str) -> np.ndarray:
    """Flux-limited Lax–Wendroff fluxes (particles per step) through the interior interfaces
    ``i+1/2``, ``i = 0..n-2`` (last axis), for a positive Courant number ``nu`` (scalar or per
    interface). ``N`` has shape ``(..., n)``."""
    if limiter == "upwind":
        return nu * N[..., :-1]
    d = N[..., 1:] - N[..., :-1]
    a = np.empty_like(d)
    a[..., 0] = 0.0
    a[..., 1:] = d[..., :-1]
    s = _limited_slope(a, d, limiter)
    return nu * (N[..., :-1] + 0.5 * (1.0 - nu) * s)


def _advect(N: np.ndarray, nu, limiter: str) -> np.ndarray:
    """Advect towards larger index (last axis) with closed ends (no flux out of the last class)."""
    F = _fluxes(N, nu, limiter)
    out = N.copy()
    out[..., :-1] -= F
    out[..., 1:] += F
    return out


def _advect_out(N: np.ndarray, nu: float, limiter: str) -> tuple[np.ndarray, np.ndarray]:
    """Advect towards larger index with outflow (first order) through the last face.

    Returns the new array and the number that left (per leading index)."""
    F = _fluxes(N, nu, limiter)
    out = N.copy()
    out[..., :-1] -= F
    out[..., 1:] += F
    gone = np.asarray(nu * N[..., -1:])[..., 0]
    out[..., -1] -= gone
    return out, gone
