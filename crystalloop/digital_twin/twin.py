"""The digital twin: one uncertainty-aware model per CQA, fitted from a DoE table, saved with metadata.

:func:`fit_twin` runs the seed-003 workflow per CQA on the rows where it was measured:

1. hold out 10–15 % of the rows; tune RF/GBT/XGBoost/SVR with GridSearchCV and pick one
   (:func:`~crystalloop.digital_twin.models.select_model`);
2. optionally search synthetic augmentation (generator × m × α, weighted ERM) by CV on the real
   training rows and keep it only where it lowers that error
   (:func:`~crystalloop.digital_twin.augment.search_augmentation`);
3. wrap the chosen model (with its synthetic rows, if kept) in a Monte Carlo CV (or bootstrap)
   ensemble fitted on the training rows; score it on the hold-out rows (R², MAE, interval
   coverage).

:class:`DigitalTwin` predicts mean and std of every CQA for thousands of profiles per call.
Persistence: ``twin.json`` (metadata, schema, scores, SHA-256 of every model file) and one
``models/<cqa>.joblib`` per CQA (joblib, the format scikit-learn documents for its models;
only load twins you trust, as with any pickle). Loading checks the hashes and the versions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from crystalloop.errors import ConfigError, ModelError, SchemaError, TwinWarning
from crystalloop.profiles import ThermocycleProfile, feature_names, profiles_to_frame

from .augment import DEFAULT_ALPHAS, DEFAULT_M, WeightedERMRegressor, search_augmentation_many
from .doe import DoETable, read_doe, resolve_cqa
from .models import MIN_ROWS, MODEL_FAMILIES, make_estimator, select_model
from .synthetic import GENERATORS
from .uncertainty import BootstrapRegressor, MonteCarloCVRegressor, calibration_report

__all__ = ["DigitalTwin", "TwinWarning", "fit_twin", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import joblib
    import sklearn
    import xgboost

    import crystalloop

    out = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
           "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__, "joblib": joblib.__version__,
           "crystalloop": getattr(crystalloop, "__version__", "unknown")}
    try:
        import sdv

        out["sdv"] = sdv.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


@dataclass
class DigitalTwin:
    """All CQA models of one process, with their metadata.

    Attributes
    ----------
    cqas : list of str
        CQA names predicted (``D50_um``, ...).
    max_cycles : int
    feature_names : list of str
        ``profiles.feature_names(max_cycles)``.
    models : dict
        CQA → fitted ensemble regressor (``predict(X, return_std=True)``).
    info : dict
        CQA → fit metadata (chosen family and parameters, candidate table, augmentation,
        hold-out scores, calibration, timings, training ranges, hold-out split).
    metadata : dict
        Package versions, data hash, creation time, DoE source.
    """

    cqas: list[str]
    max_cycles: int
    models: dict[str, Any]
    info: dict[str, dict] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    training_data: pd.DataFrame | None = field(default=None, repr=False)
    augmentation_curves: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.max_cycles)

    # ------------------------------------------------------------------ predict
    def features(self, X) -> np.ndarray:
        """Feature matrix from profiles, a feature DataFrame or a 2-D array; validated."""
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

    def predict(self, X, *, cqas: Sequence[str] | None = None, warn: bool = True) -> pd.DataFrame:
        """Mean and standard deviation of every CQA.

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
            Columns ``{cqa}_mean``, ``{cqa}_std``.
        """
        A = self.features(X)
        names = self.cqas if cqas is None else [resolve_cqa(c, self.cqas) for c in cqas]
        out = {}
        nseg = A[:, 3]
        for cqa in names:
            if warn:
                seen = self.info.get(cqa, {}).get("n_segments_seen")
                if seen:
                    unseen = ~np.isin(np.rint(nseg), seen)
                    if unseen.any():
                        vals = sorted({int(v) for v in np.rint(nseg[unseen])})
                        warnings.warn(
                            f"{int(unseen.sum())} profile(s) have n_segments {vals}, never seen in the "
                            f"training runs of {cqa} (seen: {seen}); the prediction extrapolates - run such "
                            f"profiles and refit before trusting it",
                            TwinWarning, stacklevel=2,
                        )
            model = self.models[cqa]
            if hasattr(model, "_predict_validated"):  # A is finite float64 with the right columns
                mean, std = model._predict_validated(A, return_std=True)
            else:
                mean, std = model.predict(A, return_std=True)
            out[f"{cqa}_mean"] = mean
            out[f"{cqa}_std"] = std
        idx = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(out, index=idx)

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
        """Write ``twin.json``, ``models/<cqa>.joblib``, ``data/doe.csv`` and augmentation curves."""
        import joblib

        d = Path(directory)
        (d / "models").mkdir(parents=True, exist_ok=True)
        files = {}
        for cqa, model in self.models.items():
            p = d / "models" / f"{cqa}.joblib"
            joblib.dump(model, p, compress=3)
            files[cqa] = {"path": f"models/{cqa}.joblib", "sha256": _sha256(p)}
        if self.training_data is not None:
            (d / "data").mkdir(exist_ok=True)
            self.training_data.to_csv(d / "data" / "doe.csv", index=False)
        if self.augmentation_curves:
            (d / "augmentation").mkdir(exist_ok=True)
            for cqa, cur in self.augmentation_curves.items():
                cur.to_csv(d / "augmentation" / f"{cqa}_curves.csv", index=False)
        doc = {
            "format_version": FORMAT_VERSION,
            "kind": "crystalloop.digital_twin",
            "cqas": self.cqas,
            "max_cycles": self.max_cycles,
            "feature_names": self.feature_names,
            "model_files": files,
            "metadata": self.metadata,
            "info": self.info,
        }
        (d / "twin.json").write_text(json.dumps(_jsonable(doc), indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, *, data: DoETable | pd.DataFrame | str | Path | None = None) -> DigitalTwin:
        """Load a saved twin; with ``data``, also check that the data matches its schema.

        Raises
        ------
        ModelError
            Missing/corrupted files, a model file whose SHA-256 differs from ``twin.json``,
            an unknown format version, or (with ``data``) a schema mismatch.
        """
        import joblib

        d = Path(directory)
        meta_path = d / "twin.json"
        if not meta_path.is_file():
            raise ModelError(f"{d} is not a saved twin: {meta_path} is missing (create one with `crystalloop twin fit`)")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ModelError(f"{meta_path} is not valid JSON: {e}") from None
        if doc.get("kind") != "crystalloop.digital_twin" or doc.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{meta_path}: unsupported twin format {doc.get('kind')!r} v{doc.get('format_version')!r}; "
                             f"this crystalloop reads v{FORMAT_VERSION}")
        mc = int(doc["max_cycles"])
        if doc["feature_names"] != feature_names(mc):
            raise ModelError(f"{meta_path}: stored feature names do not match feature_names({mc}) of this crystalloop")
        models = {}
        for cqa in doc["cqas"]:
            entry = doc["model_files"].get(cqa)
            if entry is None:
                raise ModelError(f"{meta_path}: no model file listed for CQA {cqa!r}")
            p = d / entry["path"]
            if not p.is_file():
                raise ModelError(f"model file {p} for {cqa} is missing")
            if _sha256(p) != entry["sha256"]:
                raise ModelError(f"model file {p} does not match the SHA-256 in twin.json (modified or corrupted); refit the twin")
            models[cqa] = joblib.load(p)
        now = _versions()
        saved = doc.get("metadata", {}).get("versions", {})
        diff = {k: (saved[k], now.get(k)) for k in ("scikit-learn", "xgboost") if k in saved and saved[k] != now.get(k)}
        if diff:
            warnings.warn(f"twin {d} was saved with {diff} (saved, installed); predictions may differ - refit to be safe",
                          TwinWarning, stacklevel=2)
        td = None
        if (d / "data" / "doe.csv").is_file():
            td = pd.read_csv(d / "data" / "doe.csv")
        curves = {}
        if (d / "augmentation").is_dir():
            for p in sorted((d / "augmentation").glob("*_curves.csv")):
                curves[p.name.removesuffix("_curves.csv")] = pd.read_csv(p)
        twin = cls(list(doc["cqas"]), mc, models, doc.get("info", {}), doc.get("metadata", {}), td, curves)
        if data is not None:
            twin.check_data(data)
        return twin

    # ------------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """One row per CQA: model, augmentation, hold-out R²/MAE, coverage, rows."""
        rows = []
        for cqa in self.cqas:
            i = self.info.get(cqa, {})
            aug = i.get("augmentation") or {}
            cal = {r["level"]: r["coverage"] for r in i.get("calibration", [])}
            rows.append({
                "cqa": cqa, "model": i.get("family"), "n_train": i.get("n_train"), "n_test": i.get("n_test"),
                "cv_mse": i.get("cv_mse"), "test_r2": i.get("test_r2"), "test_mae": i.get("test_mae"),
                "augmentation": (f"{aug.get('generator')} m={aug.get('m')} α={aug.get('alpha')}"
                                 if aug.get("used") else "none"),
                "coverage_68": cal.get(0.68), "coverage_95": cal.get(0.95),
            })
        return pd.DataFrame(rows)


def fit_twin(
    doe: DoETable | pd.DataFrame | str | Path,
    *,
    cqas: Sequence[str] | None = None,
    families: Sequence[str] = MODEL_FAMILIES,
    grid: Literal["paper", "fast"] | dict = "paper",
    cv: int = 3,
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
    progress: Callable[[str, str], None] | None = None,
) -> DigitalTwin:
    """Fit a :class:`DigitalTwin` from a DoE table (see module docstring for the stages).

    Parameters
    ----------
    doe : DoETable, DataFrame or path
    cqas : sequence of str, optional
        CQAs to model (short names allowed); default every CQA column with at least
        :data:`~crystalloop.digital_twin.models.MIN_ROWS` measured rows (others are skipped with a warning).
    families, grid, cv, test_size
        Model selection (:func:`~crystalloop.digital_twin.models.select_model`).
    uncertainty : {"mc", "bootstrap"}
        Ensemble kind; ``n_splits`` members.
    augment : bool
        Run the synthetic augmentation search.
    generators, n_synthetic, alphas, epochs, min_improvement, prune
        Augmentation search (:func:`~crystalloop.digital_twin.augment.search_augmentation`; ``epochs``
        caps CTGAN/TVAE training, ``prune`` stops a fold's α scan early, ``None`` = full grid).
    n_jobs : int, optional
        joblib workers for every stage.
    random_state : int
    progress : callable, optional
        ``progress(stage, message)`` after each step.

    Returns
    -------
    DigitalTwin

    Raises
    ------
    ModelError
        A requested CQA has fewer than 5 measured rows, or no CQA can be modelled.
    ConfigError
        Bad option values (``uncertainty``, ``n_splits``, α outside [0, 1], ...).
    """
    if uncertainty not in ("mc", "bootstrap"):
        raise ConfigError(f"uncertainty must be 'mc' or 'bootstrap', got {uncertainty!r}")
    if int(n_splits) != n_splits or n_splits < 2:
        raise ConfigError(f"n_splits must be a whole number >= 2, got {n_splits!r}")
    alphas = list(alphas)
    for a in alphas:
        try:
            ok = 0.0 <= float(a) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"alpha {a!r} lies outside [0, 1]; the α grid must be inside [0, 1] (0 = real data only)")
    table = doe if isinstance(doe, DoETable) else read_doe(doe)
    prog = progress or (lambda stage, msg: None)
    counts = table.n_measured()
    if cqas is None:
        chosen = []
        for c in table.cqa_names:
            if counts[c] >= MIN_ROWS:
                chosen.append(c)
            else:
                warnings.warn(
                    f"{table.source}: CQA {c!r} has {int(counts[c])} measured row(s) (< {MIN_ROWS}); it is "
                    f"left out of the twin. Measure it in more runs to model it", TwinWarning, stacklevel=2)
    else:
        chosen = [resolve_cqa(c, table.cqa_names) for c in cqas]
        for c in chosen:
            if counts[c] < MIN_ROWS:
                raise ModelError(
                    f"{table.source}: CQA {c!r} has {int(counts[c])} measured row(s); a model needs at least "
                    f"{MIN_ROWS}. Measure it in more runs or drop it from cqas"
                )
    if not chosen:
        raise ModelError(f"{table.source}: no CQA column has at least {MIN_ROWS} measured rows; nothing to model "
                         f"(CQA columns: {table.cqa_names})")
    t_all = time.perf_counter()
    models, info, curves_all = {}, {}, {}
    stage_s: dict[str, float] = {}
    # stage 1: model selection per CQA
    t_stage = time.perf_counter()
    plan = {}
    for k, cqa in enumerate(chosen):
        X, y, ids = table.xy(cqa)
        t0 = time.perf_counter()
        sel = select_model(X, y, families=families, grid=grid, cv=cv, test_size=test_size,
                           n_jobs=n_jobs, random_state=random_state + k,
                           progress=lambda fam, cqa=cqa: prog("select", f"{cqa}: {fam} tuned"))
        base_est = make_estimator(sel.best_family, random_state=random_state + k, **sel.best_params)
        plan[cqa] = {"k": k, "X": X, "y": y, "ids": ids, "sel": sel, "base": base_est,
                     "timings": {"selection_s": time.perf_counter() - t0}, "aug": {"used": False}, "member": base_est}
    stage_s["selection_s"] = time.perf_counter() - t_stage
    # stage 2: augmentation search, the (fold, generator) tasks of every CQA in one joblib pool
    t_stage = time.perf_counter()
    if augment:
        todo = []
        for cqa in chosen:
            tr = plan[cqa]["sel"].train_index
            if len(tr) < 2 * cv:
                warnings.warn(f"{cqa}: {len(tr)} training rows are too few for the {cv}-fold augmentation search; skipped",
                              TwinWarning, stacklevel=2)
                plan[cqa]["aug"]["skipped"] = f"too few rows ({len(tr)})"
            else:
                todo.append(cqa)
        if todo:
            problems = [(plan[c]["X"][plan[c]["sel"].train_index], plan[c]["y"][plan[c]["sel"].train_index],
                         plan[c]["base"], random_state + plan[c]["k"]) for c in todo]
            results = search_augmentation_many(problems, max_cycles=table.max_cycles, generators=generators,
                                               n_synthetic=n_synthetic, alphas=alphas, cv=cv, epochs=epochs,
                                               min_improvement=min_improvement, prune=prune, n_jobs=n_jobs)
            for cqa, res in zip(todo, results, strict=True):
                curves_all[cqa] = res.curves
                plan[cqa]["aug"] = {"used": res.use_augmentation, "baseline_cv_mse": res.baseline_mse, **res.best,
                                    "quality": res.quality, "min_improvement": min_improvement, "epochs": epochs,
                                    "prune": prune, "n_pruned": int(res.curves["n_pruned"].sum())}
                # worker seconds spent on this CQA (the stage's wall time is in metadata["stage_s"])
                plan[cqa]["timings"]["augmentation_s"] = res.timings["task_s"] + res.timings["final_generators_s"]
                if res.use_augmentation:
                    Xs, ys = res.synthetic[res.best["generator"]]
                    m = res.best["m"]
                    plan[cqa]["member"] = WeightedERMRegressor(plan[cqa]["base"], alpha=res.best["alpha"],
                                                               X_synthetic=Xs[:m], y_synthetic=ys[:m])
    for cqa in chosen:
        plan[cqa]["timings"].setdefault("augmentation_s", 0.0)
        a = plan[cqa]["aug"]
        prog("augment", f"{cqa}: {'kept ' + a.get('generator', '') if a.get('used') else 'no augmentation'}")
    stage_s["augmentation_s"] = time.perf_counter() - t_stage
    # stage 3: uncertainty ensembles
    t_stage = time.perf_counter()
    for cqa in chosen:
        k, X, y, ids, sel = (plan[cqa][n] for n in ("k", "X", "y", "ids", "sel"))
        timings, aug_info, member = plan[cqa]["timings"], plan[cqa]["aug"], plan[cqa]["member"]
        tr, te = sel.train_index, sel.test_index
        t0 = time.perf_counter()
        if uncertainty == "mc":
            ens = MonteCarloCVRegressor(member, n_splits=int(n_splits), n_jobs=n_jobs, random_state=random_state + k)
        else:
            ens = BootstrapRegressor(member, n_estimators=int(n_splits), n_jobs=n_jobs, random_state=random_state + k)
        ens.fit(X[tr], y[tr])
        timings["uncertainty_s"] = time.perf_counter() - t0
        prog("uncertainty", f"{cqa}: {n_splits}-member {uncertainty} ensemble")
        mu_te, sd_te = ens.predict(X[te], return_std=True)
        mu_tr = ens.predict(X[tr])
        cal = calibration_report(y[te], mu_te, sd_te)
        fam_row = sel.table.iloc[0]
        info[cqa] = {
            "family": sel.best_family,
            "params": sel.best_params,
            "cv_mse": float(fam_row["cv_mse"]),
            "n_rows": int(len(y)), "n_train": int(len(tr)), "n_test": int(len(te)),
            "train_ids": [str(i) for i in ids[tr]], "test_ids": [str(i) for i in ids[te]],
            "train_r2": float(r2_score(y[tr], mu_tr)),
            "test_r2": float(r2_score(y[te], mu_te)) if len(te) > 1 else None,
            "test_mae": float(mean_absolute_error(y[te], mu_te)),
            "test_mse": float(mean_squared_error(y[te], mu_te)),
            "calibration": cal.to_dict("records"),
            "residual_std": float(np.sqrt(ens.residual_var_)),
            "selection": sel.table.assign(best_params=sel.table["best_params"].map(json.dumps)).to_dict("records"),
            "augmentation": aug_info,
            "uncertainty": {"kind": uncertainty, "n_members": int(n_splits), "std_mode": ens.std_mode},
            "n_segments_seen": sorted({int(v) for v in np.rint(X[:, 3])}),
            "feature_min": X.min(axis=0).tolist(), "feature_max": X.max(axis=0).tolist(),
            "target_range": [float(y.min()), float(y.max())],
            "timings": timings,
        }
        models[cqa] = ens
    stage_s["uncertainty_s"] = time.perf_counter() - t_stage
    metadata = {
        "stage_s": stage_s,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "data_hash": table.data_hash(),
        "source": table.source,
        "n_runs": table.n_runs,
        "fit_time_s": time.perf_counter() - t_all,
        "settings": {"families": list(families), "grid": grid if isinstance(grid, str) else "custom", "cv": cv,
                     "test_size": test_size, "uncertainty": uncertainty, "n_splits": int(n_splits), "augment": augment,
                     "generators": list(generators), "n_synthetic": list(n_synthetic), "alphas": alphas,
                     "epochs": epochs, "min_improvement": min_improvement, "prune": prune,
                     "random_state": random_state},
        "doe_warnings": list(table.warnings_),
    }
    return DigitalTwin(chosen, table.max_cycles, models, info, metadata, table.to_frame(), curves_all)
