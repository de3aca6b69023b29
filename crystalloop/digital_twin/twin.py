"""The digital twin: one uncertainty-aware model per CQA, fitted from a DoE table, saved without pickle.

:class:`DigitalTwin` is a scikit-learn style estimator: ``__init__`` stores the settings,
:meth:`DigitalTwin.fit` learns from a DoE table (or profile features and a CQA table), fitted
state ends in ``_``, and :meth:`DigitalTwin.predict` returns the mean and, with
``return_std=True``, the standard deviation of every CQA (as ``GaussianProcessRegressor``).
:meth:`DigitalTwin.predict_frame` gives the same as a ``{cqa}_mean``/``{cqa}_std`` table, what
the design and the campaign use. :func:`fit_twin` is the one-call convenience function.

Per CQA, on the rows where it was measured (:mod:`~crystalloop.digital_twin.fitting`):

1. tune RF/GBT/XGBoost/SVR with GridSearchCV scored by repeated K-fold CV on every row (or
   leave-one-out; the seed-003 10–15 % hold-out is ``validation="holdout"``) and pick one
   (:func:`~crystalloop.digital_twin.models.select_model`);
2. optionally search synthetic augmentation (generator × m × α, weighted ERM) by CV on the real
   rows and keep it only where it lowers that error;
3. wrap the chosen model in a Monte Carlo CV (or bootstrap) ensemble; its out-of-fold
   predictions give the cross-validated R², MAE and interval coverage. A CQA whose model is no
   better than its mean (CV R² <= 0) or whose intervals miss their nominal coverage gets a
   :class:`~crystalloop.errors.TwinWarning` and a warning at the top of the model card.

An optional ``features`` transformer (fit/transform, or a callable) maps the profile feature
vector to the model inputs (e.g. physically meaningful features); it becomes the first step of
every ensemble member, so the twin still takes profiles.

Persistence (:meth:`DigitalTwin.save`): ``twin.json`` (settings, scores, schema, versions and
the SHA-256 of every model file) and ``models/<cqa>/`` per CQA written by
:func:`~crystalloop.digital_twin.persist.save_ensemble` (skops, XGBoost JSON, JSON — no pickle).
The same data and ``random_state`` give a byte-identical folder (no time stamps in it; the wall
times are in :attr:`DigitalTwin.fit_times_`).
"""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from crystalloop.errors import (
    ConfigError,
    ModelError,
    SchemaError,
    TwinWarning,
    UntrustedModelError,
)
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame

from .augment import DEFAULT_ALPHAS, DEFAULT_M
from .doe import DoETable, read_doe, resolve_cqa
from .fitting import check_settings, fit_cqa_models
from .gp import GP_KIND, FeatureGPTwin
from .hybrid import HYBRID_KIND, HybridTwin
from .models import MODEL_FAMILIES
from .persist import jsonable, load_ensemble, read_json_file, save_ensemble, sha256_file
from .synthetic import GENERATORS

__all__ = ["DigitalTwin", "TwinWarning", "fit_twin", "load_twin", "FORMAT_VERSION"]

#: Version of the saved folder layout (1 = joblib model files, no longer read).
FORMAT_VERSION = 2


def _versions() -> dict[str, str]:
    import sklearn
    import skops
    import xgboost

    import crystalloop

    out = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
           "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__, "skops": skops.__version__,
           "crystalloop": getattr(crystalloop, "__version__", "unknown")}
    try:
        import sdv

        out["sdv"] = sdv.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _describe(features: Any) -> str | None:
    if features is None:
        return None
    f = getattr(features, "func", features) if type(features).__name__ == "FunctionTransformer" else features
    name = getattr(f, "__qualname__", None) or type(f).__qualname__
    return f"{getattr(f, '__module__', type(f).__module__)}.{name}"


class DigitalTwin(BaseEstimator):
    """All CQA models of one process: fit from a DoE table, predict mean ± std for profiles.

    Parameters
    ----------
    targets : sequence of str, optional
        CQAs to model (short names allowed); default every CQA column with at least
        :data:`~crystalloop.digital_twin.models.MIN_ROWS` measured rows (others are skipped
        with a warning).
    features : transformer or callable, optional
        Maps the profile feature matrix (columns ``feature_names(max_cycles)``) to the model
        inputs; a callable is wrapped in a ``FunctionTransformer``. ``None``: the profile
        features themselves. Saved with the models (skops), so it must be a scikit-learn
        transformer or one from ``crystalloop.digital_twin.features``.
    families, grid, cv, validation, n_repeats, test_size
        Model selection (:func:`~crystalloop.digital_twin.models.select_model`): repeated
        ``cv``-fold CV on every row (``cv="loo"``: leave-one-out) by default.
    uncertainty : {"mc", "bootstrap"}
        Ensemble kind; ``n_splits`` members.
    augment, generators, n_synthetic, alphas, epochs, min_improvement, prune
        Synthetic augmentation search (:func:`~crystalloop.digital_twin.augment.search_augmentation`).
    n_jobs : int, optional
        joblib workers for every stage (results do not depend on it).
    random_state : int
        Seed of every random step (splits, models, SDV generators).

    Attributes
    ----------
    cqas_ : list of str
        CQAs modelled (also :attr:`cqas`).
    max_cycles_ : int
        Cycle slots of the profile feature vector (also :attr:`max_cycles`).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        ``profiles.feature_names(max_cycles_)``.
    models_ : dict
        CQA → fitted ensemble (``predict(X, return_std=True)``).
    info_ : dict
        CQA → family, parameters, candidate table, augmentation, cross-validated scores,
        calibration, warnings, training ranges.
    metadata_ : dict
        Package versions, data hash, DoE source, settings.
    training_data_ : DataFrame
        The DoE rows the twin learned from.
    augmentation_curves_ : dict
        CQA → α curves of the augmentation search.
    fit_times_ : dict
        Wall seconds per stage and per CQA (not saved: the folder is reproducible).
    """

    def __init__(
        self,
        *,
        targets: Sequence[str] | None = None,
        features: Any = None,
        families: Sequence[str] = MODEL_FAMILIES,
        grid: Literal["paper", "fast"] | dict = "paper",
        cv: int | Literal["loo"] = 3,
        validation: Literal["repeated", "holdout"] = "repeated",
        n_repeats: int = 3,
        test_size: float = 0.15,
        uncertainty: Literal["mc", "bootstrap"] = "mc",
        n_splits: int = 100,
        augment: bool = True,
        generators: Sequence[str] = GENERATORS,
        n_synthetic: Sequence[int] = DEFAULT_M,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        epochs: int = 100,
        min_improvement: float = 0.05,
        prune: float | None = 2.0,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.targets = targets
        self.features = features
        self.families = families
        self.grid = grid
        self.cv = cv
        self.validation = validation
        self.n_repeats = n_repeats
        self.test_size = test_size
        self.uncertainty = uncertainty
        self.n_splits = n_splits
        self.augment = augment
        self.generators = generators
        self.n_synthetic = n_synthetic
        self.alphas = alphas
        self.epochs = epochs
        self.min_improvement = min_improvement
        self.prune = prune
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ the design's view
    @property
    def cqas(self) -> list[str]:
        """CQAs predicted (``D50_um``, ...)."""
        check_is_fitted(self, "models_")
        return list(self.cqas_)

    @property
    def max_cycles(self) -> int:
        check_is_fitted(self, "models_")
        return int(self.max_cycles_)

    @property
    def feature_names(self) -> list[str]:
        """Profile feature columns the twin takes, ``profiles.feature_names(max_cycles)``."""
        return feature_names(self.max_cycles)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, progress: Callable[[str, str], None] | None = None) -> DigitalTwin:
        """Learn every CQA model.

        Parameters
        ----------
        X : DoETable, DataFrame or path, or profile features
            A DoE table (profile feature or ``recipe`` columns plus CQA columns); or, with
            ``y``, profiles / a feature DataFrame / an array (n, n_features).
        y : DataFrame, optional
            CQA columns (``D50_um``, ...), one row per row of ``X``; NaN = not measured.
        progress : callable, optional
            ``progress(stage, message)`` after each step.

        Returns
        -------
        self

        Raises
        ------
        ModelError
            A requested CQA has fewer than 5 measured rows, or no CQA can be modelled.
        ConfigError
            Bad settings (``uncertainty``, ``n_splits``, α outside [0, 1], ...).
        """
        check_settings(self)
        table = self._table(X, y)
        res = fit_cqa_models(self, table, progress=progress or (lambda stage, msg: None))
        self.cqas_ = res.cqas
        self.max_cycles_ = int(table.max_cycles)
        self.feature_names_in_ = np.asarray(feature_names(self.max_cycles_), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.models_ = res.models
        self.info_ = res.info
        self.augmentation_curves_ = res.curves
        self.fit_times_ = res.times
        self.training_data_ = table.to_frame()
        self.metadata_ = {
            "versions": _versions(),
            "data_hash": table.data_hash(),
            "source": str(table.source),
            "n_runs": int(table.n_runs),
            "settings": self._settings(),
            "doe_warnings": list(table.warnings_),
        }
        for cqa in self.cqas_:
            for msg in self.info_[cqa]["warnings"]:
                warnings.warn(msg, TwinWarning, stacklevel=2)
        return self

    def _table(self, X, y) -> DoETable:
        if y is None:
            return X if isinstance(X, DoETable) else read_doe(X)
        Y = y.to_frame() if isinstance(y, pd.Series) else pd.DataFrame(y)
        if isinstance(X, (list, tuple)) and X and isinstance(X[0], ThermocycleProfile):
            mc = max(p.n_cycles for p in X)
            F = profiles_to_frame(list(X), max(mc, 1))
        elif isinstance(X, pd.DataFrame):
            F = X.reset_index(drop=True)
        else:
            A = np.asarray(X, dtype=float)
            if A.ndim != 2 or A.shape[1] < 8 or (A.shape[1] - 8) % 6:
                raise ModelError(f"X has shape {A.shape}; expected (n, 8 + 6 max_cycles) profile feature columns "
                                 f"(feature_names(max_cycles))")
            F = pd.DataFrame(A, columns=feature_names((A.shape[1] - 8) // 6))
        if len(F) != len(Y):
            raise ModelError(f"X has {len(F)} rows but y has {len(Y)}; expected one CQA row per profile")
        return read_doe(pd.concat([F, Y.reset_index(drop=True)], axis=1))

    def _settings(self) -> dict:
        p = self.get_params()
        p["features"] = _describe(self.features)
        p["grid"] = p["grid"] if isinstance(p["grid"], str) else "custom"
        for k in ("families", "generators", "n_synthetic", "alphas"):
            p[k] = list(p[k])
        return p

    # ------------------------------------------------------------------ predict
    def profile_features(self, X) -> np.ndarray:
        """Feature matrix from profiles, a feature DataFrame or a 2-D array; validated.

        Returns
        -------
        ndarray, shape (n, n_features_in_)
        """
        check_is_fitted(self, "models_")
        fn = self.feature_names
        if isinstance(X, ThermocycleProfile):
            X = [X]
        if isinstance(X, pd.DataFrame):
            missing = [c for c in fn if c not in X.columns]
            if missing:
                raise ModelError(
                    f"feature table lacks column(s) {missing[:5]}{'...' if len(missing) > 5 else ''}; this twin "
                    f"expects feature_names({self.max_cycles}) ({len(fn)} columns)"
                )
            A = X[fn].to_numpy(dtype=float)
        elif isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], ThermocycleProfile):
            try:
                A = profiles_to_frame(X, self.max_cycles).to_numpy(dtype=float)
            except Exception as e:
                raise ModelError(f"cannot encode the profiles for this twin (max_cycles={self.max_cycles}): {e}") from None
        else:
            try:
                A = np.asarray(X, dtype=float)
            except (TypeError, ValueError):
                raise ModelError(f"X must be profiles, a feature DataFrame or a numeric 2-D array; got {type(X).__name__}") from None
            if A.ndim == 1 and A.size == len(fn):
                A = A[None, :]
            if A.ndim != 2 or A.shape[1] != len(fn):
                raise ModelError(
                    f"X has shape {A.shape}; this twin expects (n, {len(fn)}) feature vectors "
                    f"(feature_names({self.max_cycles}))"
                )
        if not np.isfinite(A).all():
            r, c = np.argwhere(~np.isfinite(A))[0]
            raise ModelError(f"row {r}, feature {fn[c]!r}: value {A[r, c]} is not finite")
        return A

    def _warn_structure(self, A: np.ndarray, names: Sequence[str]) -> None:
        nseg = np.rint(A[:, 3])
        for cqa in names:
            seen = self.info_.get(cqa, {}).get("n_segments_seen")
            if seen:
                unseen = ~np.isin(nseg, seen)
                if unseen.any():
                    vals = sorted({int(v) for v in nseg[unseen]})
                    warnings.warn(
                        f"{int(unseen.sum())} profile(s) have n_segments {vals}, never seen in the "
                        f"training runs of {cqa} (seen: {seen}); the prediction extrapolates - run such "
                        f"profiles and refit before trusting it",
                        TwinWarning, stacklevel=3,
                    )

    def _mean_std(self, A: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.empty((len(A), len(names)))
        std = np.empty((len(A), len(names)))
        for j, cqa in enumerate(names):
            mean[:, j], std[:, j] = self.models_[cqa].predict_validated(A, return_std=True)
        return mean, std

    def predict(self, X, return_std: bool = False):
        """Mean (and standard deviation) of every CQA, columns in :attr:`cqas_` order.

        Parameters
        ----------
        X : list of ThermocycleProfile, DataFrame with the feature columns, or ndarray (n, n_features)
        return_std : bool

        Returns
        -------
        mean : ndarray, shape (n, n_cqas)
            In the CQA units (µm, %).
        std : ndarray, shape (n, n_cqas), only when ``return_std``
        """
        A = self.profile_features(X)
        mean, std = self._mean_std(A, self.cqas_)
        return (mean, std) if return_std else mean

    def predict_frame(self, X, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """Mean and standard deviation of every CQA as a table (what the design reads).

        Parameters
        ----------
        X : list of ThermocycleProfile, DataFrame with the feature columns, or ndarray (n, n_features)
        cqas : sequence of str, optional
            Subset to predict (short names allowed).
        warn : bool
            Warn (:class:`TwinWarning`) when a profile has a number of segments that no training
            run of that CQA had (the model extrapolates its structure).

        Returns
        -------
        DataFrame, shape (n, 2 * n_cqas)
            Columns ``{cqa}_mean``, ``{cqa}_std``; the index of ``X`` when it is a DataFrame.
        """
        A = self.profile_features(X)
        names = list(self.cqas_) if cqas is None else [resolve_cqa(c, self.cqas_) for c in cqas]
        if warn:
            self._warn_structure(A, names)
        mean, std = self._mean_std(A, names)
        out = {}
        for j, cqa in enumerate(names):
            out[f"{cqa}_mean"], out[f"{cqa}_std"] = mean[:, j], std[:, j]
        return pd.DataFrame(out, index=X.index if isinstance(X, pd.DataFrame) else None)

    # ------------------------------------------------------------------ schema
    def check_data(self, data: DoETable | pd.DataFrame | str | Path) -> DoETable:
        """Raise :class:`ModelError` unless ``data`` has this twin's feature schema and CQAs."""
        if not isinstance(data, DoETable):
            try:
                data = read_doe(data, max_cycles=self.max_cycles, bounds=None, extra_columns="ignore")
            except SchemaError as e:
                raise ModelError(f"data does not match the twin's schema (max_cycles={self.max_cycles}): {e}") from None
        if list(data.feature_names) != self.feature_names:
            raise ModelError(
                f"{data.source}: feature schema max_cycles={data.max_cycles} ({len(data.feature_names)} columns) "
                f"does not match the twin's max_cycles={self.max_cycles} ({len(self.feature_names)} columns)"
            )
        missing = [c for c in self.cqas if c not in data.cqa_names]
        if missing:
            raise ModelError(f"{data.source}: lacks CQA column(s) {missing} that the twin predicts ({self.cqas})")
        return data

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``twin.json``, ``models/<cqa>/`` (skops + JSON), ``data/doe.csv`` and augmentation curves."""
        check_is_fitted(self, "models_")
        d = Path(directory)
        (d / "models").mkdir(parents=True, exist_ok=True)
        files = {cqa: save_ensemble(self.models_[cqa], d / "models" / cqa) for cqa in self.cqas_}
        (d / "data").mkdir(exist_ok=True)
        self.training_data_.to_csv(d / "data" / "doe.csv", index=False)
        if self.augmentation_curves_:
            (d / "augmentation").mkdir(exist_ok=True)
            for cqa, cur in self.augmentation_curves_.items():
                cur.to_csv(d / "augmentation" / f"{cqa}_curves.csv", index=False)
        doc = {
            "format_version": FORMAT_VERSION,
            "kind": "crystalloop.digital_twin",
            "cqas": list(self.cqas_),
            "max_cycles": self.max_cycles_,
            "feature_names": self.feature_names,
            "model_files": {cqa: {"dir": f"models/{cqa}", "sha256": files[cqa]} for cqa in self.cqas_},
            "data_sha256": sha256_file(d / "data" / "doe.csv"),
            "metadata": self.metadata_,
            "info": self.info_,
        }
        (d / "twin.json").write_text(json.dumps(jsonable(doc), indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, *, data: DoETable | pd.DataFrame | str | Path | None = None) -> DigitalTwin:
        """Load a saved twin; with ``data``, also check that the data matches its schema.

        Nothing in the folder can run code: models are read with skops (trusted types only)
        and XGBoost's JSON loader, every file is checked against its SHA-256 in ``twin.json``.

        Raises
        ------
        ModelError
            A missing or malformed file (named), an unknown format version, a schema mismatch.
        UntrustedModelError
            A model file that was modified, replaced (e.g. by a pickle) or holds untrusted types.
        """
        d = Path(directory)
        meta_path = d / "twin.json"
        if not meta_path.is_file():
            raise ModelError(f"{d} is not a saved twin: {meta_path} is missing (create one with `crystalloop twin fit`)")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{meta_path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "crystalloop.digital_twin":
            raise ModelError(f"{meta_path} is not a crystalloop twin description (kind {doc.get('kind') if isinstance(doc, dict) else None!r})")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{meta_path}: twin format v{doc.get('format_version')!r}, this crystalloop reads v{FORMAT_VERSION}"
                + (" (v1 stored pickled joblib models, which can run code; refit the twin with `crystalloop twin fit`)"
                   if doc.get("format_version") == 1 else ""))
        try:
            mc = int(doc["max_cycles"])
            cqas = [str(c) for c in doc["cqas"]]
            names, model_files = doc["feature_names"], doc["model_files"]
            info, metadata = dict(doc["info"]), dict(doc["metadata"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{meta_path} lacks or garbles the key {e}; the twin folder is damaged - refit the twin") from None
        if names != feature_names(mc):
            raise ModelError(f"{meta_path}: stored feature names do not match feature_names({mc}) of this crystalloop")
        models = {}
        for cqa in cqas:
            entry = model_files.get(cqa) if isinstance(model_files, dict) else None
            if not isinstance(entry, dict) or entry.get("dir") != f"models/{cqa}" or not isinstance(entry.get("sha256"), dict):
                raise UntrustedModelError(
                    f"{meta_path}: model entry of {cqa} is {entry!r}; expected the folder 'models/{cqa}' with the "
                    f"SHA-256 of its files")
            models[cqa] = load_ensemble(d / entry["dir"], expected=entry["sha256"])
        csv = d / "data" / "doe.csv"
        if not csv.is_file():
            raise ModelError(f"{csv} is missing; the twin folder is incomplete - refit the twin")
        if sha256_file(csv) != doc.get("data_sha256"):
            raise ModelError(f"{csv} does not match the SHA-256 in twin.json (modified or corrupted); refit the twin")
        saved = metadata.get("versions", {})
        now = _versions()
        diff = {k: (saved[k], now.get(k)) for k in ("scikit-learn", "xgboost", "skops") if k in saved and saved[k] != now.get(k)}
        if diff:
            warnings.warn(f"twin {d} was saved with {diff} (saved, installed); predictions may differ - refit to be safe",
                          TwinWarning, stacklevel=2)
        settings = dict(metadata.get("settings") or {})
        params = {k: v for k, v in settings.items() if k in cls._get_param_names() and k != "features"}
        if isinstance(params.get("grid"), str) and params["grid"] == "custom":
            params.pop("grid")
        twin = cls(**params)
        first = getattr(models[cqas[0]], "estimators_", [None])[0] if cqas else None
        if first is not None and hasattr(first, "steps") and first.steps[0][0] == "features":
            twin.features = first.steps[0][1]
        twin.cqas_, twin.max_cycles_ = cqas, mc
        twin.feature_names_in_ = np.asarray(feature_names(mc), dtype=object)
        twin.n_features_in_ = len(twin.feature_names_in_)
        twin.models_, twin.info_, twin.metadata_ = models, info, metadata
        twin.training_data_ = pd.read_csv(csv)
        twin.augmentation_curves_ = {}
        if (d / "augmentation").is_dir():
            for p in sorted((d / "augmentation").glob("*_curves.csv")):
                twin.augmentation_curves_[p.name.removesuffix("_curves.csv")] = pd.read_csv(p)
        twin.fit_times_ = {}
        if data is not None:
            twin.check_data(data)
        return twin

    # ------------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """One row per CQA: model, augmentation, cross-validated R²/MAE, coverage, rows, warning."""
        check_is_fitted(self, "models_")
        rows = []
        for cqa in self.cqas_:
            i = self.info_.get(cqa, {})
            aug = i.get("augmentation") or {}
            cal = {r["level"]: r["coverage"] for r in i.get("calibration", [])}
            rows.append({
                "cqa": cqa, "model": i.get("family"), "n_rows": i.get("n_rows"), "n_test": i.get("n_test"),
                "cv_r2": i.get("cv_r2"), "cv_mae": i.get("cv_mae"), "test_r2": i.get("test_r2"),
                "test_mae": i.get("test_mae"),
                "augmentation": (f"{aug.get('generator')} m={aug.get('m')} α={aug.get('alpha')}"
                                 if aug.get("used") else "none"),
                "coverage_68": cal.get(0.68), "coverage_95": cal.get(0.95),
                "warning": "; ".join(i.get("warnings", [])) or "",
            })
        return pd.DataFrame(rows)


def fit_twin(
    doe: DoETable | pd.DataFrame | str | Path,
    *,
    cqas: Sequence[str] | None = None,
    progress: Callable[[str, str], None] | None = None,
    **params: Any,
) -> DigitalTwin:
    """Fit a :class:`DigitalTwin` from a DoE table in one call.

    Parameters
    ----------
    doe : DoETable, DataFrame or path
    cqas : sequence of str, optional
        CQAs to model (the twin's ``targets``).
    progress : callable, optional
        ``progress(stage, message)`` after each step.
    **params
        :class:`DigitalTwin` settings (``families``, ``grid``, ``cv``, ``validation``,
        ``n_splits``, ``augment``, ``random_state``, ...).

    Returns
    -------
    DigitalTwin
        Fitted.
    """
    unknown = sorted(set(params) - set(DigitalTwin._get_param_names()))
    if unknown:
        raise ConfigError(f"fit_twin got unknown setting(s) {unknown}; expected DigitalTwin parameters "
                          f"{DigitalTwin._get_param_names()}")
    return DigitalTwin(targets=cqas, **params).fit(doe, progress=progress)


def load_twin(directory: str | Path, *, data: DoETable | pd.DataFrame | str | Path | None = None
              ) -> DigitalTwin | FeatureGPTwin | HybridTwin:
    """Open any saved twin folder: the kind in its ``twin.json`` picks the loader.

    ``"feature-gp"``: a :class:`~crystalloop.digital_twin.gp.FeatureGPTwin`
    (:meth:`~crystalloop.digital_twin.gp.FeatureGPTwin.load`); ``"hybrid"``: a
    :class:`~crystalloop.digital_twin.hybrid.HybridTwin` (:meth:`~crystalloop.digital_twin.hybrid.HybridTwin.load`,
    the kinetic constants read, not refitted); anything else is read as the
    ensemble twin (:meth:`DigitalTwin.load`, which checks its own kind and format). Both check
    every file against the SHA-256 recorded in twin.json and never unpickle.

    Parameters
    ----------
    directory : path
    data : DoETable, DataFrame or path, optional
        Ensemble twins only: also check that this data matches the twin's schema.

    Raises
    ------
    ModelError
        The folder does not exist or does not hold a valid twin (the message names the file).
    UntrustedModelError
        A model file was modified, truncated or replaced.
    """
    d = Path(directory)
    meta = d / "twin.json"
    if not meta.is_file():
        raise ModelError(f"{d} is not a saved twin: {meta} is missing (create one with `crystalloop twin fit DOE "
                         f"--out {d}`)")
    doc = read_json_file(meta)
    if isinstance(doc, dict) and doc.get("kind") == GP_KIND:
        return FeatureGPTwin.load(d)
    if isinstance(doc, dict) and doc.get("kind") == HYBRID_KIND:
        return HybridTwin.load(d)
    return DigitalTwin.load(d, data=data)
