"""Hybrid (grey-box) twin: a fitted kinetic model under a Gaussian process (issue 16).

A GP on physical profile features (:mod:`crystalloop.digital_twin.gp`) learns from 31 runs what
the recipes *look like*; it cannot know that a heating which dissolves the seeds turns a seeded
batch into an unseeded one. The kinetic model of :mod:`crystalloop.digital_twin.kinetic` does:
its constants are fitted to the DoE's D50 and it is then run on every recipe, giving mechanistic
quantities (predicted D50, seed survival, nuclei share, peak supersaturation, ...). The GP works
on top of it, as PharmaPy users calibrate a mechanistic model and correct it with data:

* D50: the GP models the residual ``log y − log D50_kin`` (the kinetic model is the GP's mean
  function on the log scale), on the physical profile features;
* other CQAs (DoA, crystallinity, which the kinetic model does not describe): a GP on the
  kinetic quantities together with the physical profile features.

Without a solubility curve there is no supersaturation and so no kinetic model: the regressors
fall back to the profile-only features (a plain feature GP).

:class:`HybridTwin` is a first-class twin like :class:`~crystalloop.digital_twin.FeatureGPTwin`:
closed-form leave-one-out CV scores and honesty warnings per CQA (``info_``), and a model folder
without pickle (:meth:`HybridTwin.save`, :meth:`HybridTwin.load`,
:func:`crystalloop.digital_twin.load_twin`)::

    twin.json               kind "hybrid", format version, settings (solubility curve, seed, kinetic
                            settings), the fitted kinetic constants, CV scores, package versions
                            and the SHA-256 of every file below
    models/<cqa>.json       GP inputs, standardization, kernel with its fitted hyperparameters,
                            noise-feature parameters, std calibration factor, the kinetic model's
                            settings and constants (thetas), the GP's training inputs and targets,
                            leave-one-out predictions
    data/doe.csv            the training rows (run_id, recipe and CQA columns)

Loading reads the kinetic constants (no refit) and refits each GP on its stored inputs with its
stored kernel and the optimizer off: the predictions are bit-identical, and the same data and
seed give a byte-identical folder (tested).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import (
    ConfigError,
    InsufficientDataError,
    ModelError,
    SchemaError,
    TwinWarning,
    UntrustedModelError,
)
from crystalloop.profiles import feature_names as profile_feature_names

from ._gp_numerics import one_blas_thread
from .doe import DoETable, read_doe, resolve_cqa
from .features import PROFILE_FEATURES, SOLUBILITY_FEATURES, SolubilityCurve, profile_features
from .fitting import honesty_warnings
from .gp import (
    package_versions,
    read_twin_folder,
    recipe_matrix,
    solubility_curve,
    warn_unseen_segments,
    warn_version_drift,
    write_twin_folder,
)
from .kinetic import KINETIC_FEATURES, KINETIC_STATE_FEATURES, KineticModel
from .models import MIN_ROWS
from .persist import (
    kernel_from_dict,
    kernel_to_dict,
    read_json_file,
)
from .uncertainty import calibration_report

__all__ = ["HybridGPRegressor", "HybridTwin", "fit_hybrid_twin", "HYBRID_KIND", "HYBRID_FORMAT_VERSION"]

#: ``kind`` in the twin.json of a hybrid twin folder.
HYBRID_KIND = "hybrid"
#: Version of the hybrid twin folder layout.
HYBRID_FORMAT_VERSION = 1

_FEATURE_SETS = ("physical", "kinetic", "all")
#: GP inputs per CQA chosen on the development set (benchmarks/results/plant_truth/dev_recipes.csv):
#: the D50 residual of the kinetic model on the physical features (inputs that tracked the residual
#: better on one fit, e.g. the peak supersaturation, did worse on another: not robust); DoA on the
#: kinetic quantities (with the last growth period); crystallinity on the physical features and the
#: kinetic state
_DEFAULT_FEATURES: dict[str, Any] = {
    "D50_um": "physical", "DoA_pct": "kinetic",
    "crystallinity_pct": [*PROFILE_FEATURES, *SOLUBILITY_FEATURES, *KINETIC_STATE_FEATURES],
}


def _gp(A: np.ndarray, y: np.ndarray, *, restarts: int, seed: int) -> GaussianProcessRegressor:
    k = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(1.0, nu=2.5, length_scale_bounds=(5e-2, 1e2))
         + WhiteKernel(1e-2, (1e-5, 1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(k, normalize_y=True, n_restarts_optimizer=restarts, random_state=seed).fit(A, y)


def _loo(gp: GaussianProcessRegressor, A: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form leave-one-out residuals ``t_i − μ_loo,i`` and std ``σ_loo,i`` of a fitted GP (target
    units; Rasmussen & Williams eq. 5.12)."""
    scale = t.std() or 1.0
    tn = (t - t.mean()) / scale
    Kinv = np.linalg.inv(gp.kernel_(A) + gp.alpha * np.eye(len(A)))
    d = np.diag(Kinv)
    return (Kinv @ tn) / d * scale, scale / np.sqrt(d)


def _fit_excess_noise(r: np.ndarray, s_loo: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of an input-dependent noise ``exp(a + b x)`` (``b ≥ 0``, ``x`` standardized) that the
    leave-one-out residuals ``r`` show beyond the GP's own ``s_loo``: Gaussian maximum likelihood."""

    def nll(p):
        v = s_loo**2 + np.exp(2 * (p[0] + p[1] * x))
        return 0.5 * float(np.sum(np.log(v) + r**2 / v))

    best = min((minimize(nll, np.array([a0, b0]), method="L-BFGS-B", bounds=[(-12.0, 2.0), (0.0, 10.0)])
                for a0 in (-6.0, -2.0) for b0 in (0.0, 1.0)), key=lambda res: res.fun)
    return float(best.x[0]), float(best.x[1])


class HybridGPRegressor(RegressorMixin, BaseEstimator):
    """GP on physical and kinetic-model features, optionally with the kinetic D50 as its mean.

    Parameters
    ----------
    solubility : SolubilityCurve or dict, optional
        ``c*(T)`` (mg/g solvent, T in °C). Without it: profile-only features, no kinetic model.
    max_cycles : int
        Cycle slots of the recipe vectors ``X`` (:func:`crystalloop.profiles.feature_names`).
    mean : {"kinetic", "none"}
        ``"kinetic"``: the target is a size (µm, e.g. D50) and the GP models
        ``log y − log D50_kin``; the kinetic constants are fitted to ``y`` unless
        ``kinetic_theta`` is given (without a solubility curve: as ``"none"``). ``"none"``: a GP
        on ``y`` (normalized).
    features : {"physical", "kinetic", "all"} or sequence of str
        GP inputs: the physical profile features, the kinetic-model quantities
        (:data:`~crystalloop.digital_twin.kinetic.KINETIC_FEATURES`), both, or a list of names.
    kinetic_theta : array-like, shape (7,) or (m, 7), optional
        Fixed kinetic constants (one set, or an ensemble whose features are averaged), e.g.
        fitted on D50 by the twin and reused for the other CQAs.
    kinetic_params : dict, optional
        Passed to :class:`~crystalloop.digital_twin.kinetic.KineticModel` (``seed_size_um``,
        ``n_steps``, ...).
    clip : (float, float), optional
        Physical range of the target; predictions are clipped.
    n_restarts : int
        Optimizer restarts of the GP.
    calibrate : bool
        Widen the predictive std (never narrow it) so that 95 % of the training rows' closed-form
        leave-one-out residuals fall inside ±1.96 std (``std_factor_``).
    noise_feature : str, optional
        A column of :meth:`feature_table` on which the noise grows: an extra std
        ``exp(a + b x)`` (``x`` that column standardized, ``b ≥ 0``) fitted by maximum likelihood to
        the leave-one-out residuals beyond the GP's own std, added in quadrature to the predictive
        std (target units: the log scale for ``mean="kinetic"``); the column is clipped to its
        training range (the trend is not extrapolated). E.g. ``"kin_sigma_max"``: the
        kinetic model fails where the peak supersaturation is high (partly amorphous product).
    random_state : int, optional

    Attributes
    ----------
    kinetic_ : KineticModel or None
        The fitted (or given) kinetic model.
    features_ : list of str
        GP inputs used.
    gp_ : GaussianProcessRegressor
    mean_, scale_ : ndarray
        Standardization of the inputs.
    std_factor_ : float
        Calibration factor on the predictive std (1 without ``calibrate``).
    noise_ab_ : (float, float)
        ``(a, b)`` of the input-dependent extra std (``(-inf, 0)`` without ``noise_feature``).
    """

    def __init__(self, solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4, mean: str = "none",
                 features: str | Sequence[str] = "all", kinetic_theta: Sequence[float] | None = None,
                 kinetic_params: dict | None = None, clip: tuple[float, float] | None = None, n_restarts: int = 2,
                 calibrate: bool = True, noise_feature: str | None = None, random_state: int | None = None) -> None:
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.mean = mean
        self.features = features
        self.kinetic_theta = kinetic_theta
        self.kinetic_params = kinetic_params
        self.clip = clip
        self.n_restarts = n_restarts
        self.calibrate = calibrate
        self.noise_feature = noise_feature
        self.random_state = random_state

    def _curve(self) -> SolubilityCurve | None:
        s = self.solubility
        return s if s is None or isinstance(s, SolubilityCurve) else SolubilityCurve.from_dict(s)

    def feature_table(self, X) -> pd.DataFrame:
        """Physical profile features and (with a kinetic model) the kinetic quantities of recipe rows ``X``.

        Returns
        -------
        DataFrame, shape (n, n_features)
        """
        if not isinstance(X, pd.DataFrame):
            X = np.atleast_2d(np.asarray(X, dtype=float))
        F = profile_features(X, solubility=self._curve(), max_cycles=self.max_cycles)
        if self.kinetic_ is not None:
            K = self.kinetic_.features(X)
            F = pd.concat([F, K.set_index(F.index)], axis=1)
        return F

    def _columns_for(self, names: list[str]) -> list[str]:
        if not isinstance(self.features, str):
            bad = [c for c in self.features if c not in names]
            if bad:
                raise ConfigError(f"unknown feature(s) {bad}; available: {names}")
            return list(self.features)
        if self.features not in _FEATURE_SETS:
            raise ConfigError(f"features must be one of {_FEATURE_SETS} or a list of names; got {self.features!r}")
        kin = [c for c in names if c in KINETIC_FEATURES]
        phys = [c for c in names if c not in KINETIC_FEATURES]
        if self.features == "physical" or not kin:
            return phys
        return kin if self.features == "kinetic" else phys + kin

    def fit(self, X, y) -> HybridGPRegressor:
        """Fit the kinetic model (if needed) and the GP.

        Parameters
        ----------
        X : DataFrame or ndarray, shape (n, len(feature_names(max_cycles)))
            Recipe vectors.
        y : array-like, shape (n,)
            One CQA (its units; µm for ``mean="kinetic"``).
        """
        if self.mean not in ("kinetic", "none"):
            raise ConfigError(f"mean must be 'kinetic' or 'none'; got {self.mean!r}")
        y = np.asarray(y, dtype=float).ravel()
        n = len(X)
        if len(y) != n:
            raise SchemaError(f"X has {n} rows but y has {len(y)}")
        if not np.all(np.isfinite(y)):
            raise SchemaError(f"y has {int((~np.isfinite(y)).sum())} missing/non-finite values; drop those rows first")
        if n < 5:
            raise InsufficientDataError(f"HybridGPRegressor needs at least 5 rows; got {n}")
        seed = 0 if self.random_state is None else int(self.random_state)
        curve = self._curve()
        self.kinetic_ = None
        if curve is not None:
            km = KineticModel(curve, max_cycles=self.max_cycles, random_state=seed, **(self.kinetic_params or {}))
            if self.kinetic_theta is not None:
                km.thetas_ = np.atleast_2d(np.asarray(self.kinetic_theta, dtype=float))
                km.theta_ = km.thetas_[0]
                km.n_features_in_ = len(profile_feature_names(self.max_cycles))
                self.kinetic_ = km
            elif self.mean == "kinetic" or self.features in ("kinetic", "all"):
                if np.any(y <= 0):
                    raise ConfigError("fitting the kinetic model needs a positive size target (D50, µm); "
                                      f"the smallest is {y.min():g}. Pass kinetic_theta for other CQAs")
                self.kinetic_ = km.fit(X, y)
        F = self.feature_table(X)
        self.features_ = self._columns_for(list(F.columns))
        A = F[self.features_].to_numpy(dtype=float)
        self.mean_, self.scale_ = A.mean(0), A.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        t = self._target(F, y)
        An = (A - self.mean_) / self.scale_
        with one_blas_thread():  # as when a saved twin is loaded: the same factorization, bit for bit
            self.gp_ = _gp(An, t, restarts=int(self.n_restarts), seed=seed)
        r, s_loo = _loo(self.gp_, An, t)
        self.noise_ab_ = (-np.inf, 0.0)
        if self.noise_feature is not None:
            if self.noise_feature not in F.columns:
                raise ConfigError(f"unknown noise_feature {self.noise_feature!r}; available: {list(F.columns)}")
            v = F[self.noise_feature].to_numpy(dtype=float)
            self.noise_center_ = (float(v.mean()), float(v.std() or 1.0), float(v.min()), float(v.max()))
            self.noise_ab_ = _fit_excess_noise(r, s_loo, (v - self.noise_center_[0]) / self.noise_center_[1])
            s_loo = np.sqrt(s_loo**2 + self._excess(F) ** 2)
        z = r / s_loo
        self.std_factor_ = float(max(1.0, np.quantile(np.abs(z), 0.95) / 1.96)) if self.calibrate else 1.0
        self.y_train_, self.t_train_ = y, t
        self.loo_mean_, self.loo_std_ = self._output(t - r, s_loo * self.std_factor_, F)
        self.n_features_in_ = len(profile_feature_names(self.max_cycles))
        return self

    def _uses_kinetic_mean(self) -> bool:
        return self.mean == "kinetic" and self.kinetic_ is not None

    def _target(self, F: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        if self._uses_kinetic_mean():
            return np.log(np.maximum(y, 1e-3)) - F["kin_log_d50"].to_numpy()
        # no solubility curve, no mechanistic mean: the target as it is (on the log scale the DoE's few
        # very small sizes dominate the fit; the dev set's D50 MAE was 39 µm against 23 µm raw)
        return y

    def predict(self, X, return_std: bool = False):
        """Mean (and std) of the CQA, target units; shape (n,)."""
        check_is_fitted(self, "gp_")
        return self.predict_table(self.feature_table(X), return_std=return_std)

    def _excess(self, F: pd.DataFrame) -> np.ndarray:
        a, b = self.noise_ab_
        if not np.isfinite(a):
            return np.zeros(len(F))
        mu, sd, lo, hi = self.noise_center_
        x = (np.clip(F[self.noise_feature].to_numpy(dtype=float), lo, hi) - mu) / sd  # no extrapolated trend
        return np.exp(a + b * x)

    def predict_table(self, F: pd.DataFrame, return_std: bool = False):
        """:meth:`predict` from a :meth:`feature_table` (computed once for several CQAs that share
        the kinetic model, as :class:`HybridTwin` does)."""
        check_is_fitted(self, "gp_")
        A = (F[self.features_].to_numpy(dtype=float) - self.mean_) / self.scale_
        with one_blas_thread():
            mu, sd = self.gp_.predict(A, return_std=True)
        sd = np.sqrt(sd**2 + self._excess(F) ** 2) * self.std_factor_
        mu, sd = self._output(mu, sd, F)
        return (mu, sd) if return_std else mu

    def _output(self, mu: np.ndarray, sd: np.ndarray, F: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """GP mean and (calibrated) std on the target scale -> CQA units."""
        if self._uses_kinetic_mean():
            # the median exp(μ) as the prediction; the std such that ±1.96 std spans the log-normal
            # 95 % interval exp(μ ± 1.96 s) (its moments explode for the large s of the noisy region)
            m = np.exp(mu + F["kin_log_d50"].to_numpy())
            sd = m * np.sinh(1.96 * sd) / 1.96
            mu = m
        if self.clip is not None:
            mu = np.clip(mu, *self.clip)
        return mu, sd


    def cv_scores(self) -> dict[str, Any]:
        """Scores of the closed-form leave-one-out predictions (CQA units): ``n``, ``mae``, ``r2``,
        ``calibration`` (level, coverage, n, mean width per 68 % / 95 % interval)."""
        check_is_fitted(self, "gp_")
        y, mu, sd = self.y_train_, self.loo_mean_, self.loo_std_
        return {"n": int(len(y)), "mae": float(np.mean(np.abs(y - mu))),
                "r2": float(r2_score(y, mu)) if len(y) > 1 and np.ptp(y) > 0 else None,
                "calibration": calibration_report(y, mu, sd).to_dict("records")}

    # -- persistence (JSON; used by HybridTwin.save/load) -----------------------------------------
    def _state(self) -> dict[str, Any]:
        gp = self.gp_
        params = self.get_params()
        s = self._curve()
        params["solubility"] = None if s is None else s.to_dict()
        params["features"] = self.features if isinstance(self.features, str) else list(self.features)
        if params["kinetic_theta"] is not None:
            params["kinetic_theta"] = np.atleast_2d(np.asarray(params["kinetic_theta"], dtype=float))
        km = self.kinetic_
        kin = None
        if km is not None:
            kp = km.get_params()
            kp["solubility"] = solubility_curve(km.solubility).to_dict()
            kin = {"params": kp, "thetas": km.thetas_, "theta": km.theta_,
                   "cost": getattr(km, "cost_", None), "rmse_log": getattr(km, "rmse_log_", None)}
        a, b = self.noise_ab_
        return {
            "params": params,
            "kinetic": kin,
            "features_kept": list(self.features_),
            "standardization": {"mean": self.mean_, "scale": self.scale_},
            "gp": {"kernel": kernel_to_dict(gp.kernel_), "theta": gp.kernel_.theta, "alpha": float(gp.alpha),
                   "normalize_y": True, "log_marginal_likelihood": float(gp.log_marginal_likelihood_value_)},
            "noise": {"feature": self.noise_feature, "a": float(a) if np.isfinite(a) else None, "b": float(b),
                      "center": list(getattr(self, "noise_center_", ())) or None},
            "std_factor": self.std_factor_,
            "training": {"A": gp.X_train_, "target": self.t_train_, "y": self.y_train_},
            "leave_one_out": {"mean": self.loo_mean_, "std": self.loo_std_},
        }

    @classmethod
    def _from_state(cls, d: Any, source: str) -> HybridGPRegressor:
        try:
            params = dict(d["params"])
            if isinstance(params.get("features"), list):
                params["features"] = tuple(params["features"])
            if params.get("clip") is not None:
                params["clip"] = tuple(float(v) for v in params["clip"])
            if params.get("kinetic_theta") is not None:
                params["kinetic_theta"] = np.asarray(params["kinetic_theta"], dtype=float)
            m = cls(**params)
            m.kinetic_ = None
            kin = d["kinetic"]
            if kin is not None:
                kp = dict(kin["params"])
                kp["solubility"] = SolubilityCurve.from_dict(kp["solubility"], source=source)
                km = KineticModel(**kp)
                km.thetas_ = np.atleast_2d(np.asarray(kin["thetas"], dtype=float))
                km.theta_ = np.asarray(kin["theta"], dtype=float)
                if km.thetas_.shape[1] != 7 or km.theta_.shape != (7,):
                    raise ValueError(f"kinetic constants of shape {km.thetas_.shape}, expected (m, 7)")
                if kin.get("cost") is not None:
                    km.cost_ = float(kin["cost"])
                if kin.get("rmse_log") is not None:
                    km.rmse_log_ = float(kin["rmse_log"])
                km.n_features_in_ = len(profile_feature_names(km.max_cycles))
                m.kinetic_ = km
            m.features_ = [str(f) for f in d["features_kept"]]
            m.mean_ = np.asarray(d["standardization"]["mean"], dtype=float)
            m.scale_ = np.asarray(d["standardization"]["scale"], dtype=float)
            noise = d["noise"]
            m.noise_ab_ = (-np.inf if noise["a"] is None else float(noise["a"]), float(noise["b"]))
            if noise["center"] is not None:
                m.noise_center_ = tuple(float(v) for v in noise["center"])
            m.std_factor_ = float(d["std_factor"])
            A = np.asarray(d["training"]["A"], dtype=float)
            t = np.asarray(d["training"]["target"], dtype=float)
            y = np.asarray(d["training"]["y"], dtype=float)
            kernel = kernel_from_dict(d["gp"]["kernel"], source=source)
            theta = np.asarray(d["gp"]["theta"], dtype=float)
            alpha = float(d["gp"]["alpha"])
            loo = d["leave_one_out"]
            m.loo_mean_, m.loo_std_ = np.asarray(loo["mean"], dtype=float), np.asarray(loo["std"], dtype=float)
        except UntrustedModelError:
            raise
        except (KeyError, TypeError, ValueError, ConfigError, SchemaError) as e:
            raise ModelError(f"model file {source} lacks or garbles the hybrid GP state ({type(e).__name__}: {e}); "
                             f"refit the twin") from None
        if A.ndim != 2 or A.shape != (len(t), len(m.features_)) or len(y) != len(t) or m.mean_.shape != (len(m.features_),):
            raise ModelError(f"model file {source}: training inputs of shape {A.shape} do not match {len(t)} targets "
                             f"and {len(m.features_)} features; refit the twin")
        if theta.shape != kernel.theta.shape or not np.allclose(theta, kernel.theta, rtol=0, atol=1e-12):
            raise ModelError(f"model file {source}: the kernel's hyperparameters do not match its stored theta; "
                             f"refit the twin")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with one_blas_thread():  # as in fit
                m.gp_ = GaussianProcessRegressor(kernel, alpha=alpha, optimizer=None, normalize_y=True).fit(A, t)
        m.y_train_, m.t_train_ = y, t
        m.n_features_in_ = len(profile_feature_names(m.max_cycles))
        return m


class HybridTwin:
    """One :class:`HybridGPRegressor` per CQA behind the design's twin protocol, sharing one kinetic model.

    The kinetic constants are fitted once, to the D50 rows (``size_cqa``); the size CQA's GP
    models the residual of the kinetic model on the log scale, with a noise that grows with the
    kinetic model's peak supersaturation (``noise_feature="kin_sigma_max"``: where it is high the
    plant forms product the model does not describe); the other CQAs' GPs take the kinetic
    quantities as inputs beside the physical features.

    Parameters
    ----------
    cqas : sequence of str
        CQA columns of the training table.
    solubility : SolubilityCurve or dict, optional
        ``c*(T)`` (mg/g solvent, T in °C). Without it the twin is a GP on profile-only features.
    max_cycles : int
    size_cqa : str
        The CQA the kinetic model is fitted to (a size in µm).
    features : dict of str -> str or list, optional
        GP inputs per CQA (see :class:`HybridGPRegressor`); defaults (chosen on the development
        set): D50 ``"physical"``, DoA ``"kinetic"``, crystallinity the physical features
        and :data:`~crystalloop.digital_twin.kinetic.KINETIC_STATE_FEATURES`, any other CQA
        ``"all"``. Without a solubility curve, or without ``size_cqa`` among ``cqas``, there is no
        kinetic model and every CQA uses ``"physical"``.
    kinetic_params : dict, optional
        Passed to :class:`~crystalloop.digital_twin.kinetic.KineticModel`.
    percent_cqas : sequence of str, optional
        CQAs clipped to 0–100 (default: names ending in ``_pct``).
    n_restarts : int
        Optimizer restarts of each GP (4: with 15 rows a GP's marginal likelihood has poor local optima).
    random_state : int, optional
        Seed of the kinetic fit's global search and of the GP restarts.

    Attributes
    ----------
    models_ : dict of str -> HybridGPRegressor
    kinetic_ : KineticModel or None
    training_data_ : DataFrame
        Recipe columns of the training rows (the design's validity domain is built from it).
    """

    def __init__(self, cqas: Sequence[str] = ("D50_um", "DoA_pct", "crystallinity_pct"), *,
                 solubility: SolubilityCurve | dict | None = None, max_cycles: int = 4, size_cqa: str = "D50_um",
                 features: dict[str, Any] | None = None, kinetic_params: dict | None = None,
                 percent_cqas: Sequence[str] | None = None, n_restarts: int = 4,
                 random_state: int | None = None) -> None:
        self.cqas = list(cqas)
        self.solubility = solubility
        self.max_cycles = max_cycles
        self.feature_names = profile_feature_names(max_cycles)
        self.size_cqa = size_cqa
        self.features = features
        self.kinetic_params = kinetic_params
        self.percent_cqas = percent_cqas
        self.n_restarts = n_restarts
        self.random_state = random_state

    def _check_fitted(self) -> None:
        if "models_" not in self.__dict__:
            raise ModelError("this HybridTwin is not fitted yet; call fit(doe) or HybridTwin.load(folder)")

    def _curve(self) -> SolubilityCurve | None:
        return solubility_curve(self.solubility)

    @staticmethod
    def _resolve(name: str, available: list[str]) -> str:
        try:
            return resolve_cqa(name, available)
        except SchemaError:
            return name  # reported with every other missing column

    def fit(self, table: DoETable | pd.DataFrame | str | Path) -> HybridTwin:
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
            raise SchemaError(f"HybridTwin.fit takes a DoE table (DoETable, DataFrame or path), got {type(table).__name__}")
        cqa_cols = [c for c in table.columns if c not in self.feature_names and c != "run_id"]
        self.cqas = [self._resolve(c, cqa_cols) for c in self.cqas]
        size_cqa = self._resolve(self.size_cqa, cqa_cols)
        missing = [c for c in [*self.feature_names, *self.cqas] if c not in table.columns]
        if missing:
            raise SchemaError(f"training table lacks columns {missing[:6]}")
        pct = [c for c in self.cqas if c.endswith("_pct")] if self.percent_cqas is None else list(self.percent_cqas)
        feats = dict(self.features or {})
        curve = self._curve()
        self.kinetic_ = None
        theta = None
        common = dict(solubility=curve, max_cycles=self.max_cycles, kinetic_params=self.kinetic_params,
                      n_restarts=self.n_restarts, random_state=self.random_state)
        self.models_, self.info_ = {}, {}
        seg_all = np.rint(table["n_segments"].to_numpy(float))
        # a kinetic model needs the curve and the size CQA (it is fitted to it, first)
        kinetic = curve is not None and size_cqa in self.cqas
        order = sorted(self.cqas, key=lambda c: c != size_cqa)
        for c in order:
            mask = table[c].notna().to_numpy()
            rows = table[mask]
            if len(rows) < 5:
                raise InsufficientDataError(f"{source}: CQA {c!r} has {len(rows)} measured row(s); a GP needs at least 5. "
                                            f"Measure it in more runs or leave it out of the CQAs modelled (--cqa, cqas=)")
            t1 = time.perf_counter()
            is_size = c == size_cqa
            m = HybridGPRegressor(mean="kinetic" if is_size else "none",
                                  noise_feature="kin_sigma_max" if is_size and kinetic else None,
                                  features=feats.get(c, _DEFAULT_FEATURES.get(c, "all")) if kinetic else "physical",
                                  kinetic_theta=None if is_size else theta,
                                  clip=(0.0, 100.0) if c in pct else None, **common)
            y = rows[c].to_numpy(float)
            m.fit(rows[self.feature_names], y)
            if is_size and m.kinetic_ is not None:
                self.kinetic_ = m.kinetic_
                theta = m.kinetic_.thetas_
            self.models_[c] = m
            sc = m.cv_scores()
            cal = {round(float(r["level"]), 2): r for r in sc["calibration"]}
            unit = " µm" if c.endswith("_um") else " %" if c.endswith("_pct") else ""
            self.info_[c] = {
                "model": "hybrid", "n_rows": int(len(rows)), "features": list(m.features_),
                "strategy": m.features if isinstance(m.features, str) else "given",
                "mean": "kinetic" if m._uses_kinetic_mean() else "none", "kernel": str(m.gp_.kernel_),
                "noise_feature": m.noise_feature, "std_factor": m.std_factor_,
                "cv_method": ("closed-form leave-one-out of the fitted GP (its hyperparameters, the kinetic constants "
                              "and the std calibration chosen on all rows)"),
                "cv_mae": sc["mae"], "cv_r2": sc["r2"], "calibration_cv": sc["calibration"],
                "coverage_68": cal.get(0.68, {}).get("coverage"), "coverage_95": cal.get(0.95, {}).get("coverage"),
                "warnings": honesty_warnings(c, y, sc["r2"], sc["calibration"], unit=unit),
                "target_range": [float(y.min()), float(y.max())],
                "n_segments_seen": sorted({int(v) for v in seg_all[mask]}),
                "fit_s": time.perf_counter() - t1,
            }
        self.models_ = {c: self.models_[c] for c in self.cqas}
        self.info_ = {c: self.info_[c] for c in self.cqas}
        keep = [c for c in ("run_id", *self.feature_names, *self.cqas) if c in table.columns]
        self.training_data_ = table[keep].reset_index(drop=True)
        km = self.kinetic_
        self.metadata_ = {"versions": _versions(), "source": source, "data_hash": data_hash,
                          "n_runs": int(len(table)), "settings": self._settings(),
                          "kinetic": None if km is None else {
                              "size_cqa": size_cqa, "thetas": km.thetas_, "theta": km.theta_,
                              "rmse_log_d50": km.rmse_log_}}
        self.fit_times_ = {"fit_time_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                           "per_cqa_s": {c: self.info_[c].pop("fit_s") for c in self.cqas}}
        for c in self.cqas:
            for msg in self.info_[c]["warnings"]:
                warnings.warn(msg, TwinWarning, stacklevel=2)
        return self

    def _settings(self) -> dict[str, Any]:
        s = self._curve()
        feats = None if self.features is None else {
            k: v if isinstance(v, str) else list(v) for k, v in dict(self.features).items()}
        return {"cqas": list(self.cqas), "solubility": None if s is None else s.to_dict(),
                "max_cycles": int(self.max_cycles), "size_cqa": self.size_cqa, "features": feats,
                "kinetic_params": None if self.kinetic_params is None else dict(self.kinetic_params),
                "percent_cqas": None if self.percent_cqas is None else list(self.percent_cqas),
                "n_restarts": int(self.n_restarts), "random_state": self.random_state}

    # ------------------------------------------------------------------ predict
    def _predict(self, A: np.ndarray, cqas: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        self._check_fitted()
        F = self.models_[cqas[0]].feature_table(A)  # the models share the curve and the kinetic constants
        return [self.models_[c].predict_table(F, return_std=True) for c in cqas]

    def predict(self, X, return_std: bool = False):
        """Means (and stds), shape (n, len(cqas)), in ``cqas`` order (CQA units)."""
        out = self._predict(recipe_matrix(X, self.feature_names, self.max_cycles), self.cqas)
        mu = np.column_stack([o[0] for o in out])
        sd = np.column_stack([o[1] for o in out])
        return (mu, sd) if return_std else mu

    def predict_frame(self, X, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """``{cqa}_mean`` / ``{cqa}_std`` columns for recipe rows ``X`` (profiles, a DataFrame with the
        feature columns, or an array of shape (n, len(feature_names))); the index of a DataFrame is kept.

        ``warn``: warn (:class:`~crystalloop.errors.TwinWarning`) about profiles whose number of
        segments no training run of that CQA had (the prediction extrapolates).
        """
        self._check_fitted()
        A = recipe_matrix(X, self.feature_names, self.max_cycles)
        names = list(self.cqas) if cqas is None else [resolve_cqa(c, self.cqas) for c in cqas]
        if warn:
            warn_unseen_segments(A, names, getattr(self, "info_", {}))
        out = self._predict(A, names)
        cols = {}
        for c, (mu, sd) in zip(names, out, strict=True):
            cols[f"{c}_mean"], cols[f"{c}_std"] = mu, sd
        return pd.DataFrame(cols, index=X.index if isinstance(X, pd.DataFrame) else None)

    def summary(self) -> pd.DataFrame:
        """One row per CQA: model, rows, GP inputs, cross-validated R²/MAE, coverage, warning."""
        self._check_fitted()
        return pd.DataFrame([{
            "cqa": c, "model": "hybrid", "mean": i["mean"], "n_rows": i["n_rows"], "n_features": len(i["features"]),
            "cv_r2": i["cv_r2"], "cv_mae": i["cv_mae"], "coverage_68": i["coverage_68"],
            "coverage_95": i["coverage_95"], "warning": "; ".join(i["warnings"]),
        } for c, i in ((c, self.info_[c]) for c in self.cqas)])

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the model folder (JSON only, see the module docstring); returns its path.

        The same data and ``random_state`` give byte-identical files (no time stamps; the fit
        times stay in :attr:`fit_times_`).
        """
        self._check_fitted()
        return write_twin_folder(self, directory, kind=HYBRID_KIND, version=HYBRID_FORMAT_VERSION)

    @classmethod
    def load(cls, directory: str | Path) -> HybridTwin:
        """Read a folder written by :meth:`save`; every file is checked against its SHA-256 in twin.json.

        The kinetic constants are read, not refitted; each GP is rebuilt with its stored kernel and
        refitted on its stored inputs with the optimizer off: the loaded twin predicts bit for bit
        what the saved one did.

        Raises
        ------
        ModelError
            A missing or malformed file (named), another kind of twin, an unknown format version.
        UntrustedModelError
            A file that was modified, truncated or replaced, or an unknown kernel type.
        """
        f = read_twin_folder(directory, kind=HYBRID_KIND, version=HYBRID_FORMAT_VERSION, what="hybrid twin")
        d, meta, cqas, mc, info, metadata, settings = (f[k] for k in ("dir", "meta", "cqas", "max_cycles", "info",
                                                                       "metadata", "settings"))
        sol = settings.get("solubility")
        try:
            twin = cls(cqas, solubility=None if sol is None else SolubilityCurve.from_dict(sol, source=str(meta)),
                       max_cycles=mc, size_cqa=str(settings.get("size_cqa", "D50_um")),
                       features=settings.get("features"), kinetic_params=settings.get("kinetic_params"),
                       percent_cqas=settings.get("percent_cqas"), n_restarts=int(settings.get("n_restarts", 4)),
                       random_state=settings.get("random_state"))
        except (TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{meta}: settings cannot be read ({e}); refit the twin") from None
        twin.models_ = {}
        for c in cqas:
            p = d / "models" / f"{c}.json"
            twin.models_[c] = HybridGPRegressor._from_state(read_json_file(p), str(p))
        size = twin.models_.get(twin.size_cqa)
        twin.kinetic_ = None if size is None else size.kinetic_
        twin.training_data_ = pd.read_csv(d / "data" / "doe.csv")
        twin.info_, twin.metadata_, twin.fit_times_ = info, metadata, {}
        warn_version_drift(d, metadata, _versions(), ("scikit-learn", "numpy", "scipy", "numba"))
        return twin


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        nb = version("numba")  # the kinetic model's compiled loop
    except PackageNotFoundError:
        nb = "none"
    return {**package_versions(), "numba": nb}


def fit_hybrid_twin(doe: DoETable | pd.DataFrame | str | Path, *, cqas: Sequence[str] | None = None,
                    solubility: Any = None, random_state: int = 0, **params: Any) -> HybridTwin:
    """Fit a :class:`HybridTwin` from a DoE table in one call (what ``twin fit --model hybrid`` runs).

    Parameters
    ----------
    doe : DoETable, DataFrame or path
        Read with :func:`~crystalloop.digital_twin.read_doe`.
    cqas : sequence of str, optional
        CQAs to model (short names allowed); default every CQA column with at least
        :data:`~crystalloop.digital_twin.models.MIN_ROWS` measured rows (the others are left
        out with a :class:`~crystalloop.errors.TwinWarning`).
    solubility : SolubilityCurve, dict, coefficients, text or path, optional
        ``c*(T)``, mg/g solvent, T in °C (:func:`~crystalloop.digital_twin.gp.solubility_curve`).
        Without it there is no kinetic model: one :class:`~crystalloop.errors.TwinWarning`, and
        every CQA gets a GP on the profile-only features.
    random_state : int
    **params
        Other :class:`HybridTwin` settings (``size_cqa``, ``features``, ``kinetic_params``, ...).
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
    curve = solubility_curve(solubility)
    if curve is None:
        warnings.warn(f"{table.source}: no solubility curve given, so the hybrid twin's kinetic part is off (no "
                      f"supersaturation): every CQA gets a GP on the profile features only. Give the compound's "
                      f"c*(T) (solubility=, --solubility) for the kinetic model", TwinWarning, stacklevel=2)
    return HybridTwin(chosen, solubility=curve, max_cycles=int(table.max_cycles), random_state=random_state,
                      **params).fit(table)
