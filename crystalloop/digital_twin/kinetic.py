"""A small grey-box crystallization model whose constants are fitted to a DoE (issue 16).

A lab that runs a cooling crystallization knows the *form* of its kinetics (textbook power laws,
Randolph & Larson; Mersmann) and its solubility curve, but not the constants. :class:`KineticModel`
is that model, written from the textbook forms and independent of any simulator:

* relative supersaturation ``σ = (c − c*(T)) / c*(T)`` (``c`` in mg solute / g solvent);
* size-independent growth ``G = k_g σ^g exp(−E_g/R (1/T − 1/T_ref))`` (µm/min, ``T_ref`` 25 °C)
  when ``σ > 0``;
* dissolution ``D = k_d |σ|`` (µm/min) when ``σ < 0``: every crystal shrinks, crystals that reach
  zero size are gone (the seeds can be lost);
* secondary nucleation ``B = k_b σ^b (M + m_0)`` (#/min per g solvent; ``M`` crystal mass, ``m_0``
  a small floor, 1 % of the seed mass, for a batch that has lost its crystals);
* seeds: ``seed_loading × c0`` mg per g solvent, log-normal sizes (``seed_size_um``,
  ``seed_spread``) on a few classes;
* solute balance ``dc/dt = −dM/dt``, with the step never crossing the solubility (growth stops at
  ``c*``, dissolution at ``c*`` or when the crystals are gone).

The population is tracked as cohorts (the seed classes and one cohort of nuclei per time step) that
all move with the same ``G``: the method of characteristics for size-independent growth, which
unlike a moment closure handles crystals that dissolve away and gives the volume-weighted median
size (D50) directly. Every recipe is integrated on its own time grid (a fixed number of steps per
batch) by a loop compiled with numba, one recipe per iteration (about 6 µs per recipe and constant
set; :mod:`crystalloop.digital_twin._kinetic_kernel`); without numba, or with
``use_numba=False``, by numpy with all recipes advanced together (8× slower, equal to float
rounding).

:func:`kinetic_features` returns, per recipe, the model's mechanistic quantities (predicted D50,
mean size, nuclei share, seed survival, peak and integral supersaturation, ...);
:class:`KineticModel` fits the constants to measured D50 by robust least squares on ``log D50``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import differential_evolution, least_squares
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import InsufficientDataError, SchemaError
from crystalloop.profiles import feature_names as profile_feature_names

from ._kinetic_kernel import have_numba, integrate
from .features import SolubilityCurve

__all__ = ["KineticModel", "kinetic_features", "KINETIC_FEATURES", "KINETIC_STATE_FEATURES", "KINETIC_LAST_FEATURES",
           "KINETIC_PARAMS", "DEFAULT_THETA", "THETA_BOUNDS"]

#: the fitted constants: log10 k_g (µm/min at 25 °C), g, E_g (kJ/mol), log10 k_b (# per mg crystal per min), b,
#: log10 k_d (µm/min), ln of the factor from the model D50 to the measured one (agglomerates, shape, method)
KINETIC_PARAMS = ("log10_kg", "g", "Eg_kJ_mol", "log10_kb", "b", "log10_kd", "ln_size_factor")
DEFAULT_THETA = (0.0, 1.5, 30.0, 6.0, 4.0, 1.0, 0.0)
THETA_BOUNDS = ((-3.0, 3.0), (0.5, 3.0), (0.0, 100.0), (-2.0, 12.0), (1.0, 8.0), (-2.0, 3.0), (-1.0, 1.5))

#: what the batch ends with and went through (sizes, seed survival, supersaturation peaks and integrals)
KINETIC_STATE_FEATURES = (
    "kin_d50_um", "kin_log_d50", "kin_mean_size_um", "kin_nuclei_mass_frac", "kin_seed_survival",
    "kin_seeds_lost", "kin_sigma_max", "kin_sigma_int_h", "kin_sigma_last_max", "kin_time_sigma_high_h",
    "kin_dissolved_mass_frac", "kin_yield", "kin_log_number", "kin_growth_mass_high_sigma",
)
#: the last growth period (since the last dissolution): ∫σ² dt and the share of the crystal mass it deposited
KINETIC_LAST_FEATURES = ("kin_sigma2_int_last_h", "kin_mass_frac_last")
KINETIC_FEATURES = KINETIC_STATE_FEATURES + KINETIC_LAST_FEATURES

_A = 6.5e-10  # ρ k_v in mg/µm³ (only scales the number of crystals; absorbed in k_b)
_R = 8.314


def _schedule(col: dict[str, np.ndarray], max_cycles: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Temperature on each recipe's own grid: ``T`` (n, n_steps + 1) in °C and ``dt`` (n,) in min."""
    n = col["c0_mg_g"].size
    slots = 2 * max_cycles + 1
    nseg = np.rint(col["n_segments"]).astype(int)
    times = np.zeros((n, 2 * slots + 1))
    temps = np.zeros((n, 2 * slots + 1))
    prev, t = col["t_start_c"].copy(), np.zeros(n)
    temps[:, 0] = prev
    for k in range(1, slots + 1):
        used = k <= nseg
        T, r, h = col[f"T{k}_c"], col[f"rate{k}_c_min"], col[f"hold{k}_min"]
        dT = np.where(used, T - prev, 0.0)
        ramp = np.where(used & (r > 0), np.abs(dT) / np.where(r > 0, r, 1.0), 0.0)
        t = t + ramp
        times[:, 2 * k - 1], temps[:, 2 * k - 1] = t, np.where(used, T, prev)
        t = t + np.where(used, h, 0.0)
        prev = np.where(used, T, prev)
        times[:, 2 * k], temps[:, 2 * k] = t, prev
    t_end = np.maximum(times[:, -1], 1.0)
    dt = t_end / n_steps
    grid = np.linspace(0.0, 1.0, n_steps + 1)
    out = np.empty((n, n_steps + 1))
    for i in range(n):  # breakpoints differ per recipe
        out[i] = np.interp(grid * t_end[i], times[i], temps[i])
    return out, dt


def _integrate_numpy(T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, rates, *, n_coh: int):
    """The cohort model's time loop with numpy, all recipes advanced together (the path without
    numba; :func:`crystalloop.digital_twin._kinetic_kernel.integrate` is the same row by row)."""
    kg, g, kb, b, kd = rates
    n, m = T.shape
    n_steps = m - 1
    n_seed_classes = len(Ls)
    h = dt
    L = np.zeros((n, n_coh))
    N = np.zeros((n, n_coh))
    L[:, :n_seed_classes] = Ls
    seeded = np.zeros(n, dtype=bool)
    c = c0.copy()
    m0 = 0.01 * m_seed
    sig_max = np.zeros(n)
    sig_int = np.zeros(n)
    t_high = np.zeros(n)
    diss = np.zeros(n)
    grown_high = np.zeros(n)
    grown = np.zeros(n)
    seed_min = np.ones(n)
    sig_last = np.zeros(n)
    sig2_last = np.zeros(n)
    m_last = np.zeros(n)
    M = np.zeros(n)
    for j in range(n_steps):
        charge = ~seeded & (T[:, j + 1] <= t_seed)
        if np.any(charge):
            N[:, :n_seed_classes] = np.where(charge[:, None], Ns, N[:, :n_seed_classes])
            L[:, :n_seed_classes] = np.where(charge[:, None], Ls[None, :], L[:, :n_seed_classes])
            M = M + np.where(charge, m_seed, 0.0)
            seeded |= charge
        csj = cs[:, j + 1]
        sig = (c - csj) / csj
        h = dt
        # nucleation into cohort j (born at zero size, grows from the next step on)
        pos = np.maximum(sig, 0.0)
        B = kb * pos**b * (M + m0)
        k = n_seed_classes + j + 1  # cohorts born so far (the rest are empty)
        N[:, k - 1] = B * h
        Nk, Lk = N[:, :k], L[:, :k]
        G = np.where(sig > 0, kg * pos**g * arr[:, j + 1], -kd * np.maximum(-sig, 0.0))
        dL = G * h
        Lnew = np.maximum(Lk + dL[:, None], 0.0)
        Mnew = _A * np.einsum("ij,ij->i", Nk, Lnew**3)
        dM = Mnew - M
        # never cross the solubility: growth uses at most c − c*, dissolution at most c* − c
        room = np.where(dM > 0, np.maximum(c - csj, 0.0), np.maximum(csj - c, 0.0))
        over = np.abs(dM) > room
        if np.any(over):
            f = np.where(over, room / np.maximum(np.abs(dM), 1e-300), 1.0)
            # shrink the step (the mass change is close to linear in dL for one step)
            for _ in range(2):
                Lnew = np.maximum(Lk + (dL * f)[:, None], 0.0)
                Mnew = _A * np.einsum("ij,ij->i", Nk, Lnew**3)
                dMf = Mnew - M
                bad = over & (np.abs(dMf) > room * 1.0001)
                if not np.any(bad):
                    break
                f = np.where(bad, f * room / np.maximum(np.abs(dMf), 1e-300), f)
            dM = Mnew - M
        N[:, :k] = np.where(Lnew <= 0.0, 0.0, Nk)
        L[:, :k] = Lnew
        c = c - dM
        M = Mnew
        sig_max = np.maximum(sig_max, sig)
        sig_int += pos * h
        t_high += np.where(sig > 0.02, h, 0.0)
        diss += np.maximum(-dM, 0.0)
        grown += np.maximum(dM, 0.0)
        grown_high += np.maximum(dM, 0.0) * pos
        seed_mass = _A * np.einsum("ij,ij->i", N[:, :n_seed_classes], L[:, :n_seed_classes] ** 3)
        seed_min = np.where(seeded, np.minimum(seed_min, seed_mass / np.maximum(m_seed, 1e-300)), seed_min)
        sig_last = np.where(dM < 0, 0.0, np.maximum(sig_last, sig))  # peak σ since the last dissolution
        sig2_last = np.where(dM < 0, 0.0, sig2_last + pos**2 * h)  # ∫σ² dt since the last dissolution
        m_last = np.where(dM < 0, 0.0, m_last + np.maximum(dM, 0.0))  # mass deposited since then
    acc = np.column_stack([c, M, sig_max, sig_int, t_high, diss, grown, grown_high, seed_min, sig_last, sig2_last,
                           m_last])
    return N, L, acc


def _summaries_numpy(N: np.ndarray, L: np.ndarray, n_seed_classes: int) -> np.ndarray:
    """Per recipe: total crystal volume Σ N L³, the volume-weighted median size (µm; cohorts sorted by
    size, Q3 linear between them), number Σ N, seed volume, Σ N L⁴; shape (n, 5)."""
    n, n_coh = N.shape
    vol = N * L**3
    total = vol.sum(1)
    order = np.argsort(L, axis=1)
    Ls_ = np.take_along_axis(L, order, 1)
    q3 = np.cumsum(np.take_along_axis(vol, order, 1), 1) / np.maximum(total, 1e-300)[:, None]
    idx = np.clip((q3 < 0.5).sum(1), 1, n_coh - 1)
    r = np.arange(n)
    q_lo, q_hi = q3[r, idx - 1], q3[r, idx]
    w = np.clip((0.5 - q_lo) / np.maximum(q_hi - q_lo, 1e-12), 0.0, 1.0)
    d50 = Ls_[r, idx - 1] + w * (Ls_[r, idx] - Ls_[r, idx - 1])
    return np.column_stack([total, d50, N.sum(1), vol[:, :n_seed_classes].sum(1), (N * L**4).sum(1)])


def _use_numba(use_numba: bool | None) -> bool:
    return have_numba() if use_numba is None else bool(use_numba) and have_numba()


def _simulate(theta: np.ndarray, c0: np.ndarray, seed: np.ndarray, T: np.ndarray, dt: np.ndarray,
              sol: SolubilityCurve, *, seed_size_um: float, seed_spread: float,
              seed_subcooling_c: float = 0.5, n_seed_classes: int = 5,
              use_numba: bool | None = None) -> dict[str, np.ndarray]:
    """Integrate the cohort model for all recipes; returns the mechanistic quantities (n,) each.

    ``use_numba``: the compiled loop (default when numba imports) or the numpy one (``False``);
    the two agree to float rounding."""
    lkg, g, eg, lkb, b, lkd, lnf = (float(v) for v in theta)
    kg, kb, kd = 10.0**lkg, 10.0**lkb, 10.0**lkd
    n, m = T.shape
    n_steps = m - 1
    cs = sol(T)  # (n, m)
    arr = np.exp(-eg * 1e3 / _R * (1.0 / (T + 273.15) - 1.0 / 298.15))  # Arrhenius, k_g at 25 °C
    # seed classes: equal-mass quantiles of a log-normal volume distribution
    q = (np.arange(n_seed_classes) + 0.5) / n_seed_classes
    Ls = seed_size_um * np.exp(seed_spread * norm.ppf(q))
    m_seed = seed * c0  # mg / g solvent
    Ns = (m_seed[:, None] / n_seed_classes) / (_A * Ls[None, :] ** 3)
    n_coh = n_seed_classes + n_steps
    # seeds are charged when the solution first cools to T_sat(c0) − seed_subcooling_c (lab practice:
    # seeds put into an undersaturated solution dissolve), or at once if the start is already there
    t_seed = sol.saturation_temperature(c0) - seed_subcooling_c
    args = (T, cs, arr, dt, c0, m_seed, Ns, Ls, t_seed, (kg, g, kb, b, kd))
    if _use_numba(use_numba):
        acc, summ = integrate(*args, A=_A, n_coh=n_coh)
    else:
        N, L, acc = _integrate_numpy(*args, n_coh=n_coh)
        summ = _summaries_numpy(N, L, n_seed_classes)
    c, M, sig_max, sig_int, t_high, diss, grown, grown_high, seed_min, sig_last, sig2_last, m_last = acc.T
    total, d50, number, seed_vol, nl4 = summ.T
    d50 = np.where(total > 0, np.maximum(d50, 1e-3), 1e-3) * np.exp(lnf)  # no crystals: "zero" size
    mean_size = np.divide(nl4, total, out=np.zeros(n), where=total > 0)
    return {
        "kin_d50_um": d50,
        "kin_log_d50": np.log(np.where(np.isfinite(d50), d50, 1e-3)),
        "kin_mean_size_um": mean_size,
        "kin_nuclei_mass_frac": np.divide(total - seed_vol, total, out=np.ones(n), where=total > 0),
        "kin_seed_survival": seed_min,
        "kin_seeds_lost": (seed_min <= 1e-9).astype(float),
        "kin_sigma_max": sig_max,
        "kin_sigma_int_h": sig_int / 60.0,
        "kin_sigma_last_max": sig_last,
        "kin_time_sigma_high_h": t_high / 60.0,
        "kin_dissolved_mass_frac": diss / np.maximum(c0, 1e-9),
        "kin_yield": 1.0 - c / c0,
        "kin_log_number": np.log10(np.maximum(number, 1e-300)),
        "kin_growth_mass_high_sigma": np.divide(grown_high, grown, out=np.zeros(n), where=grown > 0),
        "kin_sigma2_int_last_h": sig2_last / 60.0,
        "kin_mass_frac_last": np.divide(m_last, M, out=np.zeros(n), where=M > 0),
    }


def _soft_l1(r: np.ndarray, f: float) -> np.ndarray:
    return 2.0 * f**2 * (np.sqrt(1.0 + (r / f) ** 2) - 1.0)


def _columns(X, max_cycles: int) -> dict[str, np.ndarray]:
    names = profile_feature_names(max_cycles)
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise SchemaError(f"the kinetic model needs the recipe columns {missing[:6]}")
        return {c: X[c].to_numpy(dtype=float) for c in names}
    X = np.atleast_2d(np.asarray(X, dtype=float))
    if X.shape[1] != len(names):
        raise SchemaError(f"the kinetic model needs {len(names)} recipe columns ({names[0]} .. {names[-1]}) "
                          f"for max_cycles={max_cycles}; got {X.shape[1]}")
    return {c: X[:, i] for i, c in enumerate(names)}


def kinetic_features(X, theta: Sequence[float], *, solubility: SolubilityCurve, max_cycles: int = 4,
                     n_steps: int = 80, seed_size_um: float = 60.0, seed_spread: float = 0.3,
                     seed_subcooling_c: float = 0.5, use_numba: bool | None = None) -> pd.DataFrame:
    """Mechanistic quantities of recipe rows under the kinetic constants ``theta``.

    Parameters
    ----------
    X : DataFrame or ndarray, shape (n, len(feature_names(max_cycles)))
        Recipe vectors.
    theta : sequence of 7 float
        :data:`KINETIC_PARAMS`.
    solubility : SolubilityCurve
        ``c*(T)``, mg/g solvent, T in °C.
    n_steps : int
        Time steps per batch (each recipe on its own grid).
    seed_size_um, seed_spread : float
        Volume-median size (µm) and log-normal width of the seed crystals.
    seed_subcooling_c : float
        Seeds are charged when the solution first cools to ``T_sat(c0) − seed_subcooling_c`` (°C).
    use_numba : bool, optional
        Integrate with the compiled loop (default when numba imports: one recipe per iteration,
        about 10x faster) or with numpy, all recipes advanced together (``False``); they agree to
        float rounding.

    Returns
    -------
    DataFrame, columns :data:`KINETIC_FEATURES`
    """
    col = _columns(X, max_cycles)
    T, dt = _schedule(col, max_cycles, int(n_steps))
    out = _simulate(np.asarray(theta, float), col["c0_mg_g"], col["seed_loading"], T, dt, solubility,
                    seed_size_um=seed_size_um, seed_spread=seed_spread, seed_subcooling_c=seed_subcooling_c,
                    use_numba=use_numba)
    return pd.DataFrame(out)


class KineticModel(RegressorMixin, BaseEstimator):
    """The grey-box model of this module, its constants fitted to measured D50.

    Fits :data:`KINETIC_PARAMS` by robust (soft-L1) least squares on ``log D50`` within
    :data:`THETA_BOUNDS`: a global search (differential evolution with the size factor profiled
    out, deterministic for a given ``random_state``) followed by a bounded local fit. With 20–40
    runs the fit is not unique (a regime where the seeds grow and one where nucleation matters fit
    the DoE about equally well), so ``n_fits`` searches with seeds ``random_state + k`` are run and
    the model's quantities are averaged over their constants (a small ensemble of mechanistic models).

    Parameters
    ----------
    solubility : SolubilityCurve or dict
        ``c*(T)``, mg/g solvent, T in °C (required: the model runs on supersaturation).
    max_cycles : int
    n_steps : int
        Time steps per batch (each recipe on its own grid).
    seed_size_um, seed_spread : float
        Volume-median size (µm) and log-normal width of the seed crystals (the lab's seed sieve
        fraction; 60 µm by default).
    seed_subcooling_c : float
        Seeds are charged at ``T_sat(c0) − seed_subcooling_c`` (°C), the lab's seeding point.
    theta0 : sequence of float, optional
        Start a local fit from these constants instead of the global search.
    f_scale : float
        Soft-L1 scale on ``log D50`` (0.1 ≈ 10 %): runs the model cannot describe (e.g. partly
        amorphous product) weigh less.
    de_popsize, de_maxiter : int
        Differential evolution's population (per free constant) and generations.
    n_local : int
        Local fits started from the best members of the final population.
    n_fits : int
        Independent global searches whose constants form the ensemble.
    diff_step, max_nfev : float, int
        Finite-difference step (relative) and evaluation budget of each local fit.
    random_state : int, optional
        Seed of the global searches (``None``: 0).

    Attributes
    ----------
    thetas_ : ndarray, shape (n_fits, 7)
        Fitted constants of each search.
    theta_ : ndarray, shape (7,)
        The constants with the lowest robust cost.
    cost_ : float
        Lowest robust cost.
    rmse_log_ : float
        Root-mean-square residual of the ensemble's ``log D50`` on the training rows.
    """

    def __init__(self, solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4, n_steps: int = 80,
                 seed_size_um: float = 60.0, seed_spread: float = 0.3, seed_subcooling_c: float = 0.5,
                 theta0: Sequence[float] | None = None, f_scale: float = 0.1, de_popsize: int = 6,
                 de_maxiter: int = 10, n_local: int = 1, n_fits: int = 3, diff_step: float = 0.02, max_nfev: int = 30,
                 random_state: int | None = None) -> None:
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.n_steps = n_steps
        self.seed_size_um = seed_size_um
        self.seed_spread = seed_spread
        self.seed_subcooling_c = seed_subcooling_c
        self.theta0 = theta0
        self.f_scale = f_scale
        self.de_popsize = de_popsize
        self.de_maxiter = de_maxiter
        self.n_local = n_local
        self.n_fits = n_fits
        self.diff_step = diff_step
        self.max_nfev = max_nfev
        self.random_state = random_state

    def _curve(self) -> SolubilityCurve:
        s = self.solubility
        if s is None:
            raise SchemaError("KineticModel needs a solubility curve (mg/g solvent, T in °C)")
        return s if isinstance(s, SolubilityCurve) else SolubilityCurve.from_dict(s)

    def _kw(self) -> dict[str, Any]:
        return dict(seed_size_um=float(self.seed_size_um), seed_spread=float(self.seed_spread),
                    seed_subcooling_c=float(self.seed_subcooling_c))

    def fit(self, X, y) -> KineticModel:
        """Fit the constants to D50 ``y`` (µm, shape (n,)) of recipe rows ``X``."""
        col = _columns(X, self.max_cycles)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != col["c0_mg_g"].size:
            raise SchemaError(f"X has {col['c0_mg_g'].size} rows but y has {len(y)}")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise SchemaError("D50 must be finite and positive for every training row")
        if len(y) < 5:
            raise InsufficientDataError(f"KineticModel needs at least 5 rows; got {len(y)}")
        sol = self._curve()
        T, dt = _schedule(col, self.max_cycles, int(self.n_steps))
        base = 0 if self.random_state is None else int(self.random_state)
        fits = [self._fit_one(col, np.log(y), sol, T, dt, base + k) for k in range(max(int(self.n_fits), 1))]
        self.thetas_ = np.vstack([f.x for f in fits])
        self.theta_ = self.thetas_[int(np.argmin([f.cost for f in fits]))]
        self.cost_ = float(min(f.cost for f in fits))
        self.n_features_in_ = len(profile_feature_names(self.max_cycles))
        self.rmse_log_ = float(np.sqrt(np.mean((self.features(X)["kin_log_d50"].to_numpy() - np.log(y)) ** 2)))
        return self

    def _fit_one(self, col: dict[str, np.ndarray], ly: np.ndarray, sol: SolubilityCurve, T: np.ndarray, dt: np.ndarray,
                 seed_: int):
        c0, seed = col["c0_mg_g"], col["seed_loading"]
        kw = self._kw()

        def resid(th):
            d = _simulate(th, c0, seed, T, dt, sol, **kw)["kin_d50_um"]
            return np.log(np.where(np.isfinite(d), np.maximum(d, 1e-3), 1e-3)) - ly

        lo, hi = np.array(THETA_BOUNDS).T
        f = float(self.f_scale)
        j_f = KINETIC_PARAMS.index("ln_size_factor")
        if self.theta0 is not None:
            starts = [np.asarray(self.theta0, float)]
        else:
            # global search (differential evolution, deterministic with the seed) over the kinetic
            # constants, the size factor profiled out (the median log residual): the regimes "seeds
            # grow" and "nucleation matters" are separate basins that a local fit does not cross
            free = [j for j in range(len(lo)) if j != j_f]

            def full(z):
                th = np.empty(len(lo))
                th[free] = z
                th[j_f] = 0.0
                r = resid(th)
                th[j_f] = np.clip(-np.median(r), lo[j_f], hi[j_f])
                return th, r + th[j_f]

            def cost(z):
                return float(np.sum(_soft_l1(full(z)[1], f)))

            de = differential_evolution(cost, list(zip(lo[free], hi[free], strict=True)), popsize=int(self.de_popsize),
                                        maxiter=int(self.de_maxiter), tol=0.0, polish=False, init="sobol",
                                        seed=seed_)
            pop = de.population[np.argsort(de.population_energies, kind="stable")]
            starts = [full(z)[0] for z in pop[: int(self.n_local)]]
        best = None
        for s0 in starts:
            r = least_squares(resid, np.clip(s0, lo + 1e-6, hi - 1e-6), bounds=(lo, hi), loss="soft_l1",
                              f_scale=f, diff_step=float(self.diff_step), max_nfev=int(self.max_nfev))
            if best is None or r.cost < best.cost:
                best = r
        return best

    def features(self, X) -> pd.DataFrame:
        """:func:`kinetic_features` of ``X``, averaged over the fitted constant sets (``thetas_``);
        ``kin_log_d50`` is the mean of the members' log D50 and ``kin_d50_um`` its exponential."""
        check_is_fitted(self, "thetas_")
        col = _columns(X, self.max_cycles)
        T, dt = _schedule(col, self.max_cycles, int(self.n_steps))  # once for every constant set
        sol = self._curve()
        F = [pd.DataFrame(_simulate(np.asarray(th, float), col["c0_mg_g"], col["seed_loading"], T, dt, sol, **self._kw()))
             for th in np.atleast_2d(self.thetas_)]
        out = sum(F[1:], F[0]) / len(F)
        out["kin_d50_um"] = np.exp(out["kin_log_d50"])
        return out

    def predict(self, X) -> np.ndarray:
        """Model D50 (µm), shape (n,)."""
        return self.features(X)["kin_d50_um"].to_numpy()
