"""Ensemble uncertainty: Monte Carlo cross-validation and bootstrap ensembles, calibration.

:class:`MonteCarloCVRegressor` fits one clone of a base estimator per random train/validation
split (seed 003: "Monte Carlo cross-validation for UQ"); :class:`BootstrapRegressor` fits one per
bootstrap resample. Both predict the ensemble mean and, with ``return_std=True``, a standard
deviation:

* ``std_mode="ensemble"``: the spread of the members' predictions (model variance only);
* ``std_mode="predictive"`` (default): ``sqrt(spread² + s²)``, where ``s²`` is the part of the
  members' mean squared error on their own held-out rows that the spread does not explain
  (noise and bias). Tree ensembles trained on ~30 rows have a small spread and would otherwise
  give intervals that cover far less than their nominal level; :func:`calibration_report`
  measures the coverage.
"""

from __future__ import annotations

import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from crystalloop.errors import ConfigError, InsufficientDataError

__all__ = [
    "MonteCarloCVRegressor",
    "BootstrapRegressor",
    "calibration_report",
    "fit_weighted",
    "fast_predict",
]


def fit_weighted(estimator, X, y, sample_weight=None):
    """Fit ``estimator`` (or a Pipeline ending in one) with optional per-row weights."""
    if sample_weight is None:
        return estimator.fit(X, y)
    if isinstance(estimator, Pipeline):
        kw = {}
        for name, step in estimator.steps:
            if step is not None and step != "passthrough" and has_fit_parameter(step, "sample_weight"):
                kw[f"{name}__sample_weight"] = sample_weight
        return estimator.fit(X, y, **kw)
    if not has_fit_parameter(estimator, "sample_weight"):
        raise ConfigError(f"{type(estimator).__name__} does not accept sample_weight; weighted ERM needs one that does")
    return estimator.fit(X, y, sample_weight=sample_weight)


def fast_predict(estimator, X: np.ndarray) -> np.ndarray:
    """Predict with the cheapest available path (no re-validation; random forests tree by tree).

    Equivalent to ``estimator.predict(X)`` for the estimators the twin uses (tested); ``X`` must
    already be a finite float array with the right number of columns.
    """
    name = type(estimator).__name__
    if name == "WeightedERMRegressor" and hasattr(estimator, "estimator_"):
        return fast_predict(estimator.estimator_, X)
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps[:-1]:
            if step is None or step == "passthrough":
                continue
            if type(step).__name__ == "StandardScaler":
                if step.with_mean and step.mean_ is not None:
                    X = X - step.mean_
                if step.with_std and step.scale_ is not None:
                    X = X / step.scale_
            else:
                X = step.transform(X)
        return fast_predict(estimator.steps[-1][1], X)
    if name in ("RandomForestRegressor", "ExtraTreesRegressor") and estimator.n_outputs_ == 1:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        out = np.zeros(X32.shape[0])
        for t in estimator.estimators_:
            out += t.tree_.predict(X32).reshape(X32.shape[0], -1)[:, 0]
        return out / len(estimator.estimators_)
    if name == "GradientBoostingRegressor":
        return np.asarray(estimator._raw_predict(np.ascontiguousarray(X, dtype=np.float32)), dtype=float).ravel()
    if name == "XGBRegressor":
        return np.asarray(estimator.get_booster().inplace_predict(np.ascontiguousarray(X, dtype=np.float32)), dtype=float).ravel()
    return np.asarray(estimator.predict(X), dtype=float).ravel()


def _n_threads(n_jobs, n_rows: int) -> int:
    """Prediction threads: ``n_jobs`` (None → 1, negative → all cores), one for small calls."""
    if n_jobs is None or n_rows < 1000:
        return 1
    return max(1, int(n_jobs)) if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


def _member_plan(estimator):
    """``(mean, scale, model, kind)`` for a member that is [WeightedERM →] [StandardScaler →] model.

    ``kind`` is ``"xgb"``, ``"forest"``, ``"gbt"`` or ``None`` (any other estimator: generic
    :func:`fast_predict`); ``mean``/``scale`` are ``None`` when the scaler does not centre/scale.
    """
    while type(estimator).__name__ == "WeightedERMRegressor" and hasattr(estimator, "estimator_"):
        estimator = estimator.estimator_
    mean = scale = None
    if isinstance(estimator, Pipeline):
        steps = [st for _, st in estimator.steps[:-1] if st is not None and st != "passthrough"]
        if len(steps) > 1 or (steps and type(steps[0]).__name__ != "StandardScaler"):
            return None, None, estimator, None
        if steps:
            sc = steps[0]
            mean = sc.mean_ if sc.with_mean and sc.mean_ is not None else None
            scale = sc.scale_ if sc.with_std and sc.scale_ is not None else None
        estimator = estimator.steps[-1][1]
    name = type(estimator).__name__
    if name == "XGBRegressor":
        return mean, scale, estimator.get_booster(), "xgb"
    if name in ("RandomForestRegressor", "ExtraTreesRegressor") and estimator.n_outputs_ == 1:
        return mean, scale, estimator, "forest"
    if name == "GradientBoostingRegressor":
        return mean, scale, estimator, "gbt"
    return mean, scale, estimator, None


def _predict_members(estimators, X: np.ndarray, threads: int = 1) -> np.ndarray:
    """Member predictions ``(n_members, n_rows)``, identical to ``fast_predict`` member by member.

    Scaling happens in preallocated float64 buffers (the same ``(X - mean) / scale`` operations
    as ``StandardScaler``), the one float32 copy that every tree model needs is made once per
    member, XGBoost boosters predict with ``inplace_predict`` (no DMatrix), and the members are
    split into ``threads`` contiguous chunks that run in a thread pool (all these libraries
    release the GIL while predicting).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    plans = [_member_plan(e) for e in estimators]
    P = np.empty((len(plans), X.shape[0]))

    def run(lo: int, hi: int) -> None:
        buf64 = np.empty_like(X)
        buf32 = np.empty(X.shape, dtype=np.float32)
        x32_raw = None
        for i in range(lo, hi):
            mean, scale, model, kind = plans[i]
            if kind is None:
                P[i] = fast_predict(model, X if mean is None and scale is None else _scaled(X, mean, scale, buf64).copy())
                continue
            if mean is None and scale is None:
                if x32_raw is None:
                    x32_raw = X.astype(np.float32)
                x32 = x32_raw
            else:
                np.copyto(buf32, _scaled(X, mean, scale, buf64), casting="same_kind")
                x32 = buf32
            if kind == "xgb":
                P[i] = model.inplace_predict(x32).ravel()
            elif kind == "forest":
                acc = np.zeros(X.shape[0])
                for t in model.estimators_:
                    acc += t.tree_.predict(x32).reshape(X.shape[0], -1)[:, 0]
                P[i] = acc / len(model.estimators_)
            else:
                P[i] = np.asarray(model._raw_predict(x32), dtype=float).ravel()

    n = len(plans)
    threads = max(1, min(int(threads), n))
    if threads == 1:
        run(0, n)
    else:
        bounds = np.linspace(0, n, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda k: run(bounds[k], bounds[k + 1]), range(threads)))
    return P


#: ensemble -> (its estimators_ list, compiled trees or None); weak keys, so predict leaves the estimator unchanged
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_for(ensemble):
    """The ensemble's members as one compiled tree set (:mod:`~crystalloop.digital_twin.compiled`),
    built on first use; ``None`` when switched off or when a member is not a tree model."""
    from .compiled import compile_members, is_enabled

    if not is_enabled():
        return None
    hit = _COMPILED.get(ensemble)
    if hit is None or hit[0] is not ensemble.estimators_:
        hit = (ensemble.estimators_, compile_members(ensemble.estimators_, ensemble.n_features_in_))
        _COMPILED[ensemble] = hit
    return hit[1]


def _run_compiled(compiled, X: np.ndarray, threads: int) -> np.ndarray:
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        return compiled.member_predictions(X)
    finally:
        numba.set_num_threads(old)


def _scaled(X: np.ndarray, mean, scale, buf: np.ndarray) -> np.ndarray:
    """``(X - mean) / scale`` into ``buf`` (same float64 operations as ``StandardScaler.transform``)."""
    src = X
    if mean is not None:
        np.subtract(src, mean, out=buf)
        src = buf
    if scale is not None:
        np.divide(src, scale, out=buf)
        src = buf
    return src


class _EnsembleBase(RegressorMixin, BaseEstimator):
    """Shared predict/std logic for the ensemble regressors."""

    def _check_common(self):
        if self.std_mode not in ("ensemble", "predictive"):
            raise ConfigError(f"std_mode must be 'ensemble' or 'predictive', got {self.std_mode!r}")

    def _base(self):
        return DecisionTreeRegressor(min_samples_leaf=2) if self.estimator is None else self.estimator

    def _fit_members(self, X, y, w, rows, seeds) -> list:
        """One clone of the base estimator per row set, seeded, fitted on ``n_jobs`` workers."""
        base = self._base()

        def _one(ix, seed):
            est = clone(base)
            _seed_estimator(est, int(seed))
            return fit_weighted(est, X[ix], y[ix], None if w is None else w[ix])

        return Parallel(n_jobs=self.n_jobs)(delayed(_one)(ix, s) for ix, s in zip(rows, seeds, strict=True))

    def member_predictions(self, X) -> np.ndarray:
        """Predictions of every member, shape ``(n_members, n_samples)``."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._member_predictions(X)

    def _member_predictions(self, X: np.ndarray) -> np.ndarray:
        threads = _n_threads(self.n_jobs, len(X))
        compiled = _compiled_for(self)
        if compiled is not None:
            return _run_compiled(compiled, X, threads)
        return _predict_members(self.estimators_, X, threads)

    def predict(self, X, return_std: bool = False):
        """Ensemble mean, and the standard deviation when ``return_std`` (see module doc).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        return_std : bool

        Returns
        -------
        mean : ndarray, shape (n_samples,)
        std : ndarray, shape (n_samples,), only when ``return_std``
        """
        P = self.member_predictions(X)
        mean = P.mean(axis=0)
        if not return_std:
            return mean
        return mean, self._std_from_members(P)

    def predict_validated(self, X: np.ndarray, return_std: bool = False):
        """:meth:`predict` for a finite float64 array already checked by the caller (no re-validation)."""
        check_is_fitted(self, "estimators_")
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(f"X has shape {X.shape}; expected (n, {self.n_features_in_})")
        P = self._member_predictions(np.ascontiguousarray(X, dtype=np.float64))
        mean = P.mean(axis=0)
        if not return_std:
            return mean
        return mean, self._std_from_members(P)

    def _std_from_members(self, P: np.ndarray) -> np.ndarray:
        spread2 = P.var(axis=0, ddof=1) if P.shape[0] > 1 else np.zeros(P.shape[1])
        if self.std_mode == "predictive":
            spread2 = spread2 + self.residual_var_
        return np.sqrt(spread2)

    def _finish(self, X, y, oof_sum, oof_sq, oof_n):
        """Residual variance from out-of-sample member predictions."""
        seen = oof_n > 0
        self.oof_prediction_ = np.full(len(y), np.nan)
        self.oof_prediction_[seen] = oof_sum[seen] / oof_n[seen]
        if seen.sum() >= 2:
            # mean squared out-of-sample error of single members, minus their mean spread
            mse_member = np.mean(oof_sq[seen] / oof_n[seen])
            P = self._member_predictions(X[seen])
            spread = P.var(axis=0, ddof=1).mean() if P.shape[0] > 1 else 0.0
            self.residual_var_ = float(max(mse_member - spread, 0.0))
        else:
            self.residual_var_ = 0.0
        return self


class MonteCarloCVRegressor(_EnsembleBase):
    """Monte Carlo cross-validation ensemble: one member per random train/validation split.

    Parameters
    ----------
    estimator : estimator, optional
        Base regressor (cloned for each member); default ``DecisionTreeRegressor(min_samples_leaf=2)``.
    n_splits : int, default 100
        Number of random splits = members.
    validation_size : float, default 0.2
        Fraction of rows held out per split (at least one).
    std_mode : {"predictive", "ensemble"}
        See the module docstring.
    n_jobs : int, optional
        joblib workers for fitting (and threads for predicting).
    random_state : int, RandomState or None

    Attributes
    ----------
    estimators_ : list
        Fitted members.
    splits_ : list of (train_idx, val_idx)
    validation_mse_ : ndarray, shape (n_splits,)
        Each member's MSE on its own validation rows.
    oof_prediction_ : ndarray, shape (n_samples,)
        Mean prediction of each training row by the members that did not see it.
    residual_var_ : float
        Out-of-sample error variance not explained by the member spread.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 40)[:, None]; y = 3 * X.ravel()
    >>> m = MonteCarloCVRegressor(n_splits=10, random_state=0).fit(X, y)
    >>> mean, std = m.predict([[0.5]], return_std=True)
    >>> bool(abs(mean[0] - 1.5) < 0.2), std.shape
    (True, (1,))
    """

    def __init__(self, estimator=None, *, n_splits: int = 100, validation_size: float = 0.2,
                 std_mode: Literal["predictive", "ensemble"] = "predictive", n_jobs: int | None = None,
                 random_state=None):
        self.estimator = estimator
        self.n_splits = n_splits
        self.validation_size = validation_size
        self.std_mode = std_mode
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit ``n_splits`` members; ``sample_weight`` is passed to each member's training rows."""
        self._check_common()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        n = X.shape[0]
        if int(self.n_splits) != self.n_splits or self.n_splits < 1:
            raise ConfigError(f"n_splits must be a whole number >= 1, got {self.n_splits!r}")
        if not 0 < self.validation_size < 1:
            raise ConfigError(f"validation_size must be in (0, 1), got {self.validation_size!r}")
        if n < 2:
            raise InsufficientDataError(f"Monte Carlo CV needs at least 2 samples, got n_samples={n}")
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X)
        n_val = min(n - 1, max(1, int(round(self.validation_size * n))))
        rng = check_random_state(self.random_state)
        splits = []
        for _ in range(int(self.n_splits)):
            perm = rng.permutation(n)
            splits.append((np.sort(perm[n_val:]), np.sort(perm[:n_val])))
        seeds = rng.randint(0, 2**31 - 1, size=len(splits))
        self.estimators_ = self._fit_members(X, y, w, [tr for tr, _ in splits], seeds)
        self.splits_ = splits
        oof_sum, oof_sq, oof_n = np.zeros(n), np.zeros(n), np.zeros(n)
        mses = []
        for est, (_, va) in zip(self.estimators_, splits, strict=True):
            p = fast_predict(est, X[va])
            oof_sum[va] += p
            oof_sq[va] += (p - y[va]) ** 2
            oof_n[va] += 1
            mses.append(float(np.mean((p - y[va]) ** 2)))
        self.validation_mse_ = np.asarray(mses)
        return self._finish(X, y, oof_sum, oof_sq, oof_n)


class BootstrapRegressor(_EnsembleBase):
    """Bootstrap ensemble: one member per resample with replacement (out-of-bag rows for errors).

    Parameters are those of :class:`MonteCarloCVRegressor` with ``n_estimators`` instead of
    ``n_splits`` and no ``validation_size``.
    """

    def __init__(self, estimator=None, *, n_estimators: int = 100,
                 std_mode: Literal["predictive", "ensemble"] = "predictive", n_jobs: int | None = None,
                 random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.std_mode = std_mode
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit ``n_estimators`` members on bootstrap resamples."""
        self._check_common()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        n = X.shape[0]
        if int(self.n_estimators) != self.n_estimators or self.n_estimators < 1:
            raise ConfigError(f"n_estimators must be a whole number >= 1, got {self.n_estimators!r}")
        if n < 2:
            raise InsufficientDataError(f"bootstrap needs at least 2 samples, got n_samples={n}")
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X)
        rng = check_random_state(self.random_state)
        draws = [rng.randint(0, n, size=n) for _ in range(int(self.n_estimators))]
        seeds = rng.randint(0, 2**31 - 1, size=len(draws))
        self.estimators_ = self._fit_members(X, y, w, draws, seeds)
        self.samples_ = draws
        oof_sum, oof_sq, oof_n = np.zeros(n), np.zeros(n), np.zeros(n)
        for est, ix in zip(self.estimators_, draws, strict=True):
            oob = np.setdiff1d(np.arange(n), ix)
            if oob.size:
                p = fast_predict(est, X[oob])
                oof_sum[oob] += p
                oof_sq[oob] += (p - y[oob]) ** 2
                oof_n[oob] += 1
        return self._finish(X, y, oof_sum, oof_sq, oof_n)


def _seed_estimator(est, seed: int) -> None:
    """Give every ``random_state`` parameter of ``est`` (nested too) its own seed."""
    params = est.get_params(deep=True)
    upd = {k: seed for k, v in params.items() if k.endswith("random_state") and not isinstance(v, np.random.RandomState)}
    if upd:
        est.set_params(**upd)


def calibration_report(y_true, mean, std, *, levels=(0.68, 0.95)) -> pd.DataFrame:
    """Coverage of central Gaussian prediction intervals on held-out data.

    Parameters
    ----------
    y_true, mean, std : array-like, shape (n,)
    levels : sequence of float
        Nominal coverages (0.68 → ±0.994σ, 0.95 → ±1.96σ).

    Returns
    -------
    DataFrame
        One row per level: ``level, z, coverage, n, mean_width``; plus attributes
        ``attrs["rmse"]``, ``attrs["mean_std"]``, ``attrs["z_rms"]`` (RMS of standardized
        errors, 1 for a calibrated model).
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    mean = np.asarray(mean, dtype=float).ravel()
    std = np.asarray(std, dtype=float).ravel()
    if not (len(y_true) == len(mean) == len(std)):
        raise ConfigError(f"y_true, mean and std need equal lengths, got {len(y_true)}, {len(mean)}, {len(std)}")
    if np.any(std < 0) or not np.all(np.isfinite(std)):
        raise ConfigError("std must be finite and >= 0")
    rows = []
    err = np.abs(y_true - mean)
    for lev in levels:
        if not 0 < lev < 1:
            raise ConfigError(f"coverage levels must be in (0, 1), got {lev}")
        z = float(norm.ppf(0.5 + lev / 2))
        rows.append({"level": lev, "z": z, "coverage": float(np.mean(err <= z * std)) if len(err) else np.nan,
                     "n": len(err), "mean_width": float(np.mean(2 * z * std)) if len(err) else np.nan})
    out = pd.DataFrame(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(std > 0, (y_true - mean) / std, np.nan)
    out.attrs["rmse"] = float(np.sqrt(np.mean(err**2))) if len(err) else np.nan
    out.attrs["mean_std"] = float(np.mean(std)) if len(err) else np.nan
    out.attrs["z_rms"] = float(np.sqrt(np.nanmean(zs**2))) if np.isfinite(zs).any() else np.nan
    return out
