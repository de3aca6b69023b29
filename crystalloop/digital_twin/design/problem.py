"""The thermocycle design problem on a digital twin, as a vectorized pymoo problem.

:class:`DesignProblem` holds what is designed (decision variables and their feasibility,
from a :class:`~crystalloop.digital_twin.design.space.DesignSpace`), what is optimized
(objectives and outcome constraints by name) and how a candidate is judged (one twin call
per generation). The algorithm (:mod:`~crystalloop.digital_twin.design.algorithm`) and the
study that runs it (:mod:`~crystalloop.digital_twin.design.study`) are kept apart, as in pymoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pymoo.core.problem import Problem

from crystalloop.errors import ModelError, OptimizationError
from crystalloop.limits import ThermostatLimits
from crystalloop.profiles import DEFAULT_BOUNDS, ProfileBounds

from .space import DesignSpace
from .spec import BATCH_TIME, Objective, OutcomeConstraint, parse_constraints, parse_objectives
from .validity import ValidityDomain

__all__ = ["DesignProblem", "DesignTwin", "NO_RESULT", "bounds_from"]


#: objective and constraint value of a candidate without a result (failed batch, NaN prediction)
NO_RESULT = 1e30


@runtime_checkable
class DesignTwin(Protocol):
    """What the design needs of a twin (:class:`~crystalloop.digital_twin.DigitalTwin` is one).

    Attributes
    ----------
    cqas : list of str
        CQA names it predicts (``D50_um``, ``DoA_pct``, ...; units in the suffix).
    max_cycles : int
        Cycle slots of its profile feature vector.
    feature_names : list of str
        Columns of ``X``, a subset/permutation of ``profiles.feature_names(max_cycles)``.
    """

    cqas: Sequence[str]
    max_cycles: int
    feature_names: Sequence[str]

    def predict_frame(self, X: np.ndarray, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """``{cqa}_mean`` and ``{cqa}_std`` columns (CQA units) for the rows of ``X``
        (shape (n, len(feature_names))); ``warn`` lets the twin warn about extrapolation."""


def _check_twin(twin: Any) -> None:
    if not isinstance(twin, DesignTwin):
        missing = [a for a in ("cqas", "max_cycles", "feature_names", "predict_frame") if not hasattr(twin, a)]
        raise ModelError(
            f"the twin ({type(twin).__name__}) lacks {missing}; expected a DigitalTwin with .cqas, "
            f".max_cycles, .feature_names and predict_frame(X, cqas=..., warn=...)"
        )


def bounds_from(bounds: ProfileBounds | dict | None) -> ProfileBounds:
    """Decision-variable bounds: the defaults, a :class:`ProfileBounds`, or a dict of fields
    overriding the defaults (``{"c0_mg_g": [30, 50]}``)."""
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
    twin : DesignTwin
        A :class:`~crystalloop.digital_twin.DigitalTwin` or any object with its design
        interface (:class:`DesignTwin`).
    objectives : str or sequence
        ``"max:D50,min:DoA"`` or a list of such strings / :class:`Objective`.
    n_cycles : int or (int, int)
        Cycles of every profile, or a ``(low, high)`` range for the mixed formulation.
    constraints : sequence of str, optional
        Outcome constraints such as ``"crystallinity>=75"`` or ``"batch_time<=600"``.
    bounds : ProfileBounds or dict, optional
        Decision-variable bounds (DOMAIN.md §1 by default); a dict overrides single fields.
    limits : ThermostatLimits, optional
        Thermostat setpoint range (°C) and ramp capability (°C/min).
    max_batch_time_min : float, optional
        Shortcut for the constraint ``batch_time<=value``.
    pessimistic : float
        ``k`` >= 0: objectives and constraints use ``mean - k std`` for quantities that
        should be large and ``mean + k std`` for those that should be small (0 = mean).
    holds, final_cooling, min_step_c
        See :class:`DesignSpace`.
    domain : ValidityDomain, optional
        Keep candidates where the twin can be trusted: near the measured recipes, with a
        measured number of segments, without dissolving the product unless a measured run did
        (:class:`~crystalloop.digital_twin.design.validity.ValidityDomain`; one ``G`` column each).

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
        twin: DesignTwin,
        objectives: str | Sequence[str | Objective] = ("max:D50", "min:DoA"),
        *,
        n_cycles: int | tuple[int, int] = 4,
        constraints: Sequence[str | OutcomeConstraint] | str | None = None,
        bounds: ProfileBounds | dict | None = None,
        limits: ThermostatLimits | None = None,
        max_batch_time_min: float | None = None,
        pessimistic: float = 0.0,
        holds: bool = False,
        final_cooling: bool = True,
        min_step_c: float = 1.0,
        domain: ValidityDomain | None = None,
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
        b = bounds_from(bounds)
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
        names = {o.name for o in self.objectives} | {c.name for c in self.outcome_constraints}
        self.needed_cqas = sorted(names - {BATCH_TIME})
        if domain is not None and int(domain.max_cycles) != int(twin.max_cycles):
            raise OptimizationError(f"the validity domain has max_cycles={domain.max_cycles} but the twin "
                                    f"{twin.max_cycles}; build it from the twin's training data")
        self.domain = domain
        self.constraint_labels = [
            f"segment {k + 1} must {'cool' if k % 2 == 0 else 'heat'} by >= {min_step_c:g} °C"
            for k in range(self.space.n_slots)
        ] + [str(c) for c in self.outcome_constraints] + ([] if domain is None else domain.labels())
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
        cqas = self.needed_cqas if cqas is None else list(cqas)
        pred = None
        if cqas and len(X):
            pred = self.twin.predict_frame(self.features(X), **self.predict_kwargs(cqas))
            self.n_twin_calls += 1
            self.n_twin_rows += len(X)
        return self.quantity_table(X, pred, cqas)

    def quantity_table(self, X: np.ndarray, pred: pd.DataFrame | None, cqas: Sequence[str]) -> pd.DataFrame:
        """Quantity table of ``X`` from a twin prediction (rows aligned) plus the batch time."""
        out = pd.DataFrame(index=range(len(X)))
        if pred is not None:
            for c in cqas:
                for suffix in ("_mean", "_std"):
                    if c + suffix not in pred.columns:
                        raise ModelError(
                            f"twin.predict_frame returned no column {c + suffix!r}; got {list(pred.columns)}"
                        )
                    out[c + suffix] = np.asarray(pred[c + suffix], dtype=float)
        out[BATCH_TIME + "_mean"] = self.space.batch_time_min(X) if len(X) else []
        out[BATCH_TIME + "_std"] = 0.0
        return out

    def predict_kwargs(self, cqas: Sequence[str]) -> dict[str, Any]:
        """Keywords of the twin's ``predict`` during the search: only the CQAs needed, and
        its extrapolation warning off (it warns once, in :meth:`check_extrapolation`)."""
        return {"cqas": list(cqas), "warn": False}

    def check_extrapolation(self) -> None:
        """Let the twin warn once if this instance's profiles have a structure (number of
        segments) that its training runs never had."""
        if not self.needed_cqas:
            return
        lo, hi = self.space.min_n_cycles, self.space.max_n_cycles
        X = self.space.sample(hi - lo + 1, np.random.default_rng(0))
        if self.space.mixed:
            X[:, 3] = np.arange(lo, hi + 1)
        kw = self.predict_kwargs(self.needed_cqas)
        kw["warn"] = True
        self.twin.predict_frame(self.features(X), **kw)

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
        if self.domain is not None:
            gs.append(self.domain.constraints(self.space.features(X, self._twin_max_cycles)))
        G = np.hstack(gs)
        if len(G):
            self.best_g = np.minimum(self.best_g, np.nanmin(np.where(np.isnan(G), np.inf, G), axis=0))
        return F, G

    def evaluate_table(self, X: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Finite ``F`` and ``G`` of the rows of ``X`` from a quantity table (predicted or measured)."""
        return self._finite(*self.fg(X, table))

    @staticmethod
    def _finite(F: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows without a result (NaN, e.g. a failed batch) become infeasible with a violation
        worse than any real one, so the algorithm never prefers them and never sees NaN."""
        bad = ~np.all(np.isfinite(F), axis=1) | np.any(np.isnan(G), axis=1)
        F = np.where(np.isfinite(F), F, NO_RESULT)
        G = np.where(np.isnan(G), NO_RESULT, G)
        G[bad] = np.maximum(G[bad], NO_RESULT)
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
        for c in self.needed_cqas:
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


