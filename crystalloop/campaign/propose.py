"""Propose the next batch: NSGA-II on an acquisition view of the twin, then a spread-out batch.

* :func:`propose` — ``n`` recipes to run next;
* :func:`select_batch` — the batch rule: extremes of each objective first, then greedily the
  point farthest from those chosen, never too close to a run already made;
* :func:`select_ehvi` — the batch by Monte-Carlo expected hypervolume improvement over the
  measured runs (``"ehvi"``: among the optimistic front; ``"mc-ehvi"``: among a wider pool — the
  optimistic front, each number of cycles' own optimistic front, a trust region around the
  measured front).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.campaign._labels import CampaignWarning
from crystalloop.errors import ConfigError, OptimizationError
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import (
    DEFAULT_BOUNDS,
    ProfileBounds,
    ThermocycleProfile,
    profiles_to_frame,
)

__all__ = ["ACQUISITIONS", "propose", "select_batch", "select_ehvi"]

ACQUISITIONS = ("mean", "pessimistic", "optimistic", "ehvi", "mc-ehvi", "hvi-ucb")


class _AcquisitionTwin:
    """A twin whose objective means are shifted to the optimistic bound (``mean + κ std`` for
    maximized, ``mean − κ std`` for minimized CQAs); stds unchanged."""

    def __init__(self, twin: Any, shifts: dict[str, float]) -> None:
        self.twin, self.shifts = twin, shifts
        self.cqas, self.max_cycles = list(twin.cqas), int(twin.max_cycles)
        self.feature_names = list(twin.feature_names)

    def predict_frame(self, X, *, cqas=None, warn=True):
        P = self.twin.predict_frame(X, cqas=cqas, warn=warn).copy()
        for c, s in self.shifts.items():
            if f"{c}_mean" in P and f"{c}_std" in P:
                P[f"{c}_mean"] = P[f"{c}_mean"] + s * np.nan_to_num(P[f"{c}_std"].to_numpy(float))
        return P


def _acquire(twin: Any, objectives, acquisition: str, kappa: float) -> tuple[Any, float]:
    """(twin for the optimizer, pessimistic k for DesignProblem)."""
    from crystalloop.digital_twin.design import parse_objectives

    if acquisition not in ACQUISITIONS:
        raise ConfigError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ConfigError(f"kappa must be a number >= 0 (std multiples), got {kappa!r}")
    if acquisition == "pessimistic":
        return twin, float(kappa)
    if acquisition in ("optimistic", "ehvi", "mc-ehvi", "hvi-ucb") and kappa > 0:  # EHVI draws its candidates from the optimistic front
        objs = parse_objectives(objectives, list(twin.cqas))
        return _AcquisitionTwin(twin, {o.name: (kappa if o.direction == "max" else -kappa) for o in objs
                                       if o.name in twin.cqas}), 0.0
    return twin, 0.0


def _norm_features(A: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    return (A - lo) / span


def select_batch(front: pd.DataFrame, F: np.ndarray, Xf: np.ndarray, existing: np.ndarray, n: int, *,
                 min_distance: float = 0.05) -> list[int]:
    """Pick ``n`` rows of a predicted front: spread along it and away from runs already made.

    Rows closer than ``min_distance`` (RMS distance of feature vectors scaled to [0, 1] by
    the range of the DoE and the front) to an existing run or to a row already chosen are
    skipped; the extremes of each objective come first, then greedily the row farthest (in
    objectives scaled to [0, 1]) from those chosen — the rule of
    :func:`~crystalloop.digital_twin.design.spread_points`. If too few rows are far enough,
    the remaining picks are the rows farthest from everything chosen and run.

    Parameters
    ----------
    front : DataFrame
        Front rows (only its length is used; the order of ``F`` and ``Xf`` follows it).
    F : ndarray, shape (m, n_obj)
        Objectives to minimize.
    Xf : ndarray, shape (m, n_features)
        Twin feature vectors of the rows.
    existing : ndarray, shape (k, n_features)
        Feature vectors of the runs already made.
    n : int
    min_distance : float

    Returns
    -------
    list of int
        Positions in ``front`` (at most ``min(n, len(front))``).
    """
    m = len(front)
    if m == 0:
        return []
    allX = np.vstack([Xf, existing]) if len(existing) else Xf
    lo, hi = allX.min(axis=0), allX.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    Zx = _norm_features(Xf, lo, span)
    Ex = _norm_features(existing, lo, span) if len(existing) else np.zeros((0, Xf.shape[1]))
    d_exist = (np.sqrt(((Zx[:, None, :] - Ex[None]) ** 2).mean(axis=2)).min(axis=1) if len(Ex)
               else np.full(m, np.inf))
    flo, fhi = F.min(axis=0), F.max(axis=0)
    Zf = (F - flo) / np.where(fhi > flo, fhi - flo, 1.0)
    chosen: list[int] = []

    def far_enough(i: int) -> bool:
        if d_exist[i] < min_distance:
            return False
        return all(np.sqrt(((Zx[i] - Zx[j]) ** 2).mean()) >= min_distance for j in chosen)

    for j in range(Zf.shape[1]):
        for i in np.argsort(Zf[:, j], kind="stable"):
            if far_enough(int(i)):
                if int(i) not in chosen:
                    chosen.append(int(i))
                break
        if len(chosen) >= n:
            return chosen[:n]
    while len(chosen) < min(n, m):
        cand = [i for i in range(m) if i not in chosen and far_enough(i)]
        if not cand:
            break
        d = np.min(np.linalg.norm(Zf[cand][:, None, :] - Zf[chosen][None], axis=2), axis=1) if chosen \
            else np.zeros(len(cand))
        chosen.append(cand[int(np.argmax(d))])
    while len(chosen) < min(n, m):  # relax: farthest in feature space from runs and picks
        rest = [i for i in range(m) if i not in chosen]
        ref = np.vstack([Ex, Zx[chosen]]) if chosen else Ex
        d = (np.sqrt(((Zx[rest][:, None, :] - ref[None]) ** 2).mean(axis=2)).min(axis=1) if len(ref)
             else np.zeros(len(rest)))
        chosen.append(rest[int(np.argmax(d))])
    return chosen


def _hv_min(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of points ``F`` (to minimize) up to ``ref``; exact sweep in 2-D, pymoo beyond."""
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)]
    if not len(F):
        return 0.0
    if F.shape[1] != 2:
        from pymoo.indicators.hv import HV

        return float(HV(ref_point=ref)(F))
    F = F[np.lexsort((F[:, 1], F[:, 0]))]
    hv, y = 0.0, float(ref[1])
    for f1, f2 in F:
        if f2 < y:
            hv += (float(ref[0]) - f1) * (y - f2)
            y = float(f2)
    return hv


def _hvi_2d(P: np.ndarray, F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact hypervolume improvement of each point of ``P`` (shape (..., 2), to minimize) over the
    front ``F`` (shape (k, 2)) up to ``ref``: the area a point dominates that ``F`` does not."""
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)] if len(F) else np.zeros((0, 2))
    F = F[np.lexsort((F[:, 1], F[:, 0]))]
    # staircase of F: for x in [xs[i], xs[i+1]) the front's best second objective is ys[i]
    xs = np.r_[-np.inf, F[:, 0], ref[0]]
    ys = np.r_[ref[1], np.minimum.accumulate(F[:, 1]) if len(F) else np.zeros(0)]
    ys = np.minimum(ys, ref[1])
    p0, p1 = P[..., 0:1], P[..., 1:2]
    width = np.clip(np.minimum(xs[1:], ref[0]) - np.maximum(xs[:-1], p0), 0.0, None)
    height = np.clip(ys - p1, 0.0, None)
    out = np.sum(width * height, axis=-1)
    return np.where(np.all(np.isfinite(P), axis=-1), out, 0.0)


def select_ehvi(mu: np.ndarray, sd: np.ndarray, measured: np.ndarray, sign: np.ndarray, reference: np.ndarray,
                n: int, *, eligible: np.ndarray | None = None, n_samples: int = 128, seed: int = 0,
                X: np.ndarray | None = None, min_distance: float = 0.0) -> list[int]:
    """Greedy batch by expected hypervolume improvement over the measured runs.

    For each candidate the improvement of the measured front's hypervolume is averaged over
    ``n_samples`` draws of its objectives from the twin's predictive distribution
    ``N(mu, sd)`` (independent per objective; common random numbers for every candidate).
    The best candidate joins the batch and its predicted mean joins the front (the "believer"
    rule for batches), so the next pick improves on a different part of the front.

    Parameters
    ----------
    mu, sd : ndarray, shape (m, n_obj)
        Predicted mean and standard deviation of each candidate, natural units.
    measured : ndarray, shape (k, n_obj)
        Objective values of the runs measured so far, natural units.
    sign : ndarray, shape (n_obj,)
        +1 for minimized, -1 for maximized objectives.
    reference : ndarray, shape (n_obj,)
        Hypervolume reference point, natural units.
    n : int
        Batch size.
    eligible : ndarray of bool, shape (m,), optional
        Candidates allowed (e.g. far enough from the runs already made).
    n_samples, seed : int
    X : ndarray, shape (m, d), optional
        Candidates' coordinates (e.g. feature vectors scaled to [0, 1]); with ``min_distance``,
        a pick makes every candidate closer than ``min_distance`` (RMS over ``d``) to it
        ineligible, so a batch does not spend runs on near-copies of one recipe.
    min_distance : float

    Returns
    -------
    list of int
        Chosen candidates in order of choice (fewer than ``n`` if fewer are eligible).
    """
    mu, sd = np.atleast_2d(np.asarray(mu, float)), np.atleast_2d(np.nan_to_num(np.asarray(sd, float)))
    sign, ref = np.asarray(sign, float), np.asarray(reference, float) * np.asarray(sign, float)
    front = np.atleast_2d(np.asarray(measured, float)).reshape(-1, mu.shape[1]) * sign
    ok = np.ones(len(mu), bool) if eligible is None else np.asarray(eligible, bool).copy()
    Z = np.random.default_rng(seed).standard_normal((int(n_samples), mu.shape[1]))
    chosen: list[int] = []
    while len(chosen) < n and ok.any():
        gain = np.full(len(mu), -np.inf)
        idx = np.flatnonzero(ok)
        if mu.shape[1] == 2:  # exact, all candidates and draws at once
            draws = (mu[idx, None, :] + sd[idx, None, :] * Z[None]) * sign
            gain[idx] = _hvi_2d(draws, front, ref).mean(axis=1)
        else:
            base = _hv_min(front, ref)
            for i in idx:
                draws = (mu[i] + sd[i] * Z) * sign
                gain[i] = np.mean([_hv_min(np.vstack([front, d]), ref) for d in draws]) - base
        best = int(np.argmax(gain))
        chosen.append(best)
        ok[best] = False
        if X is not None and min_distance > 0:
            ok &= np.sqrt(((np.asarray(X, float) - np.asarray(X, float)[best]) ** 2).mean(axis=1)) >= min_distance
        front = np.vstack([front, mu[best] * sign])
    return chosen


def propose(twin: Any, objectives: str | Sequence[str], n: int, *, existing: np.ndarray | None = None,
            cycles: str | int | Sequence[int] = "1-4", mixed: bool = True, constraints: Any = None,
            acquisition: str = "optimistic", kappa: float = 1.0, min_distance: float = 0.05,
            pop_size: int = 40, n_gen: int = 30, seed: int = 0, bounds: Any = None,
            limits: ThermostatLimits | None = None,
            measured: np.ndarray | None = None, reference: Sequence[float] | None = None,
            callback: Callable[[str, int, int], None] | None = None) -> tuple[list[ThermocycleProfile], pd.DataFrame]:
    """``n`` recipes to run next: NSGA-II on the twin, then :func:`select_batch`.

    Parameters
    ----------
    twin : DigitalTwin
        Any object with ``cqas``, ``max_cycles``, ``feature_names``, ``predict``.
    objectives : str or sequence
        ``"max:D50,min:DoA"``.
    n : int
        Recipes wanted.
    existing : ndarray (k, n_features), optional
        Twin feature vectors of the runs already made (kept at a distance).
    cycles, mixed : see :func:`~crystalloop.digital_twin.design.optimize_design`
        Default: one instance where 1–4 cycles is itself a variable.
    constraints : optional
        Outcome constraints (``"crystallinity>=75"``) judged on the acquisition values.
    acquisition : {"mean", "pessimistic", "optimistic", "ehvi", "mc-ehvi"}
        What NSGA-II optimizes: the predicted mean, ``mean ∓ κ std`` (pessimistic) or
        ``mean ± κ std`` (optimistic: explores where the twin is uncertain). ``"ehvi"`` takes
        the optimistic front as candidates and picks the batch by expected hypervolume
        improvement over the measured runs (:func:`select_ehvi`, needs ``measured`` and
        ``reference``) instead of spreading it along the front; the picks of a batch keep
        ``min_distance`` from each other as from the runs made (no near-copies in one batch).
        ``"mc-ehvi"`` picks the same way from a wider pool: the optimistic front, the optimistic
        front of *each* number of cycles (a mixed front is dominated by the structure the twin
        knows best) and a trust region around the recipes of the measured front
        (:func:`_wide_pool`; needs ``existing`` rows aligned with ``measured``). ``"hvi-ucb"``:
        the same pool, each candidate scored by the hypervolume improvement of its optimistic
        point ``mean ± κ std`` (upper confidence bound). On the plant benchmark
        (``docs/benchmarks.md``, "Campaign vs qNEHVI") ``"ehvi"`` did best; the wider pools did
        not help.
    kappa : float
        κ, in standard deviations.
    min_distance, pop_size, n_gen, seed, bounds, callback
        Selection distance (features scaled to [0, 1]) and the NSGA-II settings.
    limits : ThermostatLimits, optional
        The thermostat's range and ramp limit: proposals stay inside them.
    measured : ndarray (k, n_objectives), optional
        Objective values of the runs measured so far (natural units; for ``"ehvi"``).
    reference : sequence of float, optional
        Hypervolume reference point (natural units; for ``"ehvi"``).

    Returns
    -------
    profiles : list of ThermocycleProfile
    table : DataFrame
        The chosen front rows with the twin's *unshifted* ``{cqa}_mean``/``{cqa}_std``
        and ``selected_by`` (``front`` or ``random`` when the front was too short).
    """
    from crystalloop.digital_twin.design import optimize_design, parse_cycles

    if int(n) != n or n < 1:
        raise ConfigError(f"batch size must be a whole number >= 1, got {n!r}")
    wide = acquisition in ("mc-ehvi", "hvi-ucb")
    if acquisition in ("ehvi", "mc-ehvi", "hvi-ucb") and (measured is None or reference is None):
        raise ConfigError(f"acquisition {acquisition!r} needs measured= (objective values of the runs so far) and reference= "
                          "(the hypervolume reference point)")
    acq_twin, pess = _acquire(twin, objectives, acquisition, kappa)
    res = optimize_design(acq_twin, objectives, cycles=cycles, mixed=mixed, constraints=constraints,
                          pessimistic=pess, bounds=bounds, limits=limits, pop_size=pop_size, n_gen=n_gen,
                          seed=seed, n_jobs=1, callback=callback)
    front = res.front
    glob = np.flatnonzero(front["pareto_global"].to_numpy(bool))
    order = np.r_[glob, np.setdiff1d(np.arange(len(front)), glob)]
    profiles_all = [res.profiles[i] for i in order]
    sub = front.iloc[order].reset_index(drop=True)
    Xf = profiles_to_frame(profiles_all, int(twin.max_cycles))[list(twin.feature_names)].to_numpy(float)
    F = res.objective_matrix(order)
    ex = np.zeros((0, Xf.shape[1])) if existing is None else np.atleast_2d(np.asarray(existing, float))
    if acquisition in ("ehvi", "mc-ehvi", "hvi-ucb"):
        if wide:  # widen the pool: each structure's own optimistic front, a trust region around the measured front
            if mixed and len(parse_cycles(cycles)) > 1:
                per = optimize_design(acq_twin, objectives, cycles=cycles, mixed=False, constraints=constraints,
                                      pessimistic=pess, bounds=bounds, limits=limits, pop_size=pop_size, n_gen=n_gen,
                                      seed=seed + 1, n_jobs=1, callback=callback)
                profiles_all = profiles_all + list(per.profiles)
            extra, Xe = _wide_pool(twin, objectives, ex, measured, cycles=cycles, bounds=bounds, limits=limits,
                                   constraints=constraints, seed=seed)
            profiles_all = profiles_all + extra
            Xf = profiles_to_frame(profiles_all, int(twin.max_cycles))[list(twin.feature_names)].to_numpy(float)
        picks = _ehvi_picks(twin, objectives, profiles_all, Xf, ex, int(n), measured, reference,
                            min_distance=min_distance, seed=seed, batch_gap=True,
                            kappa=float(kappa) if acquisition == "hvi-ucb" else None)
        how = [acquisition] * len(picks)
    else:
        picks = select_batch(sub.iloc[: len(glob)] if len(glob) >= n else sub,
                             F[: len(glob)] if len(glob) >= n else F, Xf[: len(glob)] if len(glob) >= n else Xf,
                             ex, int(n), min_distance=min_distance)
        how = ["front"] * len(picks)
    chosen = [profiles_all[i] for i in picks]
    if len(chosen) < n:  # a front shorter than the batch: fill with random feasible profiles
        from crystalloop.digital_twin.design import DesignSpace, parse_cycles

        ncs = parse_cycles(cycles)
        b = (ProfileBounds.from_dict({**DEFAULT_BOUNDS.to_dict(), **bounds}) if isinstance(bounds, dict)
             else bounds or DEFAULT_BOUNDS)
        space = DesignSpace((ncs[0], ncs[-1]) if len(ncs) > 1 else ncs[0], bounds=b)
        extra = space.to_profiles(space.sample(int(n) - len(chosen), np.random.default_rng(seed)))
        warnings.warn(f"the predicted front has {len(chosen)} usable point(s) for a batch of {n}; "
                      f"{len(extra)} random feasible recipe(s) complete the batch", CampaignWarning, stacklevel=2)
        chosen += extra
        how += ["random"] * len(extra)
    Xc = profiles_to_frame(chosen, int(twin.max_cycles))[list(twin.feature_names)].to_numpy(float)
    pred = twin.predict_frame(Xc, warn=False)  # optimize_design already warned about extrapolation once
    table = pd.concat([pd.DataFrame({"selected_by": how}), pred.reset_index(drop=True)], axis=1)
    return chosen, table


def _ehvi_picks(twin: Any, objectives, profiles: list[ThermocycleProfile], Xf: np.ndarray, existing: np.ndarray,
                n: int, measured, reference, *, min_distance: float, seed: int,
                kappa: float | None = None, batch_gap: bool = False) -> list[int]:
    """EHVI batch among the candidate profiles (those not within ``min_distance`` of a run made).

    ``kappa``: score each candidate by the improvement of its optimistic point ``mean ± κ std`` instead (UCB).
    ``batch_gap``: the picks of one batch also keep ``min_distance`` from each other."""
    from crystalloop.digital_twin.design import parse_objectives

    objs = parse_objectives(objectives, list(twin.cqas))
    pred = twin.predict_frame(Xf, warn=False)
    mu = np.column_stack([pred[f"{o.name}_mean"].to_numpy(float) if o.name in twin.cqas
                          else np.array([p.batch_time_min for p in profiles]) for o in objs])
    sd = np.column_stack([pred[f"{o.name}_std"].to_numpy(float) if o.name in twin.cqas
                          else np.zeros(len(profiles)) for o in objs])
    lo = np.vstack([Xf, existing]).min(axis=0) if len(existing) else Xf.min(axis=0)
    hi = np.vstack([Xf, existing]).max(axis=0) if len(existing) else Xf.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    Z, E = (Xf - lo) / span, (existing - lo) / span
    far = (np.sqrt(((Z[:, None, :] - E[None]) ** 2).mean(axis=2)).min(axis=1) >= min_distance if len(E)
           else np.ones(len(Z), bool))
    M = np.atleast_2d(np.asarray(measured, float))
    M = M[np.all(np.isfinite(M), axis=1)] if M.size else np.zeros((0, len(objs)))
    sign = np.array([o.sign for o in objs])
    if kappa is not None:  # UCB: the optimistic point, no sampling
        mu, sd = mu - sign * kappa * sd, np.zeros_like(sd)
    return select_ehvi(mu, sd, M, sign, np.asarray(reference, float), n, eligible=far, seed=seed,
                       X=Z if batch_gap else None, min_distance=min_distance)


#: trust-region steps (fraction of each variable's bound width, 1 σ), candidates and centres
_TR_STEPS = (0.03, 0.08, 0.15)
_TR_SIZE, _TR_CENTRES = 300, 8


def _wide_pool(twin: Any, objectives, existing: np.ndarray, measured, *, cycles, bounds, limits, constraints,
               seed: int) -> tuple[list[ThermocycleProfile], np.ndarray]:
    """A trust region around the measured front: perturbations of its recipes (Gaussian steps
    of :data:`_TR_STEPS` of the bound widths in the design's decision space, the number of cycles
    moved by one for a quarter of them); outcome constraints are judged on the twin's mean.
    Returns the profiles and their feature rows (none when no measured recipe fits the space)."""
    from crystalloop.digital_twin.design import (
        DesignSpace,
        nondominated,
        parse_constraints,
        parse_cycles,
        parse_objectives,
    )

    rng = np.random.default_rng([int(seed), 4099])
    ncs = parse_cycles(cycles)
    b = (ProfileBounds.from_dict({**DEFAULT_BOUNDS.to_dict(), **bounds}) if isinstance(bounds, dict)
         else bounds or DEFAULT_BOUNDS)
    space = DesignSpace((ncs[0], ncs[-1]) if len(ncs) > 1 else ncs[0], bounds=b, limits=limits)
    xl, xu = space.bounds_arrays()
    parts = []
    M = np.atleast_2d(np.asarray(measured, float)) if measured is not None else np.zeros((0, 0))
    if len(existing) and M.shape[0] == len(existing):
        objs = parse_objectives(objectives, list(twin.cqas))
        ok = np.flatnonzero(np.all(np.isfinite(M), axis=1))
        F = M[ok] * np.array([o.sign for o in objs])
        front = ok[nondominated(F)] if len(ok) else ok
        # the front's recipes, then the best of each objective among the rest
        order = list(front) + [int(i) for j in range(F.shape[1]) for i in ok[np.argsort(F[:, j])] if i not in front]
        centres = []
        for i in order:
            p = ThermocycleProfile.from_features(existing[i], int(twin.max_cycles))
            try:
                centres.append(space.from_profiles([p])[0])
            except OptimizationError:  # a structure outside this design space (0 cycles, no final cooling)
                continue
            if len(centres) >= _TR_CENTRES:
                break
        if centres:
            C = np.asarray(centres)[rng.integers(0, len(centres), _TR_SIZE)]
            step = np.asarray(_TR_STEPS)[rng.integers(0, len(_TR_STEPS), _TR_SIZE)][:, None]
            X = C + rng.standard_normal(C.shape) * step * (xu - xl)
            if space.mixed:  # keep the number of cycles mostly; move it by one for a quarter
                X[:, 3] = C[:, 3] + np.where(rng.random(_TR_SIZE) < 0.25, rng.choice([-1.0, 1.0], _TR_SIZE), 0.0)
            parts.append(space.repair(X))
    if not parts:
        return [], np.zeros((0, len(twin.feature_names)))
    X = np.vstack(parts)
    feats = space.features(X, int(twin.max_cycles))
    cons = parse_constraints(constraints, [*twin.cqas, "batch_time_min"]) if constraints else []
    if cons:
        pred = twin.predict_frame(feats, warn=False)
        keep = np.ones(len(X), bool)
        for c in cons:
            v = space.batch_time_min(X) if c.name == "batch_time_min" else pred[f"{c.name}_mean"].to_numpy(float)
            keep &= c.g(v) <= 0
        X, feats = X[keep], feats[keep]
    return space.to_profiles(X), feats
