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
``predict_frame``; and ``training_data_`` for the validity domain), so NSGA-II can run on it. It
is honest about itself: per CQA the closed-form leave-one-out predictions of the fitted GP give a
cross-validated MAE, R² and interval coverage (``info_``), and a CQA whose CV R² <= 0 or whose
intervals miss their nominal coverage gets a :class:`~crystalloop.errors.TwinWarning`, as the
ensemble twin does.

Persistence (:meth:`FeatureGPTwin.save`, :meth:`FeatureGPTwin.load`), JSON only::

    twin.json               kind "feature-gp", format version, settings, solubility curve, CV scores,
                            package versions and the SHA-256 of every file below
    models/<cqa>.json       features kept, standardization, kernel with its fitted hyperparameters
                            (and theta), log_target, clip, the GP's training inputs and targets,
                            leave-one-out predictions
    data/doe.csv            the training rows (run_id, recipe and CQA columns)

Loading rebuilds each ``GaussianProcessRegressor`` with the stored kernel (``optimizer=None``)
and refits it on the stored inputs, which reproduces the saved predictions exactly; the same
data and seed give a byte-identical folder. :func:`crystalloop.digital_twin.load_twin` opens
either kind of twin folder.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import (
    ConfigError,
    InsufficientDataError,
    ModelError,
    SchemaError,
    TwinWarning,
    UntrustedModelError,
)
from crystalloop.profiles import ThermocycleProfile, profiles_to_frame
from crystalloop.profiles import feature_names as profile_feature_names

from ._gp_numerics import FastPredictor, fit_gp, fit_isotropic, one_blas_thread
from .doe import DoETable, read_doe, resolve_cqa
from .features import SolubilityCurve, profile_features
from .fitting import honesty_warnings
from .models import MIN_ROWS
from .persist import (
    check_files,
    jsonable,
    kernel_from_dict,
    kernel_to_dict,
    read_json_file,
    sha256_file,
)
from .uncertainty import calibration_report

__all__ = ["FeatureGPRegressor", "FeatureGPTwin", "fit_gp_twin", "solubility_curve", "GP_FORMAT_VERSION", "GP_KIND",
           "write_twin_folder", "read_twin_folder", "warn_version_drift",
           "recipe_matrix", "warn_unseen_segments", "package_versions"]

#: ``kind`` in the twin.json of a GP twin folder (an ensemble twin's folder has another kind).
GP_KIND = "feature-gp"
#: Version of the GP twin folder layout.
GP_FORMAT_VERSION = 1
_ALPHA = 1e-10  # GaussianProcessRegressor's default jitter, stored with each model


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
        """Leave-one-out MAE of an isotropic GP on ``cols`` (closed form, one fit: Rasmussen & Williams eq. 5.12).

        The GP's hyperparameters are fitted by :func:`fit_isotropic` (the same marginal likelihood and
        optimizer as scikit-learn's, without its per-call overhead: the forward selection runs
        thousands of these fits)."""
        A = F[:, cols]
        mu, sd = A.mean(0), A.std(0)
        sd[sd == 0] = 1.0
        A = (A - mu) / sd
        t = self._fwd(y)
        t_mean, t_std = t.mean(), t.std()
        t_std = t_std if t_std > 0 else 1.0
        K = fit_isotropic(A, (t - t_mean) / t_std)
        Kinv = np.linalg.inv(K + 1e-10 * np.eye(len(A)))
        tn = (t - t_mean) / t_std
        loo = t - (Kinv @ tn) / np.diag(Kinv) * t_std
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
        with one_blas_thread():
            return self._fit(X, y)

    def _fit(self, X, y) -> FeatureGPRegressor:
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
        self.gp_ = fit_gp((A - self.mean_) / self.scale_, self._fwd(y), ard=bool(self.ard), restarts=int(self.n_restarts),
                           seed=seed)
        self.y_train_ = y
        self.loo_mean_, self.loo_std_ = self._loo()
        self.n_features_in_ = len(profile_feature_names(self.max_cycles))
        return self

    def _loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out mean and std of every training row (target units), with the
        fitted hyperparameters (Rasmussen & Williams eq. 5.12); the std includes the noise term.

        The prior mean (``normalize_y``: the mean of the targets) is re-estimated without the left-out
        row, as a refit on the other rows would: for a prior mean ``c``, the LOO residual is
        ``[K⁻¹(y - c)]_i / [K⁻¹]_ii``, and ``c_i`` is the mean of the other rows."""
        gp = self.gp_
        from scipy.linalg import cho_solve

        n = len(gp.L_)
        Kinv = cho_solve((gp.L_, True), np.eye(n))
        d = np.diag(Kinv)
        yn = np.ravel(gp.y_train_)
        c = -yn / (n - 1)  # mean of the other rows, normalized units
        mu = yn - (gp.alpha_.ravel() - c * Kinv.sum(axis=1)) / d  # normalized target units
        sd = np.sqrt(1.0 / d)
        mu = gp._y_train_mean + gp._y_train_std * mu
        sd = float(np.ravel(gp._y_train_std)[0]) * sd
        mu, sd = self._back(mu, sd)
        return np.asarray(mu, dtype=float), np.asarray(sd, dtype=float)

    def cv_scores(self) -> dict[str, Any]:
        """Cross-validated scores from the leave-one-out predictions: ``n``, ``mae``, ``r2``,
        ``calibration`` (level, coverage, n, mean width per 68 % / 95 % interval), ``outer_cv_mae``
        (the feature strategy's outer-CV MAE when ``features="cv"``)."""
        check_is_fitted(self, "gp_")
        y, mu, sd = self.y_train_, self.loo_mean_, self.loo_std_
        cal = calibration_report(y, mu, sd)
        return {"n": int(len(y)), "mae": float(np.mean(np.abs(y - mu))),
                "r2": float(r2_score(y, mu)) if len(y) > 1 and np.ptp(y) > 0 else None,
                "calibration": cal.to_dict("records"),
                "outer_cv_mae": self.strategy_mae_.get(self.strategy_) if self.strategy_mae_ else None}

    def _predict_features(self, F: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        A = (F[self.features_].to_numpy(dtype=float) - self.mean_) / self.scale_
        fast = FastPredictor.of(self.gp_)
        mu, sd = fast(A) if fast is not None else self.gp_.predict(A, return_std=True)
        mu, sd = self._back(mu, sd)
        return mu, sd

    def predict(self, X, return_std: bool = False):
        """Mean (and std) of the CQA, target units; shape (n,)."""
        check_is_fitted(self, "gp_")
        F = self._physical(X)
        with one_blas_thread():
            mu, sd = self._predict_features(F)
        return (mu, sd) if return_std else mu

    # -- persistence (JSON; used by FeatureGPTwin.save/load) -------------------------------------
    def _state(self) -> dict[str, Any]:
        gp = self.gp_
        params = self.get_params()
        s = self._curve()
        params["solubility"] = None if s is None else s.to_dict()
        params["features"] = self.features if isinstance(self.features, str) else list(self.features)
        return {
            "params": params,
            "features_kept": list(self.features_),
            "strategy": self.strategy_,
            "strategy_mae": self.strategy_mae_,
            "selection_path": [[n, v] for n, v in self.selection_path_],
            "selection_cv_mae": self.cv_mae_,
            "standardization": {"mean": self.mean_, "scale": self.scale_},
            "log_target": bool(self.log_target),
            "clip": None if self.clip is None else [float(v) for v in self.clip],
            "gp": {"kernel": kernel_to_dict(gp.kernel_), "theta": gp.kernel_.theta, "alpha": _ALPHA,
                   "normalize_y": True, "log_marginal_likelihood": float(gp.log_marginal_likelihood_value_)},
            "training": {"X": gp.X_train_, "y": self.y_train_},
            "leave_one_out": {"mean": self.loo_mean_, "std": self.loo_std_},
        }

    @classmethod
    def _from_state(cls, d: Any, source: str) -> FeatureGPRegressor:
        try:
            params = dict(d["params"])
            if isinstance(params.get("features"), list):
                params["features"] = tuple(params["features"])
            if params.get("clip") is not None:
                params["clip"] = tuple(params["clip"])
            m = cls(**params)
            m.features_ = [str(f) for f in d["features_kept"]]
            m.strategy_, m.strategy_mae_ = str(d["strategy"]), dict(d["strategy_mae"])
            m.selection_path_ = [(str(n), float(v)) for n, v in d["selection_path"]]
            m.cv_mae_ = float(d["selection_cv_mae"])
            m.mean_ = np.asarray(d["standardization"]["mean"], dtype=float)
            m.scale_ = np.asarray(d["standardization"]["scale"], dtype=float)
            X = np.asarray(d["training"]["X"], dtype=float)
            y = np.asarray(d["training"]["y"], dtype=float)
            kernel = kernel_from_dict(d["gp"]["kernel"], source=source)
            theta = np.asarray(d["gp"]["theta"], dtype=float)
            alpha = float(d["gp"]["alpha"])
            loo = d["leave_one_out"]
            m.loo_mean_, m.loo_std_ = np.asarray(loo["mean"], dtype=float), np.asarray(loo["std"], dtype=float)
        except UntrustedModelError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"model file {source} lacks or garbles the GP state ({type(e).__name__}: {e}); "
                             f"refit the twin") from None
        if X.ndim != 2 or X.shape != (len(y), len(m.features_)) or m.mean_.shape != (len(m.features_),):
            raise ModelError(f"model file {source}: training inputs of shape {X.shape} do not match "
                             f"{len(y)} targets and {len(m.features_)} features; refit the twin")
        if theta.shape != kernel.theta.shape or not np.allclose(theta, kernel.theta, rtol=0, atol=1e-12):
            raise ModelError(f"model file {source}: the kernel's hyperparameters do not match its stored theta; "
                             f"refit the twin")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with one_blas_thread():  # as in fit
                m.gp_ = GaussianProcessRegressor(kernel, alpha=alpha, optimizer=None, normalize_y=True).fit(X, m._fwd(y))
        m.y_train_ = y
        m.n_features_in_ = len(profile_feature_names(m.max_cycles))
        return m


def warn_unseen_segments(A: np.ndarray, cqas: Sequence[str], info: dict) -> None:
    """A :class:`~crystalloop.errors.TwinWarning` per CQA for recipe rows ``A`` whose number of segments no
    training run of that CQA had (``info[cqa]["n_segments_seen"]``): the prediction extrapolates."""
    nseg = np.rint(A[:, 3])
    for c in cqas:
        seen = info.get(c, {}).get("n_segments_seen") or []
        unseen = ~np.isin(nseg, seen)
        if seen and unseen.any():
            warnings.warn(f"{int(unseen.sum())} profile(s) have n_segments {sorted({int(v) for v in nseg[unseen]})}, "
                          f"never seen in the training runs of {c} (seen: {seen}); the prediction "
                          f"extrapolates - run such profiles and refit before trusting it", TwinWarning,
                          stacklevel=3)


def recipe_matrix(X, feature_names: Sequence[str], max_cycles: int) -> np.ndarray:
    """Recipe rows as a float array, shape (n, len(feature_names)): profiles, a DataFrame with the
    feature columns, or an array; every value finite (else :class:`~crystalloop.errors.ModelError`
    naming the row and feature)."""
    feature_names = list(feature_names)
    if isinstance(X, ThermocycleProfile):
        X = [X]
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], ThermocycleProfile):
        try:
            X = profiles_to_frame(list(X), max_cycles)
        except Exception as e:
            raise ModelError(f"cannot encode the profiles for this twin (max_cycles={max_cycles}): {e}") from None
    if isinstance(X, pd.DataFrame):
        missing = [c for c in feature_names if c not in X.columns]
        if missing:
            raise ModelError(f"feature table lacks column(s) {missing[:5]}; this twin expects "
                             f"feature_names({max_cycles}) ({len(feature_names)} columns)")
        A = X[feature_names].to_numpy(dtype=float)
    else:
        try:
            A = np.atleast_2d(np.asarray(X, dtype=float))
        except (TypeError, ValueError):
            raise ModelError(f"X must be a feature DataFrame or a numeric 2-D array; got {type(X).__name__}") from None
        if A.ndim != 2 or A.shape[1] != len(feature_names):
            raise ModelError(f"X has shape {A.shape}; this twin expects (n, {len(feature_names)}) feature "
                             f"vectors (feature_names({max_cycles}))")
    if not np.isfinite(A).all():
        r, c = np.argwhere(~np.isfinite(A))[0]
        raise ModelError(f"row {r}, feature {feature_names[c]!r}: value {A[r, c]} is not finite")
    return A


def package_versions() -> dict[str, str]:
    """Versions of Python and the numerical packages, stored with a fitted twin."""
    import scipy
    import sklearn

    import crystalloop

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "crystalloop": getattr(crystalloop, "__version__", "unknown")}


def write_twin_folder(twin: Any, directory: str | Path, *, kind: str, version: int) -> Path:
    """Write a GP-family twin's folder: ``models/{cqa}.json`` (each regressor's ``_state()``),
    ``data/doe.csv`` and ``twin.json`` (kind, format version, SHA-256 of every file, metadata, info).
    JSON only, no time stamps: the same twin gives byte-identical files."""
    d = Path(directory)
    (d / "models").mkdir(parents=True, exist_ok=True)
    (d / "data").mkdir(exist_ok=True)
    files: dict[str, str] = {}
    for c in twin.cqas:
        rel = f"models/{c}.json"
        state = {"cqa": c, **twin.models_[c]._state()}
        (d / rel).write_text(json.dumps(jsonable(state), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        files[rel] = sha256_file(d / rel)
    twin.training_data_.to_csv(d / "data" / "doe.csv", index=False)
    files["data/doe.csv"] = sha256_file(d / "data" / "doe.csv")
    doc = {"kind": kind, "format_version": version, "cqas": list(twin.cqas),
           "max_cycles": int(twin.max_cycles), "feature_names": list(twin.feature_names),
           "files": files, "metadata": twin.metadata_, "info": twin.info_}
    (d / "twin.json").write_text(json.dumps(jsonable(doc), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return d


def read_twin_folder(directory: str | Path, *, kind: str, version: int, what: str) -> dict[str, Any]:
    """Check a folder written by :func:`write_twin_folder` (kind, format version, keys, feature names,
    the listed files and their SHA-256) and return ``dir``, ``meta`` (twin.json's path), ``cqas``,
    ``max_cycles``, ``info``, ``metadata`` and ``settings``.

    Raises
    ------
    ModelError
        A missing or malformed file (named), another kind of twin (``what`` names the expected
        one), an unknown format version.
    UntrustedModelError
        A file that was modified, truncated or replaced.
    """
    d = Path(directory)
    meta = d / "twin.json"
    if not meta.is_file():
        raise ModelError(f"{d} is not a saved twin: {meta} is missing (create one with `crystalloop twin fit`)")
    doc = read_json_file(meta)
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise ModelError(f"{meta} does not describe a {what} (kind {doc.get('kind') if isinstance(doc, dict) else None!r}, "
                         f"expected {kind!r})")
    if doc.get("format_version") != version:
        raise ModelError(f"{meta}: {what} format v{doc.get('format_version')!r}, this crystalloop reads "
                         f"v{version}; refit the twin")
    try:
        cqas = [str(c) for c in doc["cqas"]]
        mc = int(doc["max_cycles"])
        files, info, metadata = doc["files"], dict(doc["info"]), dict(doc["metadata"])
        settings = dict(metadata["settings"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{meta} lacks or garbles the key {e}; the twin folder is damaged - refit the twin") from None
    if doc.get("feature_names") != profile_feature_names(mc):
        raise ModelError(f"{meta}: stored feature names do not match feature_names({mc}) of this crystalloop")
    expected = {f"models/{c}.json" for c in cqas} | {"data/doe.csv"}
    if not isinstance(files, dict) or set(files) != expected:
        raise UntrustedModelError(f"{meta} lists the files {sorted(files) if isinstance(files, dict) else files!r}; "
                                  f"expected {sorted(expected)}")
    check_files(d, files, listed_in=meta)
    return {"dir": d, "meta": meta, "cqas": cqas, "max_cycles": mc, "info": info, "metadata": metadata,
            "settings": settings}


def warn_version_drift(directory: Path, metadata: dict, installed: dict[str, str], packages: Sequence[str]) -> None:
    """One :class:`TwinWarning` when the folder was saved with other versions of ``packages``."""
    saved = metadata.get("versions", {})
    diff = {k: (saved[k], installed.get(k)) for k in packages if k in saved and saved[k] != installed.get(k)}
    if diff:
        warnings.warn(f"twin {directory} was saved with {diff} (saved, installed); predictions may differ slightly - "
                      f"refit to be safe", TwinWarning, stacklevel=3)


class FeatureGPTwin:
    """One :class:`FeatureGPRegressor` per CQA, behind the design's twin protocol.

    Parameters
    ----------
    cqas : sequence of str
        CQA columns of the training table (``D50_um``, ``DoA_pct``, ``crystallinity_pct``; short
        names such as ``D50`` are resolved against the table).
    solubility : SolubilityCurve, dict, coefficients, text or path, optional
        ``c*(T)`` in mg/g solvent, T in °C (anything :func:`solubility_curve` reads); without it the
        GP uses the profile-only features.
    max_cycles : int
    log_cqas : sequence of str
        CQAs fitted on the log scale (default none: on the shipped DoE, log D50 did worse).
    percent_cqas : sequence of str
        CQAs clipped to 0–100 (default: names ending in ``_pct``).
    random_state : int, optional
    **regressor_params
        Passed to every :class:`FeatureGPRegressor` (``features``, ``max_features``, ...).

    Attributes
    ----------
    models_ : dict of str -> FeatureGPRegressor
    training_data_ : DataFrame
        The training rows (``run_id`` when the table has one, recipe columns, CQA columns); the
        design's validity domain is built from it.
    info_ : dict
        CQA -> rows, features kept, strategy, cross-validated (leave-one-out) MAE / R² /
        calibration, warnings, training range, ``n_segments`` seen.
    metadata_ : dict
        Package versions, data source and hash, settings.
    fit_times_ : dict
        Wall and CPU seconds of the fit (not saved: the folder is reproducible).
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

    def _check_fitted(self) -> None:
        if "models_" not in self.__dict__:
            raise ModelError("this FeatureGPTwin is not fitted yet; call fit(doe) or FeatureGPTwin.load(folder)")

    def _curve(self) -> SolubilityCurve | None:
        return solubility_curve(self.solubility)

    def fit(self, table: DoETable | pd.DataFrame | str | Path) -> FeatureGPTwin:
        """Fit on a DoE table (recipe columns + CQA columns; rows without a CQA are left out of its model).

        Parameters
        ----------
        table : DoETable, DataFrame or path
            A DataFrame with the recipe columns is used as is; anything else is read with
            :func:`~crystalloop.digital_twin.read_doe`.

        Raises
        ------
        SchemaError
            The table lacks a recipe or CQA column.
        InsufficientDataError
            A CQA has fewer than 5 measured rows.
        """
        t0, c0 = time.perf_counter(), time.process_time()
        source, data_hash = "DataFrame", None
        if isinstance(table, (DoETable, str, Path)):
            doe = table if isinstance(table, DoETable) else read_doe(table)
            source, data_hash = str(doe.source), doe.data_hash()
            table = doe.to_frame()
        elif not isinstance(table, pd.DataFrame):
            raise SchemaError(f"FeatureGPTwin.fit takes a DoE table (DoETable, DataFrame or path), got {type(table).__name__}")
        cqa_cols = [c for c in table.columns if c not in self.feature_names and c != "run_id"]
        self.cqas = [self._resolve(c, cqa_cols) for c in self.cqas]
        missing = [c for c in [*self.feature_names, *self.cqas] if c not in table.columns]
        if missing:
            raise SchemaError(f"training table lacks columns {missing[:6]}")
        pct = [c for c in self.cqas if c.endswith("_pct")] if self.percent_cqas is None else list(self.percent_cqas)
        self.models_, self.info_ = {}, {}
        seg_all = np.rint(table["n_segments"].to_numpy(float))
        for c in self.cqas:
            mask = table[c].notna().to_numpy()
            rows = table[mask]
            t1 = time.perf_counter()
            m = FeatureGPRegressor(solubility=self._curve(), max_cycles=self.max_cycles, log_target=c in self.log_cqas,
                                   clip=(0.0, 100.0) if c in pct else None, random_state=self.random_state,
                                   **self.regressor_params)
            if len(rows) < 5:
                raise InsufficientDataError(f"{source}: CQA {c!r} has {len(rows)} measured row(s); a GP needs at least 5. "
                                            f"Measure it in more runs or leave it out of the CQAs modelled (--cqa, cqas=)")
            self.models_[c] = m.fit(rows[self.feature_names], rows[c].to_numpy(float))
            sc = m.cv_scores()
            cal = {round(float(r["level"]), 2): r for r in sc["calibration"]}
            unit = " µm" if c.endswith("_um") else " %" if c.endswith("_pct") else ""
            y = rows[c].to_numpy(float)
            self.info_[c] = {
                "model": "gp", "n_rows": int(len(rows)), "features": list(m.features_), "strategy": m.strategy_,
                "strategy_mae": dict(m.strategy_mae_), "kernel": str(m.gp_.kernel_),
                "cv_method": "closed-form leave-one-out of the fitted GP (hyperparameters and features chosen on all rows)",
                "cv_mae": sc["mae"], "cv_r2": sc["r2"], "outer_cv_mae": sc["outer_cv_mae"],
                "calibration_cv": sc["calibration"],
                "coverage_68": cal.get(0.68, {}).get("coverage"), "coverage_95": cal.get(0.95, {}).get("coverage"),
                "warnings": honesty_warnings(c, y, sc["r2"], sc["calibration"], unit=unit),
                "target_range": [float(y.min()), float(y.max())],
                "n_segments_seen": sorted({int(v) for v in seg_all[mask]}),
                "fit_s": time.perf_counter() - t1,
            }
        keep = [c for c in ("run_id", *self.feature_names, *self.cqas) if c in table.columns]
        self.training_data_ = table[keep].reset_index(drop=True)
        self.metadata_ = {"versions": package_versions(), "source": source, "data_hash": data_hash,
                          "n_runs": int(len(table)), "settings": self._settings()}
        self.fit_times_ = {"fit_time_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                           "per_cqa_s": {c: self.info_[c].pop("fit_s") for c in self.cqas}}
        for c in self.cqas:
            for msg in self.info_[c]["warnings"]:
                warnings.warn(msg, TwinWarning, stacklevel=2)
        return self

    @staticmethod
    def _resolve(name: str, available: list[str]) -> str:
        try:
            return resolve_cqa(name, available)
        except SchemaError:
            return name  # reported with every other missing column

    def _settings(self) -> dict[str, Any]:
        s = self._curve()
        rp = dict(self.regressor_params)
        if "features" in rp and not isinstance(rp["features"], str):
            rp["features"] = list(rp["features"])
        return {"cqas": list(self.cqas), "solubility": None if s is None else s.to_dict(),
                "max_cycles": int(self.max_cycles), "log_cqas": list(self.log_cqas),
                "percent_cqas": None if self.percent_cqas is None else list(self.percent_cqas),
                "random_state": self.random_state, "regressor_params": rp}

    # ------------------------------------------------------------------ predict
    def _matrix(self, X) -> np.ndarray:
        return recipe_matrix(X, self.feature_names, self.max_cycles)

    def _mean_std(self, A: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        F = profile_features(A, solubility=self._curve(), max_cycles=self.max_cycles)  # once for every CQA
        mu = np.empty((len(A), len(names)))
        sd = np.empty((len(A), len(names)))
        with one_blas_thread():
            for j, c in enumerate(names):
                mu[:, j], sd[:, j] = self.models_[c]._predict_features(F)
        return mu, sd

    def predict(self, X, return_std: bool = False):
        """Means (and stds), shape (n, len(cqas)), in ``cqas`` order (CQA units)."""
        mu, sd = self._mean_std(self._matrix(X), self.cqas)
        return (mu, sd) if return_std else mu

    def predict_frame(self, X, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """``{cqa}_mean`` / ``{cqa}_std`` columns for recipe rows ``X`` (profiles, a DataFrame with the
        feature columns, or an array of shape (n, len(feature_names))); the index of a DataFrame is kept.

        ``warn``: warn (:class:`~crystalloop.errors.TwinWarning`) about profiles whose number of
        segments no training run of that CQA had (the prediction extrapolates).
        """
        A = self._matrix(X)
        names = list(self.cqas) if cqas is None else [resolve_cqa(c, self.cqas) for c in cqas]
        if warn:
            warn_unseen_segments(A, names, self.info_)
        mu, sd = self._mean_std(A, names)
        cols = {}
        for j, c in enumerate(names):
            cols[f"{c}_mean"], cols[f"{c}_std"] = mu[:, j], sd[:, j]
        return pd.DataFrame(cols, index=X.index if isinstance(X, pd.DataFrame) else None)

    def summary(self) -> pd.DataFrame:
        """One row per CQA: model, rows, features kept, cross-validated R²/MAE, coverage, warning."""
        self._check_fitted()
        return pd.DataFrame([{
            "cqa": c, "model": "gp", "n_rows": i["n_rows"], "n_features": len(i["features"]),
            "features": i["strategy"], "cv_r2": i["cv_r2"], "cv_mae": i["cv_mae"],
            "coverage_68": i["coverage_68"], "coverage_95": i["coverage_95"],
            "warning": "; ".join(i["warnings"]),
        } for c, i in ((c, self.info_[c]) for c in self.cqas)])

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the model folder (see the module docstring); returns its path.

        The same data and ``random_state`` give byte-identical files (no time stamps; the fit
        times stay in :attr:`fit_times_`).
        """
        self._check_fitted()
        return write_twin_folder(self, directory, kind=GP_KIND, version=GP_FORMAT_VERSION)

    @classmethod
    def load(cls, directory: str | Path) -> FeatureGPTwin:
        """Read a folder written by :meth:`save`; every file is checked against its SHA-256 in twin.json.

        Raises
        ------
        ModelError
            A missing or malformed file (named), another kind of twin, an unknown format version.
        UntrustedModelError
            A file that was modified, truncated or replaced, or an unknown kernel type.
        """
        f = read_twin_folder(directory, kind=GP_KIND, version=GP_FORMAT_VERSION, what="GP twin")
        d, meta, cqas, mc, info, metadata, settings = (f[k] for k in ("dir", "meta", "cqas", "max_cycles", "info",
                                                                       "metadata", "settings"))
        sol = settings.get("solubility")
        try:
            twin = cls(cqas, solubility=None if sol is None else SolubilityCurve.from_dict(sol, source=str(meta)),
                       max_cycles=mc, log_cqas=settings.get("log_cqas", ()), percent_cqas=settings.get("percent_cqas"),
                       random_state=settings.get("random_state"), **dict(settings.get("regressor_params") or {}))
        except (TypeError, ConfigError) as e:
            raise ModelError(f"{meta}: settings cannot be read ({e}); refit the twin") from None
        twin.models_ = {}
        for c in cqas:
            p = d / "models" / f"{c}.json"
            twin.models_[c] = FeatureGPRegressor._from_state(read_json_file(p), str(p))
        twin.training_data_ = pd.read_csv(d / "data" / "doe.csv")
        twin.info_, twin.metadata_, twin.fit_times_ = info, metadata, {}
        warn_version_drift(d, metadata, package_versions(), ("scikit-learn", "numpy", "scipy"))
        return twin


def fit_gp_twin(doe: DoETable | pd.DataFrame | str | Path, *, cqas: Sequence[str] | None = None,
                solubility: SolubilityCurve | dict | None = None, features: str | Sequence[str] = "all",
                random_state: int = 0, **params: Any) -> FeatureGPTwin:
    """Fit a :class:`FeatureGPTwin` from a DoE table in one call (what ``twin fit --model gp`` runs).

    Parameters
    ----------
    doe : DoETable, DataFrame or path
        Read with :func:`~crystalloop.digital_twin.read_doe`.
    cqas : sequence of str, optional
        CQAs to model (short names allowed); default every CQA column with at least
        :data:`~crystalloop.digital_twin.models.MIN_ROWS` measured rows (the others are left
        out with a :class:`~crystalloop.errors.TwinWarning`).
    solubility : SolubilityCurve, dict, coefficients, text or path, optional
        ``c*(T)``, mg/g solvent, T in °C (:func:`solubility_curve`): adds the saturation features.
    features : "all", "cv", "auto" or list of str
        Feature set of every CQA's GP (:class:`FeatureGPRegressor`). Default ``"all"``: every
        non-constant physical feature (a second to fit). ``"cv"`` picks between all and a
        forward selection by an outer 5-fold CV (about 4 CPU-s on the 31-run DoE; it chose
        "all" for every CQA of the shipped DoE).
    random_state : int
    **params
        Other :class:`FeatureGPTwin` / :class:`FeatureGPRegressor` settings (``log_cqas``,
        ``max_features``, ``ard``, ...).
    """
    table = doe if isinstance(doe, DoETable) else read_doe(doe)
    counts = table.n_measured()
    if cqas is None:
        chosen = [c for c in table.cqa_names if counts[c] >= MIN_ROWS]
        for c in table.cqa_names:
            if counts[c] < MIN_ROWS:
                warnings.warn(f"{table.source}: CQA {c!r} has {int(counts[c])} measured row(s) (< {MIN_ROWS}); it is "
                              f"left out of the twin. Measure it in more runs to model it", TwinWarning, stacklevel=2)
        if not chosen:
            raise ModelError(f"{table.source}: no CQA column has at least {MIN_ROWS} measured rows; nothing to model "
                             f"(CQA columns: {table.cqa_names})")
    else:
        chosen = [resolve_cqa(c, table.cqa_names) for c in cqas]
    return FeatureGPTwin(chosen, solubility=solubility, max_cycles=int(table.max_cycles), random_state=random_state,
                         features=features, **params).fit(table)


def solubility_curve(spec: Any, *, parameter: str = "solubility") -> SolubilityCurve | None:
    """A :class:`~crystalloop.digital_twin.features.SolubilityCurve` from what a user gives.

    Parameters
    ----------
    spec : None, SolubilityCurve, dict, sequence of float, str or path
        Polynomial coefficients ``a0, a1, a2, ...`` of ``c*(T)`` in mg/g solvent with T in °C
        (a sequence or text such as ``"8.0,0.283,0.00917"``), a mapping
        (:meth:`SolubilityCurve.from_dict`), or a file: CSV with columns ``T_c`` and
        ``solubility_mg_g`` (e.g. measured clear points), or YAML/JSON with ``coefficients`` or
        ``table_t_c``/``table_mg_g``.
    parameter : str
        Name used in error messages (``--solubility`` on the command line).

    Raises
    ------
    ConfigError
        Text that is neither numbers nor an existing file, or a curve that is not increasing.

    Examples
    --------
    >>> round(float(solubility_curve("8.0,0.283,0.00917")(50.0)), 2)
    45.07
    """
    if spec is None or isinstance(spec, SolubilityCurve):
        return spec
    if isinstance(spec, dict):
        return SolubilityCurve.from_dict(spec, source=parameter)
    if isinstance(spec, (list, tuple, np.ndarray)):
        try:
            return SolubilityCurve(coefficients=tuple(float(v) for v in spec))
        except (TypeError, ValueError):
            raise ConfigError(f"{parameter}: coefficients must be numbers (mg/g solvent, T in °C), got {list(spec)!r}") from None
    text = str(spec).strip()
    parts = [v.strip() for v in text.split(",") if v.strip()]
    try:
        coefficients = tuple(float(v) for v in parts)
    except ValueError:
        coefficients = ()
    if coefficients and len(parts) == text.count(",") + 1:
        return SolubilityCurve(coefficients=coefficients)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{parameter} {text!r} is neither comma-separated polynomial coefficients a0,a1,a2 "
                          f"(mg/g solvent, T in °C; e.g. 8.0,0.283,0.00917) nor an existing CSV/YAML/JSON file")
    return SolubilityCurve.from_file(path)
