"""A design study: NSGA-II instances on a twin, run side by side, written to a folder.

:func:`optimize_design` runs one instance per number of cycles (the paper's Fig. 7) or the
mixed formulation and returns a :class:`~crystalloop.digital_twin.design.result.DesignResult`;
:func:`write_design` saves it with plots and knee-point recipes; :func:`run_design_study`
is what ``crystalloop design`` runs.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from crystalloop.errors import (
    ConfigError,
    DesignWarning,
    InfeasibleError,
    ModelError,
    OptimizationError,
)
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import ProfileBounds

from .algorithm import GivenEvaluation, make_algorithm
from .plots import plot_convergence, plot_fronts
from .problem import DesignProblem, DesignTwin, bounds_from
from .result import DesignResult
from .selection import export_recipe, knee_point
from .spec import Objective, OutcomeConstraint, parse_cycles
from .validity import Solubility, ValidityDomain

__all__ = ["optimize_design", "write_design", "run_design_study", "load_twin", "read_bounds", "resolve_domain",
           "TrainedTwin"]


@runtime_checkable
class TrainedTwin(Protocol):
    """A twin that exposes the measured recipes it learned from (a fitted ``DigitalTwin`` does)."""

    max_cycles: int
    training_data_: pd.DataFrame


def resolve_domain(twin: Any, domain: Any, *, bounds: ProfileBounds, solubility: Solubility | None = None,
                   max_distance: float | str | None = "auto") -> ValidityDomain | None:
    """The :class:`ValidityDomain` a study uses: given, built from a table of measured recipes, or
    from the twin's training data (``"auto"``, when the twin implements :class:`TrainedTwin`)."""
    if domain is None or isinstance(domain, ValidityDomain):
        return domain
    if isinstance(domain, pd.DataFrame):
        return ValidityDomain.from_frame(domain, int(twin.max_cycles), bounds=bounds, solubility=solubility,
                                         max_distance=max_distance)
    if isinstance(domain, str) and domain == "auto":
        if isinstance(twin, TrainedTwin) and twin.training_data_ is not None:
            return ValidityDomain.from_frame(twin.training_data_, int(twin.max_cycles), bounds=bounds,
                                             solubility=solubility, max_distance=max_distance)
        return None
    raise OptimizationError(f"domain must be 'auto', a ValidityDomain, a DataFrame of measured recipes or None; "
                            f"got {type(domain).__name__}")


def load_twin(twin: str | Path | DesignTwin) -> DesignTwin:
    """A twin object as given, or the twin saved in a folder (an ensemble
    :class:`~crystalloop.digital_twin.DigitalTwin`, a :class:`~crystalloop.digital_twin.FeatureGPTwin` or a
    :class:`~crystalloop.digital_twin.HybridTwin`: :func:`crystalloop.digital_twin.load_twin`).

    Raises
    ------
    ModelError
        The folder does not exist or does not hold a valid twin.
    """
    if isinstance(twin, (str, Path)):
        path = Path(twin)
        if not path.exists():
            raise ModelError(f"twin directory {path} does not exist; fit one with 'crystalloop twin fit DOE.csv --out {path}'")
        from crystalloop.digital_twin.twin import load_twin as load_twin_folder

        return load_twin_folder(path)
    return twin


def read_bounds(path: str | Path | None) -> dict | None:
    """Bounds overrides from a YAML/JSON mapping such as ``c0_mg_g: [30, 50]`` (``None`` → ``None``).

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not valid YAML/JSON, or not a mapping.
    """
    if path is None:
        return None
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bounds file {path} does not exist (expected a YAML/JSON mapping such as 'c0_mg_g: [30, 50]')")
    try:
        text = path.read_text(encoding="utf-8")
        d = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"bounds file {path} cannot be read as {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"bounds file {path}: expected a mapping such as 'c0_mg_g: [30, 50]', got {d!r}")
    return d


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
    needed = sorted({c for p in problems for c in p.needed_cqas})
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
            pred_all = twin.predict_frame(feats, **problems[0].predict_kwargs(needed)).reset_index(drop=True)
            calls += 1
        start = 0
        for i in active:
            p, a, pop, X = problems[i], algs[i], pops[i], Xs[i]
            pred = None if pred_all is None else pred_all.iloc[start:start + len(X)].reset_index(drop=True)
            start += len(X)
            p.n_twin_calls += 1
            p.n_twin_rows += len(X)
            F, G = p.evaluate_table(X, p.quantity_table(X, pred, p.needed_cqas))
            a.evaluator.eval(GivenEvaluation(p, F, G), pop)
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
    twin: DesignTwin,
    objectives: str | Sequence[str | Objective] = ("max:D50", "min:DoA"),
    *,
    cycles: str | int | Iterable[int] = (1, 2, 3, 4),
    mixed: bool = False,
    constraints: Sequence[str | OutcomeConstraint] | str | None = None,
    pessimistic: float = 0.0,
    bounds: ProfileBounds | dict | None = None,
    limits: ThermostatLimits | None = None,
    max_batch_time_min: float | None = None,
    holds: bool = False,
    final_cooling: bool = True,
    min_step_c: float = 1.0,
    domain: ValidityDomain | pd.DataFrame | Literal["auto"] | None = "auto",
    solubility: Solubility | None = None,
    max_distance: float | Literal["auto"] | None = "auto",
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
    domain : "auto", ValidityDomain, DataFrame or None
        Where the twin may be trusted (:class:`~crystalloop.digital_twin.design.validity.ValidityDomain`):
        ``"auto"`` builds it from the twin's training data when the twin has some (a fitted
        :class:`~crystalloop.digital_twin.DigitalTwin` does), a DataFrame of measured recipes
        (feature columns), or ``None`` for no domain constraints.
    solubility : callable, optional
        ``c*(T °C) -> mg/g`` for the dissolution check
        (:func:`~crystalloop.digital_twin.design.validity.solubility_polynomial`); without it,
        reheating to the start temperature stands in.
    max_distance : float, "auto" or None
        Largest distance to the nearest measured recipe (fraction of the bound widths, RMS).
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
    if int(n_gen) != n_gen or n_gen < 1:
        raise OptimizationError(f"n_gen must be a whole number >= 1, got {n_gen!r}")
    ncs = parse_cycles(cycles)
    instances: list[int | tuple[int, int]] = [(ncs[0], ncs[-1])] if mixed and len(ncs) > 1 else list(ncs)
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(instances))
    dom = resolve_domain(twin, domain, bounds=bounds_from(bounds), solubility=solubility, max_distance=max_distance)
    kw = dict(domain=dom, constraints=constraints, bounds=bounds, limits=limits, max_batch_time_min=max_batch_time_min,
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
        warnings.warn(msg, DesignWarning, stacklevel=2)
    return DesignResult.from_runs(runs, problems[0].objectives, problems[0].outcome_constraints,
                                  settings=dict(cycles=ncs, mixed=bool(mixed), pessimistic=float(pessimistic),
                                                pop_size=int(pop_size), n_gen=int(n_gen), seed=int(seed),
                                                holds=bool(holds), final_cooling=bool(final_cooling),
                                                min_step_c=float(min_step_c),
                                                bounds=problems[0].space.bounds.to_dict(),
                                                max_batch_time_min=max_batch_time_min,
                                                domain=None if dom is None else {
                                                    "max_distance": dom.max_distance_,
                                                    "structures_seen": dom.structures_seen_,
                                                    "excess_allowed_c": dom.excess_allowed_c_,
                                                    "solubility": solubility is not None,
                                                    "n_runs": len(dom.features)}),
                                  infeasible=infeasible, wall_time_s=wall, twin_calls=shared_calls)


def write_design(result: DesignResult, out_dir: str | Path, *, color: str | None = None) -> dict[str, Path]:
    """Save a design result with its plots and recipes.

    Writes ``front.csv``, ``history.csv``, ``design.json``, ``pareto_fronts.png`` (a third
    CQA as colour, seed 003 Fig. 8), ``convergence.png``, and for the knee point of the
    global front and of each instance a recipe ``recipe_knee*.yaml`` with its
    ``*_setpoints.csv`` (ready for ``crystalloop simulate``).

    Parameters
    ----------
    color : str, optional
        Quantity shown as colour in the front plot; default: the first twin CQA that is
        not an objective.
    """
    out = Path(out_dir)
    paths = result.save(out)
    from crystalloop._plotting import pyplot

    plt = pyplot()

    if color is None:
        objs = {o.name for o in result.objectives}
        color = next((c for c in result.cqas if c not in objs), None)
    if len(result.objectives) >= 2 or color is not None:
        fig = plot_fronts(result, color=color, path=out / "pareto_fronts.png")
        plt.close(fig)
        paths["fronts_plot"] = out / "pareto_fronts.png"
    fig = plot_convergence(result, path=out / "convergence.png")
    plt.close(fig)
    paths["convergence_plot"] = out / "convergence.png"
    selections = [("recipe_knee", None)] + [
        (f"recipe_knee_{n}cycles", n) for n in sorted(set(result.front["n_cycles"].astype(int)))
    ]
    if len(selections) == 2:  # one number of cycles: the global knee is that one
        selections = selections[:1]
    for stem, n in selections:
        profile, row = knee_point(result, n_cycles=n, return_row=True)
        rec = export_recipe(profile, out, stem=stem, predicted=row)
        paths[stem] = rec["recipe"]
        paths[stem + "_setpoints"] = rec["setpoints"]
    return paths


def run_design_study(twin: str | Path | DesignTwin, out_dir: str | Path, *, color: str | None = None,
                     **kwargs: Any) -> tuple[DesignResult, dict[str, Path]]:
    """Load the twin (a folder or a twin object), run :func:`optimize_design` with
    ``kwargs`` and :func:`write_design` into ``out_dir``."""
    result = optimize_design(load_twin(twin), **kwargs)
    return result, write_design(result, out_dir, color=color)
