"""Pick one profile from a design result, and export it as a recipe.

* :func:`knee_point` — the best compromise of the objectives on the Pareto front;
* :func:`best_under` — the best value of one objective with limits on other quantities;
* :func:`shortest_batch` — the shortest batch that meets targets on the CQAs;
* :func:`spread_points` — a few profiles spread evenly along the front (to validate it);
* :func:`export_recipe` — the chosen profile as a YAML recipe (``crystalloop simulate``,
  the runner) and its setpoint trajectory as CSV.

Each selector returns a :class:`~crystalloop.profiles.ThermocycleProfile` whose name says
how it was chosen, or ``(profile, row)`` with ``return_row=True`` (the row of
``result.front`` with the predicted CQAs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import InfeasibleError, OptimizationError
from crystalloop.profiles import Segment, ThermocycleProfile

from .pareto import nondominated
from .result import DesignResult
from .spec import BATCH_TIME, OutcomeConstraint, parse_constraints, parse_objectives

__all__ = ["knee_point", "best_under", "shortest_batch", "spread_points", "export_recipe"]


def _rows(result: DesignResult, n_cycles: int | None) -> np.ndarray:
    if not isinstance(result, DesignResult):
        raise OptimizationError(f"expected a DesignResult, got {type(result).__name__}")
    idx = np.arange(len(result.front))
    if n_cycles is not None:
        idx = idx[result.front["n_cycles"].to_numpy() == int(n_cycles)]
        if len(idx) == 0:
            raise OptimizationError(
                f"the result has no profile with {n_cycles} cycles; it has "
                f"{sorted(set(result.front['n_cycles'].astype(int)))}"
            )
    return idx


def _value(result: DesignResult, name: str, large_is_good: bool) -> np.ndarray:
    """Quantity as the study judged it (mean, or the pessimistic bound)."""
    tab = result.front
    if name == BATCH_TIME:
        return tab[BATCH_TIME].to_numpy(dtype=float)
    k = float(result.settings.get("pessimistic", 0.0))
    mean = tab[name + "_mean"].to_numpy(dtype=float)
    std = np.nan_to_num(tab[name + "_std"].to_numpy(dtype=float))
    return mean - k * std if large_is_good else mean + k * std


def _named(result: DesignResult, i: int, how: str, return_row: bool) -> Any:
    p = result.profiles[int(i)]
    row = result.front.iloc[int(i)]
    parts = [f"{row['n_cycles']} cycles"]
    for c in result.cqas:
        parts.append(f"{c} {row[c + '_mean']:.3g}±{row[c + '_std']:.2g}")
    parts.append(f"{row[BATCH_TIME]:.0f} min")
    named = p.with_(name=f"{how} ({', '.join(parts)})")
    return (named, row) if return_row else named


def knee_point(result: DesignResult, *, n_cycles: int | None = None, return_row: bool = False) -> Any:
    """The knee of the Pareto front: the point farthest on the ideal side of the hyperplane
    through the extreme points, i.e. the smallest sum of objectives normalized to [0, 1]
    over the front (for two objectives, the classic largest distance to the line joining
    the two extremes).

    Parameters
    ----------
    result : DesignResult
    n_cycles : int, optional
        Restrict to one number of cycles; default: the global front over all instances.
    return_row : bool
        Also return the row of ``result.front``.
    """
    idx = _rows(result, n_cycles)
    F = result.objective_matrix(idx)
    keep = nondominated(F)
    idx, F = idx[keep], F[keep]
    lo, hi = F.min(axis=0), F.max(axis=0)
    norm = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    i = idx[int(np.argmin(norm.sum(axis=1)))]
    return _named(result, i, "knee point", return_row)


def _limits(result: DesignResult, limits: str | Sequence[str | OutcomeConstraint] | None) -> list[OutcomeConstraint]:
    return parse_constraints(limits, result.cqas) if limits else []


def _filter(result: DesignResult, idx: np.ndarray, limits: list[OutcomeConstraint]) -> np.ndarray:
    ok = np.ones(len(idx), dtype=bool)
    for j, c in enumerate(limits):
        v = _value(result, c.name, c.op == ">=")[idx]
        sat = v >= c.value if c.op == ">=" else v <= c.value
        if not np.any(sat[ok]):
            reach = v[ok].max() if c.op == ">=" else v[ok].min()
            before = [str(x) for x in limits[:j]]
            raise InfeasibleError(
                f"no designed profile meets '{c}'"
                + (f" together with {before}" if before and not ok.all() else "")
                + f": the {'highest' if c.op == '>=' else 'lowest'} {c.name} among the candidates is "
                f"{reach:.4g}; relax the limit or add it as a design constraint and rerun"
            )
        ok &= sat
    return idx[ok]


def best_under(
    result: DesignResult,
    objective: str,
    limits: str | Sequence[str | OutcomeConstraint],
    *,
    n_cycles: int | None = None,
    return_row: bool = False,
) -> Any:
    """Best value of ``objective`` (e.g. ``"max:D50"``) among designed profiles meeting
    ``limits`` on other quantities (e.g. ``["DoA<=60"]``).

    Raises
    ------
    InfeasibleError
        No profile meets the limits (names the limit and the best value reached).
    """
    obj = parse_objectives([objective], result.cqas)[0]
    idx = _filter(result, _rows(result, n_cycles), _limits(result, limits))
    v = _value(result, obj.name, obj.direction == "max")[idx]
    i = idx[int(np.argmax(v) if obj.direction == "max" else np.argmin(v))]
    lim = limits if isinstance(limits, str) else ", ".join(str(x) for x in limits)
    return _named(result, i, f"best {obj} with {lim}", return_row)


def shortest_batch(
    result: DesignResult,
    targets: str | Sequence[str | OutcomeConstraint],
    *,
    n_cycles: int | None = None,
    return_row: bool = False,
) -> Any:
    """Shortest batch among designed profiles meeting ``targets`` (e.g. ``["D50>=20", "DoA<=65"]``).

    Raises
    ------
    InfeasibleError
        No profile meets the targets (names the target and the best value reached).
    """
    idx = _filter(result, _rows(result, n_cycles), _limits(result, targets))
    i = idx[int(np.argmin(result.front[BATCH_TIME].to_numpy()[idx]))]
    tgt = targets if isinstance(targets, str) else ", ".join(str(x) for x in targets)
    return _named(result, i, f"shortest batch with {tgt}", return_row)


def spread_points(result: DesignResult, n: int, *, n_cycles: int | None = None) -> list[ThermocycleProfile]:
    """``n`` profiles spread along the Pareto front: the extremes of each objective first,
    then greedily the point farthest (in objectives normalized to [0, 1]) from those chosen.

    Use it to pick the validation experiments of a front; ``n`` larger than the front
    returns the whole front.
    """
    if int(n) != n or n < 1:
        raise OptimizationError(f"n must be a whole number >= 1, got {n!r}")
    idx = _rows(result, n_cycles)
    F = result.objective_matrix(idx)
    keep = nondominated(F)
    idx, F = idx[keep], F[keep]
    lo, hi = F.min(axis=0), F.max(axis=0)
    Z = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    chosen: list[int] = []
    for j in range(Z.shape[1]):
        i = int(np.argmin(Z[:, j]))
        if i not in chosen:
            chosen.append(i)
    chosen = chosen[: int(n)]
    while len(chosen) < min(int(n), len(idx)):
        d = np.min(np.linalg.norm(Z[:, None, :] - Z[None, chosen, :], axis=2), axis=1)
        chosen.append(int(np.argmax(d)))
    return [_named(result, idx[i], f"spread point {k + 1}/{len(chosen)}", False) for k, i in enumerate(chosen)]


def export_recipe(
    profile: ThermocycleProfile,
    out_dir: str | Path,
    *,
    stem: str = "recipe",
    predicted: Mapping[str, float] | pd.Series | None = None,
    dt_s: float = 60.0,
    round_values: bool = True,
) -> dict[str, Path]:
    """Write ``{stem}.yaml`` (loadable by :meth:`ThermocycleProfile.from_file`, ready for
    ``crystalloop simulate``) and ``{stem}_setpoints.csv`` (``time_s, setpoint_c, segment``
    every ``dt_s`` seconds and at every knot).

    ``predicted`` (e.g. the selected front row) is written as the recipe's description.
    With ``round_values`` the recipe holds what a thermostat and a balance can set:
    temperatures to 0.01 °C, rates to 1e-4 °C/min, holds to 0.1 min, c0 to 0.01 mg/g and
    seed loading to 1e-4 (changes far below the twin's resolution; bounds are kept).
    """
    import yaml

    if round_values:
        profile = ThermocycleProfile(
            round(profile.c0_mg_g, 2), round(profile.seed_loading, 4), round(profile.t_start_c, 2),
            tuple(Segment(round(sg.target_c, 2), round(sg.rate_c_min, 4), round(sg.hold_min, 1))
                  for sg in profile.segments),
            name=profile.name,
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = profile.to_dict()
    if predicted is not None:
        items = {k: float(v) for k, v in dict(predicted).items()
                 if (k.endswith("_mean") or k.endswith("_std") or k == BATCH_TIME)
                 and isinstance(v, (int, float, np.floating)) and np.isfinite(v)}
        d["description"] = "predicted by the digital twin: " + ", ".join(f"{k}={v:.4g}" for k, v in items.items())
    paths = {"recipe": out / f"{stem}.yaml", "setpoints": out / f"{stem}_setpoints.csv"}
    paths["recipe"].write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True), encoding="utf-8")
    ThermocycleProfile.from_file(paths["recipe"])  # round-trip check: what we wrote must load
    profile.trajectory(dt_s).to_csv(paths["setpoints"], index=False)
    return paths
