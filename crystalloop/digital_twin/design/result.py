"""The outcome of a design study: Pareto set and front, convergence, profiles."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalloop.errors import OptimizationError
from crystalloop.profiles import ThermocycleProfile, feature_names

from .pareto import hypervolume, nondominated
from .spec import BATCH_TIME, Objective, OutcomeConstraint

__all__ = ["DesignResult"]


@dataclass
class DesignResult:
    """Pareto-optimal profiles of a design study.

    Attributes
    ----------
    objectives : list of Objective
    constraints : list of OutcomeConstraint
    front : DataFrame
        One row per Pareto-optimal profile of each instance: ``instance``, ``n_cycles``,
        ``pareto_global`` (not dominated by any row of another instance), the decision
        variables (``c0_mg_g``, ``seed_loading``, ``t_start_c``, ``n_segments``,
        ``T{k}_c``, ``rate{k}_c_min``, ``hold{k}_min``; NaN for unused segments), the
        predicted ``{cqa}_mean``/``{cqa}_std`` of every twin CQA, ``batch_time_min``,
        ``{objective}_objective`` (the value optimized: mean, or the pessimistic bound) and, with
        a validity domain, how far the recipe extrapolates: ``distance_to_doe`` (to the nearest
        measured recipe of the same structure, fraction of the bound widths), ``nearest_run``,
        ``structure_seen``, ``dissolution_temperature_c``, ``heating_peak_excess_c``,
        ``dissolves`` and ``inside_domain``.
    profiles : list of ThermocycleProfile
        Aligned with the rows of ``front``.
    history : DataFrame
        Per instance and generation: ``n_eval``, ``feasible_fraction`` of the population,
        ``n_front`` and ``hypervolume`` (w.r.t. ``reference_point``).
    reference_point : ndarray
        Hypervolume reference in natural units, shared by all instances.
    """

    objectives: list[Objective]
    constraints: list[OutcomeConstraint]
    front: pd.DataFrame
    profiles: list[ThermocycleProfile]
    history: pd.DataFrame
    reference_point: np.ndarray
    cqas: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    infeasible: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = float("nan")
    n_evaluations: int = 0
    n_twin_calls: int = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_runs(cls, runs: list, objectives: list[Objective], constraints: list[OutcomeConstraint], *,
                  settings: dict, infeasible: dict, wall_time_s: float,
                  twin_calls: int | None = None) -> DesignResult:
        """Assemble from ``(problem, Pareto set X or None, per-generation fronts, stats)`` tuples."""
        sign = np.array([o.sign for o in objectives])
        tables, profiles = [], []
        max_slots = max(p.space.n_slots for p, *_ in runs)
        cqas = list(runs[0][0].twin.cqas)
        for problem, X, _fronts, _stats in runs:
            if X is None:
                continue
            X = np.unique(np.atleast_2d(X), axis=0)
            pred = problem.predict(X, cqas=cqas)
            label = problem.space.label
            tab = pd.DataFrame({"instance": label, "n_cycles": problem.space.n_cycles_of(X)})
            feats = problem.space.features(X, max_cycles=problem.space.bounds.max_cycles)
            names = feature_names(problem.space.bounds.max_cycles)
            fdf = pd.DataFrame(feats, columns=names)
            n_seg = fdf["n_segments"].to_numpy().astype(int)
            tab["c0_mg_g"], tab["seed_loading"] = fdf["c0_mg_g"], fdf["seed_loading"]
            tab["t_start_c"], tab["n_segments"] = fdf["t_start_c"], n_seg
            for k in range(1, max_slots + 1):
                for col in (f"T{k}_c", f"rate{k}_c_min", f"hold{k}_min"):
                    vals = fdf[col].to_numpy() if col in fdf else np.full(len(fdf), np.nan)
                    tab[col] = np.where(k <= n_seg, vals, np.nan)
            for c in cqas:
                tab[c + "_mean"], tab[c + "_std"] = pred[c + "_mean"], pred[c + "_std"]
            tab[BATCH_TIME] = pred[BATCH_TIME + "_mean"]
            if problem.domain is not None:  # how far each recipe extrapolates from the measured ones
                dom = problem.domain.table(problem.space.features(X, int(problem.domain.max_cycles)))
                for col in dom.columns:
                    tab[col] = dom[col].to_numpy()
            vals = problem.objective_values(pred)
            for j, o in enumerate(objectives):
                tab[f"{o.name}_objective"] = vals[:, j]
            order = np.argsort(vals[:, 0] * sign[0], kind="stable")
            tab = tab.iloc[order].reset_index(drop=True)
            tables.append(tab)
            profiles += problem.space.to_profiles(
                X[order], names=[f"{label} #{i}" for i in range(len(order))]
            )
        n_tab = len(tables)  # one twin call each to tabulate the final fronts
        front = pd.concat(tables, ignore_index=True)
        Fall = front[[f"{o.name}_objective" for o in objectives]].to_numpy() * sign
        front.insert(2, "pareto_global", nondominated(Fall))

        # shared hypervolume reference: nadir of everything seen + 10 % of the range
        seen = [f for *_, fronts, _ in runs for f in fronts if len(f)]
        allF = np.vstack(seen)
        allF = allF[np.all(np.isfinite(allF), axis=1)]
        nadir, ideal = allF.max(axis=0), allF.min(axis=0)
        span = np.where(nadir - ideal > 0, nadir - ideal, np.maximum(1.0, np.abs(nadir)) * 1e-3)
        ref_min = nadir + 0.1 * span
        from pymoo.indicators.hv import HV

        hv = HV(ref_point=ref_min)
        rows = []
        for problem, _res, fronts, stats in runs:
            for F, (gen, n_eval, feas) in zip(fronts, stats, strict=True):
                F = F[np.all(np.isfinite(F), axis=1)]
                rows.append(dict(instance=problem.space.label, generation=gen, n_eval=n_eval,
                                 feasible_fraction=feas, n_front=len(F),
                                 hypervolume=float(hv(F)) if len(F) else 0.0))
        history = pd.DataFrame(rows)
        return cls(objectives=list(objectives), constraints=list(constraints), front=front, profiles=profiles,
                   history=history, reference_point=ref_min * sign, cqas=cqas, settings=settings,
                   infeasible=infeasible, wall_time_s=wall_time_s,
                   n_evaluations=int(sum(st[-1][1] for *_, st in runs)),
                   n_twin_calls=int(sum(p.n_twin_calls for p, *_ in runs)) if twin_calls is None
                   else int(twin_calls) + n_tab)

    # ------------------------------------------------------------------ access
    @property
    def instances(self) -> list[str]:
        return list(dict.fromkeys(self.front["instance"]))

    def profile(self, i: int) -> ThermocycleProfile:
        """Profile of front row ``i`` (positional)."""
        if not 0 <= int(i) < len(self.profiles):
            raise OptimizationError(f"front row {i} does not exist; the front has {len(self.profiles)} rows")
        return self.profiles[int(i)]

    def objective_matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Objective values to minimize (sign applied), shape (n, n_obj)."""
        sign = np.array([o.sign for o in self.objectives])
        F = self.front[[f"{o.name}_objective" for o in self.objectives]].to_numpy(dtype=float) * sign
        return F if rows is None else F[rows]

    def hypervolume(self, instance: str | None = None) -> float:
        """Final hypervolume of one instance (or of the union of all fronts)."""
        tab = self.front if instance is None else self.front[self.front["instance"] == instance]
        vals = tab[[f"{o.name}_objective" for o in self.objectives]].to_numpy(dtype=float)
        return hypervolume(vals, self.objectives, self.reference_point)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> pd.DataFrame:
        """Per instance: number of Pareto points, objective ranges, batch time range, final hypervolume."""
        rows = []
        for inst in self.instances:
            tab = self.front[self.front["instance"] == inst]
            row: dict[str, Any] = {"instance": inst, "n_pareto": len(tab),
                                   "n_global": int(tab["pareto_global"].sum())}
            for o in self.objectives:
                v = tab[f"{o.name}_objective"]
                row[f"{o.name} {o.direction}"] = f"{v.min():.3g} .. {v.max():.3g}"
            row["batch_time_min"] = f"{tab[BATCH_TIME].min():.0f} .. {tab[BATCH_TIME].max():.0f}"
            row["hypervolume"] = self.hypervolume(inst)
            rows.append(row)
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``front.csv``, ``history.csv`` and ``design.json`` (settings, objectives,
        constraints, reference point, timings, package versions) into ``out_dir``."""
        import pymoo

        import crystalloop

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"front": out / "front.csv", "history": out / "history.csv", "meta": out / "design.json"}
        self.front.to_csv(paths["front"], index=False)
        self.history.to_csv(paths["history"], index=False)
        meta = {
            "objectives": [str(o) for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "cqas": self.cqas,
            "settings": self.settings,
            "reference_point": [float(v) for v in self.reference_point],
            "hypervolume": {inst: self.hypervolume(inst) for inst in self.instances},
            "infeasible": self.infeasible,
            "wall_time_s": self.wall_time_s,
            "n_evaluations": self.n_evaluations,
            "n_twin_calls": self.n_twin_calls,
            "versions": {"crystalloop": crystalloop.__version__, "pymoo": pymoo.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }
        paths["meta"].write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        return paths
