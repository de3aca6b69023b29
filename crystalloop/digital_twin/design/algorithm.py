"""The algorithm of a design study: NSGA-II with feasible sampling and profile repair, ask/tell.

Ask/tell, for a campaign that measures candidates on a real or virtual crystallizer::

    problem = DesignProblem(twin, ["max:D50", "min:DoA"], n_cycles=2)
    algorithm = make_algorithm(problem, pop_size=8, seed=1)
    algorithm.setup(problem, termination=("n_gen", 5))
    while algorithm.has_next():
        pop = algorithm.ask()
        profiles = problem.space.to_profiles(pop.get("X"))
        cqas = pd.DataFrame([simulate(p).cqas for p in profiles])
        tell_measured(algorithm, problem, pop, cqas)

The termination (e.g. ``("n_gen", 200)``) is passed to ``algorithm.setup`` or
``pymoo.optimize.minimize``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from crystalloop.errors import OptimizationError

from .problem import DesignProblem

__all__ = ["make_algorithm", "tell_measured", "GivenEvaluation"]


class GivenEvaluation(Problem):
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
    F, G = problem.evaluate_table(X, problem.measured_table(X, cqas))
    algorithm.evaluator.eval(GivenEvaluation(problem, F, G), pop)
    algorithm.tell(infills=pop)
