"""Closed-loop campaign: propose → run → measure → learn → propose again.

Each round of :func:`run_campaign`

1. **learns** a digital twin from every run so far (the starting DoE plus the campaign's own
   runs; :func:`~crystalloop.digital_twin.twin.fit_twin` by default),
2. **proposes** ``batch_size`` profiles: NSGA-II on the twin through the optimizer's
   ask/tell interface (:class:`~crystalloop.digital_twin.optimize.DesignProblem`,
   :func:`~crystalloop.digital_twin.optimize.make_algorithm`), then the points spread
   along the predicted Pareto front,
3. **runs** each on the backend with :func:`~crystalloop.control.runner.run` (any
   controller, the store logging everything, the safety layer in front),
4. **measures** the CQAs (the virtual crystallizer's ground truth on ``sim://``; on real
   hardware pass ``measure=`` — e.g. an image-analysis function of the run),
5. appends the results to the DoE table for the next round.

The result keeps, per round, what the twin predicted and what was measured, and the
hypervolume of all measured points (so one sees whether the campaign improves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import ConfigError
from crystalloop.profiles import ThermocycleProfile, profiles_to_frame

__all__ = ["CampaignResult", "run_campaign", "propose"]


@dataclass
class CampaignResult:
    """What :func:`run_campaign` did.

    Attributes
    ----------
    doe : pandas.DataFrame
        The final DoE table: the starting rows plus one row per campaign run (features,
        measured CQAs, ``run_id`` such as ``"C1-2"``).
    history : pandas.DataFrame
        One row per campaign run: ``round``, ``run_id``, ``store_run_id``, ``status``,
        ``{cqa}_pred``, ``{cqa}_std``, ``{cqa}`` (measured) for each objective CQA.
    hypervolume : list of float
        Hypervolume of all measured points: of the starting DoE (first entry) and after
        each round, against one fixed reference point.
    twins : list
        The twin fitted at the start of each round.
    profiles : list of list of ThermocycleProfile
        The profiles proposed in each round.
    """

    doe: pd.DataFrame
    history: pd.DataFrame
    hypervolume: list[float] = field(default_factory=list)
    twins: list[Any] = field(default_factory=list)
    profiles: list[list[ThermocycleProfile]] = field(default_factory=list)


def _default_learn(doe: pd.DataFrame, cqas: list[str], seed: int):
    from crystalloop.digital_twin.twin import fit_twin

    return fit_twin(doe, cqas=cqas, grid="fast", augment=False, n_splits=20, n_jobs=1, random_state=seed)


def propose(twin: Any, objectives: str | Sequence[str], n: int, *, cycles: int = 2, pop_size: int = 40,
            n_gen: int = 25, seed: int = 0, constraints: Any = None, limits: Any = None) -> list[ThermocycleProfile]:
    """``n`` profiles spread along the twin's predicted Pareto front (NSGA-II via ask/tell)."""
    from crystalloop.digital_twin.optimize import DesignProblem, make_algorithm

    problem = DesignProblem(twin, objectives, n_cycles=cycles, constraints=constraints, limits=limits)
    algorithm = make_algorithm(problem, pop_size=pop_size, seed=seed)
    algorithm.setup(problem, termination=("n_gen", n_gen))
    while algorithm.has_next():
        pop = algorithm.ask()
        algorithm.evaluator.eval(problem, pop)  # the twin is the "experiment" here
        algorithm.tell(infills=pop)
    opt = algorithm.opt
    feas = opt.get("FEAS").ravel()
    X, F = opt.get("X")[feas], opt.get("F")[feas]
    if len(X) == 0:
        raise ConfigError("the twin found no feasible profile for these objectives/constraints; relax them")
    # spread: extremes of each objective first, then farthest point (normalised objectives)
    lo, hi = F.min(axis=0), F.max(axis=0)
    Z = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    chosen: list[int] = []
    for j in range(Z.shape[1]):
        i = int(np.argmin(Z[:, j]))
        if i not in chosen:
            chosen.append(i)
    chosen = chosen[:n]
    while len(chosen) < min(n, len(X)):
        d = np.min(np.linalg.norm(Z[:, None, :] - Z[None, chosen, :], axis=2), axis=1)
        chosen.append(int(np.argmax(d)))
    return problem.space.to_profiles(X[chosen])


def _with_seed(url: str, seed: int) -> str:
    from crystalloop.hardware.base import parse_backend_url

    parsed = parse_backend_url(url)
    if parsed.scheme != "sim" or "seed" in parsed.options:
        return url
    return url + ("&" if "?" in url else "?") + f"seed={seed}"


def run_campaign(
    doe: pd.DataFrame | str,
    objectives: str | Sequence[str] = "max:D50,min:DoA",
    *,
    backend: str = "sim://",
    controller: str = "track",
    store: Any = None,
    n_rounds: int = 2,
    batch_size: int = 3,
    cycles: int = 2,
    pop_size: int = 40,
    n_gen: int = 25,
    seed: int = 0,
    learn: Callable[[pd.DataFrame, list[str], int], Any] | None = None,
    measure: Callable[[Any], dict[str, float]] | None = None,
    run_options: dict[str, Any] | None = None,
    reference: Sequence[float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CampaignResult:
    """Run a closed-loop design campaign (see the module docstring).

    Parameters
    ----------
    doe : DataFrame or path
        Starting DoE table (``profiles.feature_names(max_cycles)`` columns + CQA columns).
    objectives : str or sequence
        e.g. ``"max:D50,min:DoA"``.
    backend : str
        Where the proposed profiles run (``sim://`` gets a distinct seed per run unless the
        URL fixes one).
    controller : str
        Controller of each run (``track``, ``pid``, ``nmpc``).
    store : ExperimentStore or path, optional
        Every run is logged there (meta ``campaign_round``).
    n_rounds, batch_size : int
        Rounds, and runs per round.
    cycles, pop_size, n_gen : int
        NSGA-II design space (cycles per profile) and effort per round.
    seed : int
    learn : callable(doe, cqas, seed) -> twin, optional
        How to fit the twin (default: ``fit_twin`` with the fast grid, no augmentation).
    measure : callable(RunResult) -> dict, optional
        CQAs of a finished run (default: the virtual crystallizer's ground truth,
        ``RunResult.cqas``; required on real hardware).
    run_options : dict, optional
        Passed to :func:`~crystalloop.control.runner.run` (e.g. ``sample_interval_s``).
    reference : sequence of float, optional
        Hypervolume reference point in natural units (default: worst measured values).
    progress : callable(str), optional
        Receives one line per step.
    """
    from crystalloop.control.runner import run
    from crystalloop.digital_twin.design_spec import parse_objectives
    from crystalloop.digital_twin.doe import CQA_NAMES, read_doe
    from crystalloop.digital_twin.optimize import hypervolume

    for nm, v in (("n_rounds", n_rounds), ("batch_size", batch_size)):
        if int(v) != v or v < 1:
            raise ConfigError(f"{nm} must be a whole number >= 1, got {v!r}")
    table = read_doe(doe)
    frame = pd.concat([table.features, table.cqas], axis=1).reset_index(names="run_id")
    objs = parse_objectives(objectives, list(table.cqa_names) or list(CQA_NAMES))
    needed = [o.name for o in objs if o.name in CQA_NAMES and o.name != "batch_time_min"]
    if not needed:
        raise ConfigError(f"objectives {objectives!r} name no measurable CQA")
    learn = learn or _default_learn
    say = progress or (lambda msg: None)
    hist: list[dict[str, Any]] = []
    hv: list[float] = []
    twins, proposed = [], []
    sign = np.array([o.sign for o in objs])
    names = [o.name for o in objs]
    start = frame[names].dropna() if set(names) <= set(frame.columns) else pd.DataFrame(columns=names)
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
        if ref.shape != (len(objs),):
            raise ConfigError(f"reference needs one value per objective {names}, got {list(ref)}")
    else:  # the worst value of each objective in the starting DoE, 5 % beyond
        if start.empty:
            raise ConfigError(f"the starting DoE has no row with every objective {names} measured; "
                              f"give reference= for the hypervolume")
        worst = np.where(sign > 0, start.max().to_numpy(), start.min().to_numpy())
        ref = worst + sign * 0.05 * np.maximum(np.abs(worst), 1e-9)
    hv.append(hypervolume(start, objs, ref) if len(start) else 0.0)
    say(f"start: hypervolume of the {len(start)} measured DoE runs {hv[-1]:.4g}")
    for r in range(1, int(n_rounds) + 1):
        say(f"round {r}: learning the twin from {len(frame)} runs")
        twin = learn(frame, needed, seed + r)
        twins.append(twin)
        profiles = propose(twin, objectives, int(batch_size), cycles=cycles, pop_size=pop_size,
                           n_gen=n_gen, seed=seed + r)
        proposed.append(profiles)
        pred = twin.predict(profiles)
        rows = []
        for i, prof in enumerate(profiles, start=1):
            label = f"C{r}-{i}"
            url = _with_seed(backend, 1000 * seed + 100 * r + i)
            say(f"round {r}: running {label} on {url}: {prof}")
            res = run(prof, backend=url, controller=controller, store=store,
                      meta={"campaign_round": r, "campaign_run": label}, **(run_options or {}))
            measured = measure(res) if measure is not None else dict(res.cqas)
            entry = {"round": r, "run_id": label, "store_run_id": res.run_id, "status": res.status}
            for c in needed:
                entry[f"{c}_pred"] = float(pred[f"{c}_mean"].iloc[i - 1])
                entry[f"{c}_std"] = float(pred[f"{c}_std"].iloc[i - 1])
                entry[c] = float(measured.get(c, np.nan)) if res.status == "completed" else np.nan
            hist.append(entry)
            row = profiles_to_frame([prof], table.max_cycles).iloc[0].to_dict()
            row.update({c: entry[c] for c in needed})
            row["run_id"] = label
            rows.append(row)
        frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
        vals = frame[names].dropna()
        hv.append(hypervolume(vals, objs, ref) if len(vals) else 0.0)
        say(f"round {r}: hypervolume of measured points {hv[-1]:.4g}")
    return CampaignResult(doe=frame, history=pd.DataFrame(hist), hypervolume=hv, twins=twins, profiles=proposed)
