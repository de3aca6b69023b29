"""Thermocycle design on the digital twin: the pymoo problem, the algorithm, the study.

Three pieces, kept apart as in pymoo:

* :class:`DesignProblem` — a vectorized :class:`pymoo.core.problem.Problem`: decision
  variables and feasibility from a :class:`~crystalloop.digital_twin.design_space.DesignSpace`,
  objectives and outcome constraints by name, evaluated with one twin call per generation.
* :func:`make_algorithm` — NSGA-II with a feasible initial sampling and a repair that keeps
  every candidate a valid profile (seedable).
* the termination, e.g. ``("n_gen", 200)``, passed to ``algorithm.setup`` or ``pymoo.optimize.minimize``.

:func:`optimize_design` runs one instance per number of cycles (the paper's Fig. 7) or the
mixed formulation and returns a :class:`~crystalloop.digital_twin.design_result.DesignResult`.

Ask/tell, for a campaign that measures candidates on a real or virtual crystallizer::

    problem = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=2)
    algorithm = make_algorithm(problem, pop_size=8, seed=1)
    algorithm.setup(problem, termination=("n_gen", 5))
    while algorithm.has_next():
        pop = algorithm.ask()
        profiles = problem.space.to_profiles(pop.get("X"))
        cqas = pd.DataFrame([simulate(p).cqas for p in profiles])
        tell_measured(algorithm, problem, pop, cqas)
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from crystalloop.digital_twin.design_space import DesignSpace
from crystalloop.digital_twin.design_spec import (
    BATCH_TIME,
    Objective,
    OutcomeConstraint,
    parse_constraints,
    parse_cycles,
    parse_objectives,
)
from crystalloop.errors import InfeasibleError, ModelError, OptimizationError
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds

__all__ = [
    "DesignProblem",
    "make_algorithm",
    "tell_measured",
    "optimize_design",
    "hypervolume",
]


#: objective and constraint value of a candidate without a result (failed batch, NaN prediction)
_NO_RESULT = 1e30


def _check_twin(twin: Any) -> None:
    missing = [a for a in ("cqas", "max_cycles", "feature_names", "predict") if not hasattr(twin, a)]
    if missing:
        raise ModelError(
            f"the twin ({type(twin).__name__}) lacks {missing}; expected a DigitalTwin with .cqas, "
            f".max_cycles, .feature_names and predict(X)"
        )


def _bounds_from(bounds: ProfileBounds | dict | None) -> ProfileBounds:
    if bounds is None:
        return DEFAULT_BOUNDS
    if isinstance(bounds, ProfileBounds):
        return bounds
    if isinstance(bounds, dict):
        merged = {**DEFAULT_BOUNDS.to_dict(), **bounds}
        try:
            return ProfileBounds.from_dict(merged)
        except (ValueError, TypeError) as e:
            raise OptimizationError(f"design bounds: {e}") from None
    raise OptimizationError(f"bounds must be a ProfileBounds or a dict, got {type(bounds).__name__}")


class DesignProblem(Problem):
    """Multi-objective thermocycle design on a twin, as a vectorized pymoo problem.

    Parameters
    ----------
    twin : DigitalTwin
        Any object with ``cqas``, ``max_cycles``, ``feature_names`` and ``predict(X)``
        returning a DataFrame with ``{cqa}_mean`` and ``{cqa}_std`` columns.
    objectives : str or sequence
        ``"max:D50,min:DoA"`` or a list of such strings / :class:`Objective`.
    n_cycles : int or (int, int)
        Cycles of every profile, or a ``(low, high)`` range for the mixed formulation.
    constraints : sequence of str, optional
        Outcome constraints such as ``"crystallinity>=75"`` or ``"batch_time<=600"``.
    bounds : ProfileBounds or dict, optional
        Decision-variable bounds (DOMAIN.md §1 by default); a dict overrides single fields.
    limits : ThermostatLimits, optional
        Thermostat working range and ramp limit.
    max_batch_time_min : float, optional
        Shortcut for the constraint ``batch_time<=value``.
    pessimistic : float
        ``k`` >= 0: objectives and constraints use ``mean - k std`` for quantities that
        should be large and ``mean + k std`` for those that should be small (0 = mean).
    holds, final_cooling, min_step_c
        See :class:`DesignSpace`.

    Attributes
    ----------
    space : DesignSpace
    objectives : list of Objective
    outcome_constraints : list of OutcomeConstraint
    constraint_labels : list of str
        One label per column of ``G``.
    n_twin_calls, n_twin_rows : int
        Twin calls and candidate rows evaluated so far.
    """

    def __init__(
        self,
        twin: Any,
        objectives: str | Sequence[str | Objective] = ("max:D50", "min:DoA"),
        *,
        n_cycles: int | tuple[int, int] = 4,
        constraints: Sequence[str | OutcomeConstraint] | str | None = None,
        bounds: ProfileBounds | dict | None = None,
        limits: Any = None,
        max_batch_time_min: float | None = None,
        pessimistic: float = 0.0,
        holds: bool = False,
        final_cooling: bool = True,
        min_step_c: float = 1.0,
    ) -> None:
        _check_twin(twin)
        self.twin = twin
        cqas = list(twin.cqas)
        self.objectives = parse_objectives(objectives, cqas)
        cons = list(parse_constraints(constraints, cqas))
        if max_batch_time_min is not None:
            if not (np.isfinite(max_batch_time_min) and max_batch_time_min > 0):
                raise OptimizationError(f"max_batch_time_min must be > 0 min, got {max_batch_time_min}")
            cons.append(OutcomeConstraint(BATCH_TIME, "<=", float(max_batch_time_min)))
        self.outcome_constraints = parse_constraints(cons, cqas)  # re-check contradictions
        if not (np.isfinite(pessimistic) and pessimistic >= 0):
            raise OptimizationError(f"pessimistic must be a number k >= 0 (std multiples), got {pessimistic}")
        self.pessimistic = float(pessimistic)
        b = _bounds_from(bounds)
        if np.max(n_cycles) > int(twin.max_cycles):
            raise OptimizationError(
                f"{int(np.max(n_cycles))} cycles requested but the twin was fitted for at most "
                f"max_cycles={twin.max_cycles}"
            )
        self.space = DesignSpace(
            tuple(n_cycles) if isinstance(n_cycles, (tuple, list)) else int(n_cycles),
            bounds=b, limits=limits, holds=holds, final_cooling=final_cooling, min_step_c=min_step_c,
        )
        canon = self.space.feature_names(int(twin.max_cycles))
        unknown = [f for f in twin.feature_names if f not in canon]
        if unknown:
            raise ModelError(
                f"twin feature(s) {unknown} are not thermocycle profile features {canon[:6]}...; "
                f"cannot design profiles for this twin"
            )
        self._cols = np.array([canon.index(f) for f in twin.feature_names])
        self._twin_max_cycles = int(twin.max_cycles)
        try:
            params = inspect.signature(twin.predict).parameters
        except (TypeError, ValueError):
            params = {}
        self._twin_kw = {k for k in ("cqas", "warn") if k in params}
        names = {o.name for o in self.objectives} | {c.name for c in self.outcome_constraints}
        self._twin_needed = sorted(names - {BATCH_TIME})
        self.constraint_labels = [
            f"segment {k + 1} must {'cool' if k % 2 == 0 else 'heat'} by >= {min_step_c:g} °C"
            for k in range(self.space.n_slots)
        ] + [str(c) for c in self.outcome_constraints]
        self.n_twin_calls = 0
        self.n_twin_rows = 0
        self.best_g = np.full(len(self.constraint_labels), np.inf)
        xl, xu = self.space.bounds_arrays()
        super().__init__(
            n_var=self.space.n_var, n_obj=len(self.objectives),
            n_ieq_constr=len(self.constraint_labels), xl=xl, xu=xu, elementwise=False,
        )

    # ------------------------------------------------------------------ quantities
    def features(self, X: np.ndarray) -> np.ndarray:
        """Twin feature matrix (columns in ``twin.feature_names`` order)."""
        return self.space.features(X, self._twin_max_cycles)[:, self._cols]

    def predict(self, X: np.ndarray, cqas: Sequence[str] | None = None) -> pd.DataFrame:
        """One twin call for all rows of ``X``: ``{cqa}_mean``/``{cqa}_std`` for ``cqas``
        (default: those the objectives and constraints need) plus ``batch_time_min``."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        cqas = self._twin_needed if cqas is None else list(cqas)
        pred = None
        if cqas and len(X):
            pred = self.twin.predict(self.features(X), **self._predict_kw(cqas))
            self.n_twin_calls += 1
            self.n_twin_rows += len(X)
        return self._table(X, pred, cqas)

    def _table(self, X: np.ndarray, pred: pd.DataFrame | None, cqas: Sequence[str]) -> pd.DataFrame:
        """Quantity table of ``X`` from a twin prediction (rows aligned) plus the batch time."""
        out = pd.DataFrame(index=range(len(X)))
        if pred is not None:
            for c in cqas:
                for suffix in ("_mean", "_std"):
                    if c + suffix not in pred.columns:
                        raise ModelError(
                            f"twin.predict returned no column {c + suffix!r}; got {list(pred.columns)}"
                        )
                    out[c + suffix] = np.asarray(pred[c + suffix], dtype=float)
        out[BATCH_TIME + "_mean"] = self.space.batch_time_min(X) if len(X) else []
        out[BATCH_TIME + "_std"] = 0.0
        return out

    def _predict_kw(self, cqas: Sequence[str]) -> dict[str, Any]:
        """Optional keywords of ``DigitalTwin.predict`` when the twin has them: only the CQAs
        needed, and its extrapolation warning only once (see :meth:`check_extrapolation`)."""
        kw: dict[str, Any] = {}
        if "cqas" in self._twin_kw:
            kw["cqas"] = list(cqas)
        if "warn" in self._twin_kw:
            kw["warn"] = False
        return kw

    def check_extrapolation(self) -> None:
        """Let the twin warn once if this instance's profiles have a structure (number of
        segments) that its training runs never had (a twin without that check stays silent)."""
        if "warn" not in self._twin_kw or not self._twin_needed:
            return
        lo, hi = self.space.min_n_cycles, self.space.max_n_cycles
        X = self.space.sample(hi - lo + 1, np.random.default_rng(0))
        if self.space.mixed:
            X[:, 3] = np.arange(lo, hi + 1)
        kw = self._predict_kw(self._twin_needed)
        kw["warn"] = True
        self.twin.predict(self.features(X), **kw)

    def _bound(self, table: pd.DataFrame, name: str, large_is_good: bool) -> np.ndarray:
        mean = np.asarray(table[name + "_mean"], dtype=float)
        if self.pessimistic == 0 or name + "_std" not in table:
            return mean
        std = np.nan_to_num(np.asarray(table[name + "_std"], dtype=float))
        return mean - self.pessimistic * std if large_is_good else mean + self.pessimistic * std

    def objective_values(self, table: pd.DataFrame) -> np.ndarray:
        """Objective values in natural units and sign (pessimistic when ``k > 0``), shape (n, n_obj)."""
        return np.column_stack([self._bound(table, o.name, o.direction == "max") for o in self.objectives])

    def fg(self, X: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``F`` (to minimize) and ``G`` (``<= 0`` feasible) from a table of quantities."""
        F = self.objective_values(table) * np.array([o.sign for o in self.objectives])
        gs = [self.space.alternation_constraints(X)]
        for c in self.outcome_constraints:
            gs.append(c.g(self._bound(table, c.name, c.op == ">="))[:, None])
        G = np.hstack(gs)
        if len(G):
            self.best_g = np.minimum(self.best_g, np.nanmin(np.where(np.isnan(G), np.inf, G), axis=0))
        return F, G

    @staticmethod
    def _finite(F: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows without a result (NaN, e.g. a failed batch) become infeasible with a violation
        worse than any real one, so the algorithm never prefers them and never sees NaN."""
        bad = ~np.all(np.isfinite(F), axis=1) | np.any(np.isnan(G), axis=1)
        F = np.where(np.isfinite(F), F, _NO_RESULT)
        G = np.where(np.isnan(G), _NO_RESULT, G)
        G[bad] = np.maximum(G[bad], _NO_RESULT)
        return F, G

    def _evaluate(self, X: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
        out["F"], out["G"] = self._finite(*self.fg(X, self.predict(X)))

    def measured_table(self, X: np.ndarray, cqas: pd.DataFrame | dict) -> pd.DataFrame:
        """Quantity table from measured CQAs (one row per row of ``X``, std 0)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        cq = pd.DataFrame(cqas) if not isinstance(cqas, pd.DataFrame) else cqas
        if len(cq) != len(X):
            raise OptimizationError(f"got {len(cq)} rows of measured CQAs for {len(X)} candidates")
        out = pd.DataFrame(index=range(len(X)))
        for c in self._twin_needed:
            if c not in cq.columns:
                raise OptimizationError(f"measured CQAs lack column {c!r}; got {list(cq.columns)}")
            out[c + "_mean"] = np.asarray(cq[c], dtype=float)
            out[c + "_std"] = 0.0
        out[BATCH_TIME + "_mean"] = self.space.batch_time_min(X)
        out[BATCH_TIME + "_std"] = 0.0
        return out

    def diagnose(self) -> str:
        """Which constraints were never satisfied by any evaluated candidate (best value reached)."""
        parts = []
        for label, g, in zip(self.constraint_labels, self.best_g, strict=True):
            if g > 0:
                parts.append(f"'{label}' (closest miss by {g:.3g})")
        if not parts:
            return ("each constraint was met by some candidate, but never all at once: "
                    + ", ".join(f"'{lab}'" for lab in self.constraint_labels[self.space.n_slots:]))
        return "binding constraint(s): " + ", ".join(parts)


# ---------------------------------------------------------------------- algorithm
class _Given(Problem):
    """Hands precomputed ``F``/``G`` to a pymoo evaluator (ask/tell). Unlike pymoo's
    ``StaticProblem`` it does not deep-copy the wrapped problem, which would copy the twin."""

    def __init__(self, problem: Problem, F: np.ndarray, G: np.ndarray) -> None:
        super().__init__(n_var=problem.n_var, n_obj=problem.n_obj, n_ieq_constr=problem.n_ieq_constr,
                         xl=problem.xl, xu=problem.xu, elementwise=False)
        self._F, self._G = F, G

    def _evaluate(self, X: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
        out["F"], out["G"] = self._F, self._G


class _FeasibleSampling(Sampling):
    """Uniform sampling of valid profiles (:meth:`DesignSpace.sample`)."""

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return problem.space.sample(n_samples, random_state)


class _ProfileRepair(Repair):
    """Projects offspring onto valid profiles (:meth:`DesignSpace.repair`)."""

    def _do(self, problem, X, **kwargs):
        return problem.space.repair(X)


def make_algorithm(
    problem: DesignProblem,
    *,
    pop_size: int = 100,
    seed: int | None = 0,
    repair: bool = True,
    initial: np.ndarray | None = None,
    **kwargs: Any,
):
    """NSGA-II for a :class:`DesignProblem` (feasible sampling, SBX, PM, profile repair).

    Parameters
    ----------
    problem : DesignProblem
    pop_size : int
        Population size (and offspring per generation).
    seed : int or None
        Seed of the algorithm's random generator: same seed, same front.
    repair : bool
        Project offspring onto valid profiles; with ``False`` the alternation is handled by
        the constraints alone (constraint-domination), as in the paper.
    initial : ndarray, optional
        Decision vectors to start from (e.g. the DoE profiles via ``space.from_profiles``);
        completed with random feasible samples up to ``pop_size``.
    **kwargs
        Passed to :class:`pymoo.algorithms.moo.nsga2.NSGA2`.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.population import Population

    if int(pop_size) != pop_size or pop_size < 2:
        raise OptimizationError(f"pop_size must be a whole number >= 2, got {pop_size!r}")
    sampling: Any = _FeasibleSampling()
    if initial is not None:
        X0 = problem.space.repair(np.atleast_2d(np.asarray(initial, dtype=float)))
        rng = np.random.default_rng(seed)
        if len(X0) < pop_size:
            X0 = np.vstack([X0, problem.space.sample(int(pop_size) - len(X0), rng)])
        sampling = Population.new("X", X0[: int(pop_size)])
    return NSGA2(
        pop_size=int(pop_size),
        sampling=sampling,
        repair=_ProfileRepair() if repair else None,
        eliminate_duplicates=True,
        seed=seed,
        **kwargs,
    )


def tell_measured(algorithm: Any, problem: DesignProblem, pop: Any, cqas: pd.DataFrame | dict) -> None:
    """Hand measured CQAs of an asked population back to the algorithm (ask/tell).

    ``cqas`` has one row per individual of ``pop`` and a column per CQA the objectives and
    constraints use (e.g. ``SimResult.cqas`` dicts); the batch time comes from the profile.
    A row with NaN (a failed batch) makes that candidate infeasible, not the campaign fail.
    """
    X = pop.get("X")
    F, G = problem._finite(*problem.fg(X, problem.measured_table(X, cqas)))
    algorithm.evaluator.eval(_Given(problem, F, G), pop)
    algorithm.tell(infills=pop)


def hypervolume(values: np.ndarray | pd.DataFrame, objectives: Sequence[Objective], reference: np.ndarray) -> float:
    """Hypervolume dominated by ``values`` (natural units and signs, one column per objective)
    up to the ``reference`` point (natural units). Points beyond the reference add nothing."""
    from pymoo.indicators.hv import HV

    if isinstance(values, pd.DataFrame):
        values = values[[o.name for o in objectives]].to_numpy(dtype=float)
    V = np.atleast_2d(np.asarray(values, dtype=float))
    if V.size == 0:
        return 0.0
    sign = np.array([o.sign for o in objectives])
    F = V * sign
    ref = np.asarray(reference, dtype=float) * sign
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=ref)(F))


# ---------------------------------------------------------------------- the study
def _run_instance(problem: DesignProblem, pop_size: int, n_gen: int, seed: int,
                  callback: Callable[[str, int, int], None] | None) -> tuple:
    """One NSGA-II run; returns ``(problem, Pareto set X or None, feasible front F per generation,
    (generation, evaluations, feasible fraction) per generation)``."""
    algorithm = make_algorithm(problem, pop_size=pop_size, seed=seed)
    algorithm.setup(problem, termination=("n_gen", n_gen))
    fronts, stats = [], []
    while algorithm.has_next():
        algorithm.next()
        opt = algorithm.opt
        feas = opt.get("FEAS").ravel()
        fronts.append(opt.get("F")[feas].copy())
        stats.append((algorithm.n_gen - 1, algorithm.evaluator.n_eval, float(np.mean(algorithm.pop.get("FEAS")))))
        if callback is not None:
            callback(problem.space.label, algorithm.n_gen - 1, n_gen)
    res = algorithm.result()
    return problem, (None if res.X is None else np.atleast_2d(res.X)), fronts, stats


def _run_lockstep(problems: list[DesignProblem], pop_size: int, n_gen: int, seeds: Sequence[int],
                  callback: Callable[[str, int, int], None] | None) -> tuple[list[tuple], int]:
    """All instances side by side through ask/tell, their offspring evaluated in ONE twin call
    per generation (the twin's per-call overhead is paid once, not once per instance).
    Same results as :func:`_run_instance` per instance; returns the runs and the twin calls made."""
    algs = []
    for p, s in zip(problems, seeds, strict=True):
        a = make_algorithm(p, pop_size=pop_size, seed=int(s))
        a.setup(p, termination=("n_gen", n_gen))
        algs.append(a)
    twin = problems[0].twin
    needed = sorted({c for p in problems for c in p._twin_needed})
    fronts: list[list] = [[] for _ in problems]
    stats: list[list] = [[] for _ in problems]
    calls = 0
    while True:
        active = [i for i, a in enumerate(algs) if a.has_next()]
        if not active:
            break
        pops = {i: algs[i].ask() for i in active}
        Xs = {i: pops[i].get("X") for i in active}
        pred_all = None
        if needed:
            feats = np.vstack([problems[i].features(Xs[i]) for i in active])
            pred_all = twin.predict(feats, **problems[0]._predict_kw(needed)).reset_index(drop=True)
            calls += 1
        start = 0
        for i in active:
            p, a, pop, X = problems[i], algs[i], pops[i], Xs[i]
            pred = None if pred_all is None else pred_all.iloc[start:start + len(X)].reset_index(drop=True)
            start += len(X)
            p.n_twin_calls += 1
            p.n_twin_rows += len(X)
            F, G = p._finite(*p.fg(X, p._table(X, pred, p._twin_needed)))
            a.evaluator.eval(_Given(p, F, G), pop)
            a.tell(infills=pop)
            opt = a.opt
            feas = opt.get("FEAS").ravel()
            fronts[i].append(opt.get("F")[feas].copy())
            stats[i].append((a.n_gen - 1, a.evaluator.n_eval, float(np.mean(a.pop.get("FEAS")))))
            if callback is not None:
                callback(p.space.label, a.n_gen - 1, n_gen)
    runs = []
    for p, a, f, st in zip(problems, algs, fronts, stats, strict=True):
        res = a.result()
        runs.append((p, None if res.X is None else np.atleast_2d(res.X), f, st))
    return runs, calls


def optimize_design(
    twin: Any,
    objectives: str | Sequence[str | Objective] = ("max:D50", "min:DoA"),
    *,
    cycles: str | int | Iterable[int] = (1, 2, 3, 4),
    mixed: bool = False,
    constraints: Sequence[str | OutcomeConstraint] | str | None = None,
    pessimistic: float = 0.0,
    bounds: ProfileBounds | dict | None = None,
    limits: Any = None,
    max_batch_time_min: float | None = None,
    holds: bool = False,
    final_cooling: bool = True,
    min_step_c: float = 1.0,
    pop_size: int = 100,
    n_gen: int = 200,
    seed: int = 0,
    n_jobs: int | None = 1,
    lockstep: bool = True,
    callback: Callable[[str, int, int], None] | None = None,
):
    """Find Pareto-optimal thermocycle profiles on a twin, one NSGA-II run per instance.

    Parameters
    ----------
    twin : DigitalTwin
    objectives : str or sequence
        e.g. ``"max:D50,min:DoA"``.
    cycles : str, int or iterable of int
        Numbers of cycles, one instance each (``"1-4"`` = the paper's Fig. 7).
    mixed : bool
        One instance where the number of cycles (within ``cycles``) is a decision variable.
    constraints, pessimistic, bounds, limits, max_batch_time_min, holds, final_cooling, min_step_c
        See :class:`DesignProblem`.
    pop_size, n_gen : int
        NSGA-II population size and number of generations per instance.
    seed : int
        Master seed; each instance gets its own stream derived from it, so the result does
        not depend on ``n_jobs``.
    n_jobs : int, optional
        Instances run in parallel processes (joblib); ``-1`` = all cores.
    lockstep : bool
        With ``n_jobs=1``, advance all instances together and evaluate every instance's
        offspring in one twin call per generation (same results as one run after the other,
        with a quarter of the twin calls for 4 instances).
    callback : callable, optional
        ``callback(instance_label, generation, n_gen)`` after every generation (progress bars).

    Returns
    -------
    DesignResult
        Pareto set and front per instance, hypervolume history, profiles.

    Raises
    ------
    OptimizationError, ModelError
        Bad objective/constraint names, bounds, twin without a requested CQA.
    InfeasibleError
        No instance found a feasible profile; the message names the binding constraint.
    """
    from crystalloop.digital_twin.design_result import DesignResult

    if int(n_gen) != n_gen or n_gen < 1:
        raise OptimizationError(f"n_gen must be a whole number >= 1, got {n_gen!r}")
    ncs = parse_cycles(cycles)
    instances: list[int | tuple[int, int]] = [(ncs[0], ncs[-1])] if mixed and len(ncs) > 1 else list(ncs)
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(instances))
    kw = dict(constraints=constraints, bounds=bounds, limits=limits, max_batch_time_min=max_batch_time_min,
              pessimistic=pessimistic, holds=holds, final_cooling=final_cooling, min_step_c=min_step_c)
    problems = [DesignProblem(twin, objectives, n_cycles=nc, **kw) for nc in instances]
    for p in problems:
        p.check_extrapolation()
    t0 = time.perf_counter()
    n_jobs = 1 if n_jobs is None else int(n_jobs)
    shared_calls = None
    if len(problems) > 1 and n_jobs == 1 and lockstep:
        runs, shared_calls = _run_lockstep(problems, int(pop_size), int(n_gen), [int(s) for s in seeds], callback)
    elif n_jobs == 1 or len(problems) == 1:
        runs = [_run_instance(p, int(pop_size), int(n_gen), int(s), callback) for p, s in zip(problems, seeds, strict=True)]
    else:
        from joblib import Parallel, delayed

        runs = []
        for run in Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_run_instance)(p, int(pop_size), int(n_gen), int(s), None)
                for p, s in zip(problems, seeds, strict=True)):
            runs.append(run)
            if callback is not None:
                for g in range(1, int(n_gen) + 1):
                    callback(run[0].space.label, g, int(n_gen))
    wall = time.perf_counter() - t0
    infeasible = {p.space.label: f"no feasible profile was found for {p.space.label} after "
                  f"{stats[-1][1]} evaluations; {p.diagnose()}"
                  for p, X, fronts, stats in runs if X is None}
    if len(infeasible) == len(runs):
        raise InfeasibleError("; ".join(infeasible.values()))
    for msg in infeasible.values():
        warnings.warn(msg, stacklevel=2)
    return DesignResult.from_runs(runs, problems[0].objectives, problems[0].outcome_constraints,
                                  settings=dict(cycles=ncs, mixed=bool(mixed), pessimistic=float(pessimistic),
                                                pop_size=int(pop_size), n_gen=int(n_gen), seed=int(seed),
                                                holds=bool(holds), final_cooling=bool(final_cooling),
                                                min_step_c=float(min_step_c),
                                                bounds=problems[0].space.bounds.to_dict(),
                                                max_batch_time_min=max_batch_time_min),
                                  infeasible=infeasible, wall_time_s=wall, twin_calls=shared_calls)
