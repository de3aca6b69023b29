"""Candidate regressors, their hyper-parameter grids and per-CQA model selection (seed 003 §2.1).

Four model families, each behind a :class:`~sklearn.preprocessing.StandardScaler`:
random forest (``rf``), gradient-boosted trees (``gbt``), XGBoost (``xgb``) and support
vector regression (``svr``). Each is tuned with :class:`~sklearn.model_selection.GridSearchCV`
(MSE). With 20–40 rows a 5-row test split says nothing, so the default validation is
*repeated* K-fold on every measured row (``validation="repeated"``, :class:`RepeatedKFold`;
``cv="loo"`` for leave-one-out): the family with the lowest cross-validated MSE wins, and its
cross-validated R² (``1 - MSE / var(y)``) tells whether it beats predicting the mean. The seed-003
procedure (a 10–15 % hold-out test set, the hold-out R² breaking near-ties) remains available as
``validation="holdout"`` (see :func:`select_model`).

Grids
-----
``"paper"`` spans the ranges of seed 003 (DOMAIN.md §1):

* RF: n_estimators {10, 100, 200}, max_depth {None, 3, 10, 30}, min_samples_split {2, 5, 10},
  min_samples_leaf {1, 2, 4} (108 points);
* GBT (Huber loss, so that the paper's ``alpha`` is live): n_estimators {10, 100, 200},
  learning_rate {0.01, 0.1, 0.2}, max_depth {3, 5, 7}, subsample {0.5, 0.75, 1.0},
  alpha {0.1, 0.5, 0.9} (243 points);
* XGBoost: n_estimators {10, 100, 200}, learning_rate {0.01, 0.1, 0.2}, max_depth {3, 5, 7},
  subsample {0.5, 0.75, 1.0}, colsample_bytree {0.3, 0.7, 1.0} (243 points);
* SVR: kernel {linear, poly, rbf, sigmoid}, C {0.1, 0.5, 1, 2, 5, 10, 20} (28 points).

The ranges are the paper's; each range is sampled at its ends and one interior point (622
points in all). On ~30 rows, max_depth 10 and 30 grow the same trees as None, as do GBT depths 5
and 7; the grid keeps them because the paper lists them.

``"fast"`` keeps 2–4 points per family for tests and quick looks.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    LeaveOneOut,
    RepeatedKFold,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from crystalloop.errors import ConfigError, ModelError

__all__ = [
    "MODEL_FAMILIES",
    "MIN_ROWS",
    "make_estimator",
    "param_grid",
    "grid_size",
    "SelectionResult",
    "select_model",
    "with_features",
]

MODEL_FAMILIES: tuple[str, ...] = ("rf", "gbt", "xgb", "svr")

#: Fewest measured rows a CQA needs before a model is fitted.
MIN_ROWS = 5

_PAPER_GRIDS: dict[str, dict[str, list]] = {
    "rf": {
        "n_estimators": [10, 100, 200],
        "max_depth": [None, 3, 10, 30],
        "min_samples_split": [2, 5, 10],
        "min_samples_leaf": [1, 2, 4],
    },
    "gbt": {
        "n_estimators": [10, 100, 200],
        "learning_rate": [0.01, 0.1, 0.2],
        "max_depth": [3, 5, 7],
        "subsample": [0.5, 0.75, 1.0],
        "alpha": [0.1, 0.5, 0.9],
    },
    "xgb": {
        "n_estimators": [10, 100, 200],
        "learning_rate": [0.01, 0.1, 0.2],
        "max_depth": [3, 5, 7],
        "subsample": [0.5, 0.75, 1.0],
        "colsample_bytree": [0.3, 0.7, 1.0],
    },
    "svr": {
        "kernel": ["linear", "poly", "rbf", "sigmoid"],
        "C": [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0],
    },
}

_FAST_GRIDS: dict[str, dict[str, list]] = {
    "rf": {"n_estimators": [30], "max_depth": [None, 5], "min_samples_leaf": [1, 2]},
    "gbt": {"n_estimators": [50], "learning_rate": [0.1], "max_depth": [3], "subsample": [0.75, 1.0]},
    "xgb": {"n_estimators": [50], "learning_rate": [0.1], "max_depth": [3], "subsample": [1.0], "colsample_bytree": [0.7, 1.0]},
    "svr": {"kernel": ["linear", "rbf"], "C": [1.0, 10.0]},
}


def make_estimator(family: str, *, random_state: int | None = None, **params: Any) -> Pipeline:
    """``StandardScaler`` → regressor pipeline for one family (step names ``scaler``, ``model``).

    ``params`` are regressor parameters (without the ``model__`` prefix).
    """
    if family == "rf":
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(random_state=random_state, n_jobs=1)
    elif family == "gbt":
        from sklearn.ensemble import GradientBoostingRegressor

        model = GradientBoostingRegressor(loss="huber", random_state=random_state)
    elif family == "xgb":
        from xgboost import XGBRegressor

        model = XGBRegressor(random_state=0 if random_state is None else random_state, n_jobs=1,
                             tree_method="exact", verbosity=0)
    elif family == "svr":
        from sklearn.svm import SVR

        model = SVR()
    else:
        raise ConfigError(f"Unknown model family {family!r}; expected one of {list(MODEL_FAMILIES)}")
    if params:
        model.set_params(**params)
    return Pipeline([("scaler", StandardScaler()), ("model", model)])


def with_features(estimator: Pipeline, features: Any = None) -> Pipeline:
    """``estimator`` behind a feature step: ``Pipeline([("features", features), ("regressor", estimator)])``.

    ``features`` is a transformer (cloned) or a callable (wrapped in a ``FunctionTransformer``);
    ``None`` returns ``estimator`` unchanged.
    """
    if features is None:
        return estimator
    from sklearn.base import clone
    from sklearn.preprocessing import FunctionTransformer

    if hasattr(features, "fit") and hasattr(features, "transform"):
        step = clone(features)
    elif callable(features):
        step = FunctionTransformer(features)
    else:
        raise ConfigError(f"features must be a transformer (fit/transform) or a callable, got {type(features).__name__}")
    return Pipeline([("features", step), ("regressor", estimator)])


def param_grid(family: str, grid: Literal["paper", "fast"] | dict = "paper") -> dict[str, list]:
    """GridSearchCV grid (``model__``-prefixed) for ``family``; ``grid`` may be a custom dict."""
    if family not in MODEL_FAMILIES:
        raise ConfigError(f"Unknown model family {family!r}; expected one of {list(MODEL_FAMILIES)}")
    if isinstance(grid, dict):
        g = grid.get(family, {})
    elif grid == "paper":
        g = _PAPER_GRIDS[family]
    elif grid == "fast":
        g = _FAST_GRIDS[family]
    else:
        raise ConfigError(f"grid must be 'paper', 'fast' or a dict of per-family grids, got {grid!r}")
    return {f"model__{k}": list(v) for k, v in g.items()}


def grid_size(grid: Literal["paper", "fast"] | dict = "paper", families=MODEL_FAMILIES) -> int:
    """Number of grid points over ``families``."""
    return sum(int(np.prod([len(v) for v in param_grid(f, grid).values()] or [1])) for f in families)


@dataclass
class SelectionResult:
    """Outcome of :func:`select_model` for one CQA.

    Attributes
    ----------
    table : DataFrame
        One row per family: ``family, cv_mse, cv_mse_std, cv_r2, train_r2, test_r2, test_mae,
        test_mse, fit_time_s, best_params, rank``; sorted by rank (test scores NaN without a hold-out).
    best_family : str
    best_params : dict
        Regressor parameters of the winner (no ``model__`` prefix).
    best_estimator : Pipeline
        The winner refitted on the training rows.
    train_index, test_index : ndarray of int
        Positions (into the rows given) used for training and hold-out testing (no test rows
        with ``validation="repeated"``).
    """

    table: pd.DataFrame
    best_family: str
    best_params: dict
    best_estimator: Any
    train_index: np.ndarray
    test_index: np.ndarray
    searches: dict = field(default_factory=dict, repr=False)


def select_model(
    X: np.ndarray,
    y: np.ndarray,
    *,
    families: tuple[str, ...] | list[str] = MODEL_FAMILIES,
    grid: Literal["paper", "fast"] | dict = "paper",
    cv: int | Literal["loo"] = 3,
    validation: Literal["repeated", "holdout"] = "repeated",
    n_repeats: int = 3,
    test_size: float = 0.15,
    r2_tolerance: float = 0.05,
    features: Any = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    progress=None,
) -> SelectionResult:
    """Tune every family with GridSearchCV and pick one (seed 003 step 4).

    ``validation="repeated"`` (default): every row is used, the grid is scored by ``n_repeats``
    times repeated ``cv``-fold CV (or leave-one-out with ``cv="loo"``), the family with the lowest
    CV MSE wins; ``train_index`` holds every row and ``test_index`` none.

    ``validation="holdout"`` (seed 003): a ``test_size`` hold-out is kept aside; the family with
    the lowest mean CV MSE wins, unless another family whose CV MSE is within ``r2_tolerance``
    (relative) of the best has a higher hold-out R², in which case that one wins ("lowest
    validation MSE and highest test R²").

    Parameters
    ----------
    X : ndarray, shape (n, n_features)
    y : ndarray, shape (n,)
    families : sequence of str
        Subset of :data:`MODEL_FAMILIES`.
    grid : {"paper", "fast"} or dict
        See :func:`param_grid`.
    cv : int or "loo"
        K of the K-fold CV (seed 003 uses 3; 5 also common), or leave-one-out.
    validation : {"repeated", "holdout"}
        Repeated K-fold on all rows, or the seed-003 hold-out split.
    n_repeats : int
        Repetitions of the K-fold split (``validation="repeated"``).
    test_size : float
        Hold-out fraction (``validation="holdout"``), 0.10–0.15 in the paper; at least one row.
    features : transformer or callable, optional
        Feature step in front of every candidate (:func:`with_features`).
    n_jobs : int, optional
        joblib workers for GridSearchCV.
    progress : callable, optional
        Called as ``progress(family)`` after each family.

    Raises
    ------
    ModelError
        Fewer than :data:`MIN_ROWS` rows, or too few rows for ``cv`` folds after the hold-out.
    ConfigError
        ``test_size`` outside (0, 0.5] or ``cv`` < 2.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    n = len(y)
    if n < MIN_ROWS:
        raise ModelError(
            f"only {n} measured rows; model selection needs at least {MIN_ROWS}. Measure this CQA in more "
            f"runs or leave it out of the twin (cqas=...)"
        )
    if validation not in ("repeated", "holdout"):
        raise ConfigError(f"validation must be 'repeated' or 'holdout', got {validation!r}")
    loo = isinstance(cv, str) and cv.lower() == "loo"
    if not loo and (isinstance(cv, str) or int(cv) != cv or cv < 2):
        raise ConfigError(f"cv must be a whole number >= 2 or 'loo', got {cv!r}")
    idx = np.arange(n)
    if validation == "holdout":
        if not 0 < test_size <= 0.5:
            raise ConfigError(f"test_size must be in (0, 0.5] (seed 003 uses 0.10-0.15), got {test_size}")
        n_test = max(1, int(round(test_size * n)))
        if not loo and n - n_test < cv:
            raise ModelError(f"{n} rows leave {n - n_test} for training after the hold-out; {cv}-fold CV needs at least {cv}")
        tr, te = train_test_split(idx, test_size=n_test, random_state=random_state)
        tr, te = np.sort(tr), np.sort(te)
    else:
        if int(n_repeats) != n_repeats or n_repeats < 1:
            raise ConfigError(f"n_repeats must be a whole number >= 1, got {n_repeats!r}")
        if not loo and n < cv:
            raise ModelError(f"{n} rows are too few for {cv}-fold CV")
        tr, te = idx, idx[:0]
    if np.ptp(y[tr]) == 0:
        raise ModelError(f"the target is constant ({y[tr][0]:g}) on all {len(tr)} training rows; nothing to learn")
    if loo:
        kf = LeaveOneOut()
    elif validation == "repeated":
        kf = RepeatedKFold(n_splits=int(cv), n_repeats=int(n_repeats), random_state=random_state)
    else:
        kf = KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    var_y = float(np.var(y[tr]))
    rows, searches = [], {}
    for fam in families:
        t0 = time.perf_counter()
        prefix = "" if features is None else "regressor__"
        gs = GridSearchCV(
            with_features(make_estimator(fam, random_state=random_state), features),
            {prefix + k: v for k, v in param_grid(fam, grid).items()},
            scoring="neg_mean_squared_error",
            cv=kf,
            n_jobs=n_jobs,
            refit=True,
            error_score=np.nan,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            gs.fit(X[tr], y[tr])
        dt = time.perf_counter() - t0
        best = gs.best_estimator_
        pred_tr = best.predict(X[tr])
        pred_te = best.predict(X[te]) if len(te) else np.empty(0)
        i = gs.best_index_
        cv_mse = -float(gs.cv_results_["mean_test_score"][i])
        rows.append({
            "family": fam,
            "cv_mse": cv_mse,
            "cv_mse_std": float(gs.cv_results_["std_test_score"][i]),
            "cv_r2": 1.0 - cv_mse / var_y if var_y > 0 else float("nan"),
            "train_r2": float(r2_score(y[tr], pred_tr)),
            "test_r2": float(r2_score(y[te], pred_te)) if len(te) > 1 else float("nan"),
            "test_mae": float(mean_absolute_error(y[te], pred_te)) if len(te) else float("nan"),
            "test_mse": float(mean_squared_error(y[te], pred_te)) if len(te) else float("nan"),
            "n_grid": len(gs.cv_results_["params"]),
            "fit_time_s": dt,
            "best_params": {k.removeprefix(prefix).removeprefix("model__"): v for k, v in gs.best_params_.items()},
        })
        searches[fam] = gs
        if progress is not None:
            progress(fam)
    table = pd.DataFrame(rows)
    if table["cv_mse"].isna().all():
        raise ModelError("every candidate failed to fit; check the data for constant or degenerate columns")
    best_mse = table["cv_mse"].min()
    near = table[table["cv_mse"] <= best_mse * (1 + r2_tolerance)]
    if near["test_r2"].notna().any() and len(near) > 1:
        win = near.loc[near["test_r2"].idxmax(), "family"]
    else:
        win = table.loc[table["cv_mse"].idxmin(), "family"]
    order = table["cv_mse"].rank(method="first").astype(int)
    table["rank"] = order
    table.loc[table["family"] == win, "rank"] = 0
    table = table.sort_values("rank").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return SelectionResult(
        table=table,
        best_family=win,
        best_params=dict(table.loc[0, "best_params"]),
        best_estimator=searches[win].best_estimator_,
        train_index=tr,
        test_index=te,
        searches=searches,
    )


