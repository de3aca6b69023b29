"""Gaussian-process CQA models on physical profile features, with features chosen by cross-validation.

With 20–40 runs, a GP on a handful of well-chosen physical quantities (time the batch spends
supersaturated, how much each heating dissolves, the cooling rates, ...) generalizes better than any
model on the raw recipe vector: issue 16 measured on fresh plant recipes a D50 MAE of 28 µm for a GP on
the recipe vector and 18 µm on all physical features. Most of the remaining error comes from features
that do not matter for a CQA but still enter the kernel; :class:`FeatureGPRegressor` therefore picks
its features per CQA by greedy forward selection scored by leave-one-out cross-validation (closed
form) on the training rows only (never on the data it will be judged on), then fits an ARD Matérn GP on them.

:class:`FeatureGPTwin` bundles one such regressor per CQA behind the design's twin protocol
(:class:`~crystalloop.digital_twin.design.DesignTwin`: ``cqas``, ``max_cycles``, ``feature_names``,
``predict_frame``; and ``training_data_`` for the validity domain), so NSGA-II can run on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import ConfigError, InsufficientDataError, SchemaError
from crystalloop.profiles import feature_names as profile_feature_names

from .features import SolubilityCurve, profile_features

__all__ = ["FeatureGPRegressor", "FeatureGPTwin"]


def _kernel(n_dim: int, ard: bool):
    ls = np.ones(n_dim) if ard and n_dim > 1 else 1.0
    return (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=ls, nu=2.5, length_scale_bounds=(5e-2, 1e2))
            + WhiteKernel(1e-2, (1e-5, 1.0)))


def _gp_fit(A: np.ndarray, y: np.ndarray, *, ard: bool, restarts: int, seed: int) -> GaussianProcessRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(_kernel(A.shape[1], ard), normalize_y=True, n_restarts_optimizer=restarts,
                                        random_state=seed).fit(A, y)


class FeatureGPRegressor(RegressorMixin, BaseEstimator):
    """GP regressor on physical profile features, the features chosen by cross-validation.

    Parameters
    ----------
    solubility : SolubilityCurve or dict, optional
        ``c*(T)`` (mg/g solvent, T in °C); adds the saturation features
        (:data:`~crystalloop.digital_twin.features.SOLUBILITY_FEATURES`). Without it the
        profile-only features are used.
    max_cycles : int
        Cycle slots of the recipe vectors ``X`` (:func:`crystalloop.profiles.feature_names`).
    features : "cv", "auto", "all" or sequence of str
        ``"auto"``: greedy forward selection (add the feature that lowers the leave-one-out MAE
        most; stop when none lowers it by ``min_gain`` or at ``max_features``). ``"all"``: every
        non-constant feature. ``"cv"`` (default): whichever of ``"all"`` and ``"auto"`` has the lower
        MAE in an outer 5-fold CV around the whole procedure (the forward selection's own
        leave-one-out MAE is optimistic with 20–40 rows: it picks features that fit those rows).
        A list: use these.
    ard : bool
        One length scale per feature (automatic relevance determination) in the final GP;
        otherwise one shared length scale (more robust with many features and few rows).
    max_features : int
        Most features the selection keeps.
    min_gain : float
        Relative MAE reduction a feature must bring to be added.
    log_target : bool
        Fit the GP to ``log(y)`` (positive targets whose spread grows with the level, e.g. D50);
        the mean and std are mapped back by the log-normal moments.
    clip : (float, float), optional
        Physical range of the target (e.g. ``(0, 100)`` for a percentage); predictions are clipped.
    n_restarts : int
        Optimizer restarts of the final GP (the selection uses none).
    random_state : int, optional

    Attributes
    ----------
    features_ : list of str
        Features kept.
    cv_mae_ : float
        Leave-one-out MAE (target units) of the kept set (isotropic kernel, as in the selection).
    strategy_ : str
        ``"all"``, ``"auto"`` or ``"given"``.
    strategy_mae_ : dict of str -> float
        Outer-CV MAE of each strategy (``features="cv"`` only).
    selection_path_ : list of (str, float)
        Feature added at each step and the CV MAE after adding it.
    gp_ : GaussianProcessRegressor
    mean_, scale_ : ndarray
        Standardization of the kept features.
    """

    def __init__(self, solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4,
                 features: str | Sequence[str] = "cv", max_features: int = 5, min_gain: float = 0.01,
                 ard: bool = False, log_target: bool = False,
                 clip: tuple[float, float] | None = None, n_restarts: int = 3, random_state: int | None = None) -> None:
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.features = features
        self.max_features = max_features
        self.min_gain = min_gain
        self.ard = ard
        self.log_target = log_target
        self.clip = clip
        self.n_restarts = n_restarts
        self.random_state = random_state

    # -- helpers ---------------------------------------------------------------------------------
    def _curve(self) -> SolubilityCurve | None:
        s = self.solubility
        return s if s is None or isinstance(s, SolubilityCurve) else SolubilityCurve.from_dict(s)

    def _physical(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = np.atleast_2d(np.asarray(X, dtype=float))
        return profile_features(X, solubility=self._curve(), max_cycles=self.max_cycles)

    def _cv_mae(self, F: np.ndarray, y: np.ndarray, cols: list[int], seed: int) -> float:
        """Leave-one-out MAE of an isotropic GP on ``cols`` (closed form, one fit: Rasmussen & Williams eq. 5.12)."""
        A = F[:, cols]
        mu, sd = A.mean(0), A.std(0)
        sd[sd == 0] = 1.0
        A = (A - mu) / sd
        t = self._fwd(y)
        gp = _gp_fit(A, t, ard=False, restarts=0, seed=seed)
        K = gp.kernel_(A)
        Kinv = np.linalg.inv(K + 1e-10 * np.eye(len(A)))
        tn = (t - gp._y_train_mean) / gp._y_train_std
        loo = t - (Kinv @ tn) / np.diag(Kinv) * gp._y_train_std
        return float(np.mean(np.abs(self._back(loo, None)[0] - y)))

    def _fwd(self, y: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(y, 1e-6)) if self.log_target else y

    def _back(self, mu: np.ndarray, sd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.log_target:
            s2 = 0.0 if sd is None else sd**2
            m = np.exp(mu + s2 / 2)
            sd = None if sd is None else m * np.sqrt(np.expm1(s2))
            mu = m
        if self.clip is not None:
            mu = np.clip(mu, *self.clip)
        return mu, sd

    # -- API ---------------------------------------------------------------------------------------
    def fit(self, X, y) -> FeatureGPRegressor:
        """Select features by leave-one-out CV on ``(X, y)`` and fit the GP.

        Parameters
        ----------
        X : DataFrame or ndarray, shape (n, len(feature_names(max_cycles)))
            Recipe vectors.
        y : array-like, shape (n,)
            One CQA (its units).
        """
        F_df = self._physical(X)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(F_df):
            raise SchemaError(f"X has {len(F_df)} rows but y has {len(y)}")
        if not np.all(np.isfinite(y)):
            raise SchemaError(f"y has {int((~np.isfinite(y)).sum())} missing/non-finite values; drop those rows first")
        if len(y) < 5:
            raise InsufficientDataError(f"FeatureGPRegressor needs at least 5 rows; got {len(y)}")
        if self.log_target and np.any(y <= 0):
            raise ConfigError(f"log_target=True needs positive targets; the smallest is {y.min():g}")
        names = list(F_df.columns)
        F = F_df.to_numpy(dtype=float)
        seed = 0 if self.random_state is None else int(self.random_state)
        keep = [j for j in range(F.shape[1]) if np.ptp(F[:, j]) > 0]
        strategy = self.features if isinstance(self.features, str) else "given"
        self.strategy_mae_ = {}
        if strategy == "cv":
            Xr = X.reset_index(drop=True) if isinstance(X, pd.DataFrame) else np.atleast_2d(np.asarray(X, dtype=float))
            for cand in ("all", "auto"):
                err = []
                for tr, te in KFold(5, shuffle=True, random_state=seed).split(F):
                    m = clone(self).set_params(features=cand, n_restarts=0)
                    sub = Xr.iloc[tr] if isinstance(Xr, pd.DataFrame) else Xr[tr]
                    tst = Xr.iloc[te] if isinstance(Xr, pd.DataFrame) else Xr[te]
                    err.append(np.abs(m.fit(sub, y[tr]).predict(tst) - y[te]))
                self.strategy_mae_[cand] = float(np.mean(np.concatenate(err)))
            strategy = min(self.strategy_mae_, key=self.strategy_mae_.get)
        self.strategy_ = strategy
        if strategy == "all":
            chosen = keep
            self.selection_path_ = []
            self.cv_mae_ = self._cv_mae(F, y, chosen, seed)
        elif strategy != "given":
            if strategy != "auto":
                raise ConfigError(f"features must be 'cv', 'auto', 'all' or a list of feature names; "
                                  f"got {self.features!r}")
            chosen: list[int] = []
            best = np.inf
            path: list[tuple[str, float]] = []
            while len(chosen) < int(self.max_features):
                scores = {j: self._cv_mae(F, y, chosen + [j], seed) for j in keep if j not in chosen}
                j, s = min(scores.items(), key=lambda kv: (kv[1], kv[0]))
                if s > best * (1 - self.min_gain):
                    break
                chosen.append(j)
                best = s
                path.append((names[j], s))
            self.selection_path_ = path
            self.cv_mae_ = best
        else:
            bad = [c for c in self.features if c not in names]
            if bad:
                raise ConfigError(f"unknown profile feature(s) {bad}; available: {names}")
            chosen = [names.index(c) for c in self.features]
            self.selection_path_ = []
            self.cv_mae_ = self._cv_mae(F, y, chosen, seed)
        self.features_ = [names[j] for j in chosen]
        A = F[:, chosen]
        self.mean_, self.scale_ = A.mean(0), A.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        self.gp_ = _gp_fit((A - self.mean_) / self.scale_, self._fwd(y), ard=bool(self.ard), restarts=int(self.n_restarts),
                           seed=seed)
        self.n_features_in_ = len(profile_feature_names(self.max_cycles))
        return self

    def predict(self, X, return_std: bool = False):
        """Mean (and std) of the CQA, target units; shape (n,)."""
        check_is_fitted(self, "gp_")
        A = (self._physical(X)[self.features_].to_numpy(dtype=float) - self.mean_) / self.scale_
        mu, sd = self.gp_.predict(A, return_std=True)
        mu, sd = self._back(mu, sd)
        return (mu, sd) if return_std else mu


class FeatureGPTwin:
    """One :class:`FeatureGPRegressor` per CQA, behind the design's twin protocol.

    Parameters
    ----------
    cqas : sequence of str
        CQA columns of the training table (``D50_um``, ``DoA_pct``, ``crystallinity_pct``).
    solubility : SolubilityCurve or dict, optional
    max_cycles : int
    log_cqas : sequence of str
        CQAs fitted on the log scale (default none: on the shipped DoE, log D50 did worse).
    percent_cqas : sequence of str
        CQAs clipped to 0–100 (default: names ending in ``_pct``).
    random_state : int, optional
    **regressor_params
        Passed to every :class:`FeatureGPRegressor` (``max_features``, ``min_gain``, ...).

    Attributes
    ----------
    models_ : dict of str -> FeatureGPRegressor
    training_data_ : DataFrame
        Recipe columns of the training rows (the design's validity domain is built from it).
    """

    def __init__(self, cqas: Sequence[str] = ("D50_um", "DoA_pct", "crystallinity_pct"), *,
                 solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4,
                 log_cqas: Sequence[str] = (), percent_cqas: Sequence[str] | None = None,
                 random_state: int | None = None, **regressor_params: Any) -> None:
        self.cqas = list(cqas)
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.feature_names = profile_feature_names(max_cycles)
        self.log_cqas = list(log_cqas)
        self.percent_cqas = percent_cqas
        self.random_state = random_state
        self.regressor_params = regressor_params

    def fit(self, table: pd.DataFrame) -> FeatureGPTwin:
        """Fit on a DoE table (recipe columns + CQA columns; rows without a CQA are left out of its model)."""
        missing = [c for c in [*self.feature_names, *self.cqas] if c not in table.columns]
        if missing:
            raise SchemaError(f"training table lacks columns {missing[:6]}")
        pct = [c for c in self.cqas if c.endswith("_pct")] if self.percent_cqas is None else list(self.percent_cqas)
        self.models_ = {}
        for c in self.cqas:
            rows = table.dropna(subset=[c])
            m = FeatureGPRegressor(solubility=self.solubility, max_cycles=self.max_cycles, log_target=c in self.log_cqas,
                                   clip=(0.0, 100.0) if c in pct else None, random_state=self.random_state,
                                   **self.regressor_params)
            self.models_[c] = m.fit(rows[self.feature_names], rows[c].to_numpy(float))
        self.training_data_ = table[self.feature_names].reset_index(drop=True)
        return self

    def predict(self, X, return_std: bool = False):
        """Means (and stds), shape (n, len(cqas)), in ``cqas`` order."""
        X = X[self.feature_names] if isinstance(X, pd.DataFrame) else np.atleast_2d(np.asarray(X, dtype=float))
        out = [self.models_[c].predict(X, return_std=True) for c in self.cqas]
        mu = np.column_stack([o[0] for o in out])
        sd = np.column_stack([o[1] for o in out])
        return (mu, sd) if return_std else mu

    def predict_frame(self, X: np.ndarray, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """``{cqa}_mean`` / ``{cqa}_std`` columns for recipe rows ``X`` (shape (n, len(feature_names)))."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        cols = {}
        for c in (self.cqas if cqas is None else cqas):
            mu, sd = self.models_[c].predict(X, return_std=True)
            cols[f"{c}_mean"], cols[f"{c}_std"] = mu, sd
        return pd.DataFrame(cols)
