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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import ConfigError, InsufficientDataError, SchemaError
from crystalloop.profiles import feature_names as profile_feature_names

from .features import PROFILE_FEATURES, SOLUBILITY_FEATURES, SolubilityCurve, profile_features
from .kinetic import KINETIC_FEATURES, KINETIC_STATE_FEATURES, KineticModel

__all__ = ["HybridGPRegressor", "HybridTwin"]

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
        mu, sd = self.gp_.predict(A, return_std=True)
        sd = np.sqrt(sd**2 + self._excess(F) ** 2) * self.std_factor_
        if self._uses_kinetic_mean():
            # the median exp(μ) as the prediction; the std such that ±1.96 std spans the log-normal
            # 95 % interval exp(μ ± 1.96 s) (its moments explode for the large s of the noisy region)
            m = np.exp(mu + F["kin_log_d50"].to_numpy())
            sd = m * np.sinh(1.96 * sd) / 1.96
            mu = m
        if self.clip is not None:
            mu = np.clip(mu, *self.clip)
        return (mu, sd) if return_std else mu


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

    def fit(self, table: pd.DataFrame) -> HybridTwin:
        """Fit on a DoE table (recipe columns + CQA columns; rows without a CQA are left out of its model)."""
        missing = [c for c in [*self.feature_names, *self.cqas] if c not in table.columns]
        if missing:
            raise SchemaError(f"training table lacks columns {missing[:6]}")
        pct = [c for c in self.cqas if c.endswith("_pct")] if self.percent_cqas is None else list(self.percent_cqas)
        feats = dict(self.features or {})
        self.kinetic_ = None
        theta = None
        common = dict(solubility=self.solubility, max_cycles=self.max_cycles, kinetic_params=self.kinetic_params,
                      n_restarts=self.n_restarts, random_state=self.random_state)
        self.models_ = {}
        # a kinetic model needs the curve and the size CQA (it is fitted to it, first)
        kinetic = self.solubility is not None and self.size_cqa in self.cqas
        order = sorted(self.cqas, key=lambda c: c != self.size_cqa)
        for c in order:
            rows = table.dropna(subset=[c])
            is_size = c == self.size_cqa
            m = HybridGPRegressor(mean="kinetic" if is_size else "none",
                                  noise_feature="kin_sigma_max" if is_size and kinetic else None,
                                  features=feats.get(c, _DEFAULT_FEATURES.get(c, "all")) if kinetic else "physical",
                                  kinetic_theta=None if is_size else theta,
                                  clip=(0.0, 100.0) if c in pct else None, **common)
            m.fit(rows[self.feature_names], rows[c].to_numpy(float))
            if is_size and m.kinetic_ is not None:
                self.kinetic_ = m.kinetic_
                theta = m.kinetic_.thetas_
            self.models_[c] = m
        self.training_data_ = table[self.feature_names].reset_index(drop=True)
        return self

    def _predict(self, X, cqas: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        X = X[self.feature_names] if isinstance(X, pd.DataFrame) else np.atleast_2d(np.asarray(X, dtype=float))
        F = self.models_[cqas[0]].feature_table(X)  # the models share the curve and the kinetic constants
        return [self.models_[c].predict_table(F, return_std=True) for c in cqas]

    def predict(self, X, return_std: bool = False):
        """Means (and stds), shape (n, len(cqas)), in ``cqas`` order."""
        out = self._predict(X, self.cqas)
        mu = np.column_stack([o[0] for o in out])
        sd = np.column_stack([o[1] for o in out])
        return (mu, sd) if return_std else mu

    def predict_frame(self, X: np.ndarray, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """``{cqa}_mean`` / ``{cqa}_std`` columns for recipe rows ``X`` (shape (n, len(feature_names)))."""
        names = list(self.cqas if cqas is None else cqas)
        out = self._predict(np.atleast_2d(np.asarray(X, dtype=float)), names)
        cols = {}
        for c, (mu, sd) in zip(names, out, strict=True):
            cols[f"{c}_mean"], cols[f"{c}_std"] = mu, sd
        return pd.DataFrame(cols)
