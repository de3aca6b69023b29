"""Pareto dominance and hypervolume, in the natural units and signs of the objectives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .spec import Objective

__all__ = ["nondominated", "hypervolume"]


def nondominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``F`` (minimization, shape (n, n_obj)) that no other row dominates.

    Examples
    --------
    >>> nondominated(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])).tolist()
    [True, True, False]
    """
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=bool)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return ~dominated


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


