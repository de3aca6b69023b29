"""Weighted empirical risk minimisation with synthetic rows, and the augmentation search.

Seed 003 Eq. 1 (after Jain, Montanari & Sasoglu 2024)::

    L(θ; α) = (1 − α)/n Σ_real L(θ, z_i) + α/m Σ_synthetic L(θ, z_i^s)

is implemented with per-row sample weights ``(1 − α)/n`` (real) and ``α/m`` (synthetic),
rescaled by ``n + m`` so that they average 1: the minimiser of an unregularised loss is
unchanged, and the meaning of SVR's ``C`` or XGBoost's ``min_child_weight`` is kept.

:func:`search_augmentation` chooses generator × m × α by K-fold cross-validated MSE on the
*real* rows only: in each fold the generator is trained on that fold's training rows (so the
validation rows never leak into the synthetic data), ``max(m)`` rows are sampled once, and every
(m, α) is scored on the fold's real validation rows. Augmentation is kept only when the best
setting lowers the CV MSE of α = 0 by at least ``min_improvement`` (relative).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from crystalloop.errors import ConfigError, ModelError, TwinWarning
from crystalloop.profiles import feature_names

from .synthetic import GENERATORS, SyntheticGenerator
from .uncertainty import fast_predict, fit_weighted

__all__ = ["WeightedERMRegressor", "erm_weights", "AugmentationResult", "search_augmentation", "search_augmentation_many",
           "DEFAULT_ALPHAS", "DEFAULT_M"]

DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
DEFAULT_M: tuple[int, ...] = (5, 10, 15, 20, 25)
_TARGET = "__target__"


def _check_alpha(alpha) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= a <= 1.0 or not np.isfinite(a):
        raise ConfigError(
            f"alpha must lie in [0, 1] (0 = real data only, 1 = synthetic only), got {alpha!r}; "
            f"seed 003 searches a grid inside [0, 1]"
        )
    return a


def erm_weights(n: int, m: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row weights ``((1−α)/n, α/m)`` rescaled to mean 1 over the ``n + m`` rows.

    >>> w_real, w_syn = erm_weights(4, 2, 0.5)
    >>> w_real.round(3).tolist(), w_syn.round(3).tolist()
    ([0.75, 0.75, 0.75, 0.75], [1.5, 1.5])
    """
    a = _check_alpha(alpha)
    if n < 1:
        raise ConfigError(f"need at least one real row, got n={n}")
    if m == 0:
        if a > 0:
            raise ConfigError(f"alpha={a} puts weight on synthetic rows, but none were given (m=0); use alpha=0")
        return np.ones(n), np.ones(0)
    scale = n + m
    return np.full(n, (1 - a) / n * scale), np.full(m, a / m * scale)


class WeightedERMRegressor(RegressorMixin, BaseEstimator):
    """A regressor trained on real rows plus synthetic rows with weighted ERM (seed 003 Eq. 1).

    Parameters
    ----------
    estimator : estimator, optional
        Base regressor accepting ``sample_weight`` (a Pipeline passes it to its steps);
        default ``Ridge(alpha=1.0)``.
    alpha : float in [0, 1], default 0
        Weight of the synthetic part of the loss.
    X_synthetic, y_synthetic : array-like, optional
        Fixed synthetic rows, used when given.
    generator : SyntheticGenerator, optional
        Otherwise, a generator trained in :meth:`fit` on the real rows (features + target;
        the features must be profile feature vectors) that samples ``n_synthetic`` rows.
    n_synthetic : int, default 25
    random_state : int, optional

    Attributes
    ----------
    estimator_ : fitted base estimator
    X_synthetic_, y_synthetic_ : ndarray
        The synthetic rows used (empty when none).
    weights_ : ndarray, shape (n + m,)
    n_features_in_ : int
    """

    def __init__(self, estimator=None, *, alpha: float = 0.0, X_synthetic=None, y_synthetic=None,
                 generator: SyntheticGenerator | None = None, n_synthetic: int = 25, random_state=None):
        self.estimator = estimator
        self.alpha = alpha
        self.X_synthetic = X_synthetic
        self.y_synthetic = y_synthetic
        self.generator = generator
        self.n_synthetic = n_synthetic
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit on the real rows and the synthetic rows (given or generated), weighted by ``alpha``.

        ``sample_weight`` (optional) multiplies the real rows' weights.
        """
        alpha = _check_alpha(self.alpha)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        if self.X_synthetic is not None:
            if self.y_synthetic is None:
                raise ConfigError("X_synthetic was given without y_synthetic")
            Xs = np.asarray(self.X_synthetic, dtype=float)
            ys = np.asarray(self.y_synthetic, dtype=float).ravel()
            if Xs.ndim != 2 or Xs.shape[1] != X.shape[1] or len(Xs) != len(ys):
                raise ConfigError(
                    f"synthetic rows have shape {Xs.shape} / {ys.shape}; expected (m, {X.shape[1]}) and (m,)"
                )
        elif self.generator is not None and alpha > 0:
            mc = self.generator.max_cycles
            fn = feature_names(mc)
            if X.shape[1] != len(fn):
                raise ConfigError(f"the generator models profile features ({len(fn)} columns for max_cycles={mc}); X has {X.shape[1]}")
            gen = clone(self.generator)
            if self.random_state is not None:
                gen.set_params(random_state=self.random_state)
            frame = pd.DataFrame(X, columns=fn)
            frame[_TARGET] = y
            gen.fit(frame)
            S = gen.sample(int(self.n_synthetic))
            Xs, ys = S[fn].to_numpy(float), S[_TARGET].to_numpy(float)
        else:
            Xs, ys = np.empty((0, X.shape[1])), np.empty(0)
        if len(ys) == 0 and alpha > 0:
            warnings.warn(f"alpha={alpha} has no effect: no synthetic rows were given (X_synthetic) or generated "
                          f"(generator); fitting on the real rows only", TwinWarning, stacklevel=2)
            alpha = 0.0
        w_real, w_syn = erm_weights(len(y), len(ys), alpha)
        if sample_weight is not None:
            w_real = w_real * _check_sample_weight(sample_weight, X)
        est = clone(Ridge(alpha=1.0) if self.estimator is None else self.estimator)
        keep_real = w_real > 0
        Xa = np.vstack([X[keep_real], Xs])
        ya = np.concatenate([y[keep_real], ys])
        wa = np.concatenate([w_real[keep_real], w_syn])
        if len(ya) == 0:
            raise ModelError("no rows with positive weight to fit on")
        fit_weighted(est, Xa, ya, None if np.allclose(wa, 1.0) else wa)
        self.estimator_ = est
        self.X_synthetic_, self.y_synthetic_ = Xs, ys
        self.weights_ = np.concatenate([w_real, w_syn])
        return self

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return fast_predict(self.estimator_, X)


@dataclass
class AugmentationResult:
    """Outcome of :func:`search_augmentation`.

    Attributes
    ----------
    curves : DataFrame
        ``generator, m, alpha, cv_mse, cv_mse_std`` for every setting (α = 0 rows are the
        real-only baseline, repeated per generator and m for plotting).
    baseline_mse : float
        CV MSE with real data only.
    best : dict
        ``generator, m, alpha, cv_mse, improvement`` of the best setting.
    use_augmentation : bool
        Whether the best setting beats the baseline by ``min_improvement``.
    quality : dict
        SDV quality score per generator (first fold), when computed.
    timings : dict
    """

    curves: pd.DataFrame
    baseline_mse: float
    best: dict
    use_augmentation: bool
    quality: dict = field(default_factory=dict)
    synthetic: dict = field(default_factory=dict, repr=False)
    timings: dict = field(default_factory=dict)


def _fold_task(gen_kind, X, y, tr, va, estimator, ms, alphas, max_cycles, epochs, seed, quality=False,
               base_mse=None, prune=None):
    """Train one generator on a fold; MSE per (m, alpha), SDV's quality score when asked, seconds.

    With ``prune`` (and the fold's α = 0 MSE ``base_mse``), the α grid of an m is cut short once an
    α's MSE exceeds ``prune × base_mse`` and did not fall from the previous α: the larger α of that
    m get MSE NaN (not evaluated), which makes them ineligible in :func:`search_augmentation_many`.
    """
    t0 = time.perf_counter()
    fn = feature_names(max_cycles)
    frame = pd.DataFrame(X[tr], columns=fn)
    frame[_TARGET] = y[tr]
    gen = SyntheticGenerator(gen_kind, max_cycles=max_cycles, epochs=epochs, random_state=seed).fit(frame)
    S = gen.sample(max(ms))
    Xs, ys = S[fn].to_numpy(float), S[_TARGET].to_numpy(float)
    limit = np.inf if prune is None or base_mse is None else prune * base_mse
    out = []
    for m in ms:
        prev, cut = np.inf, False
        for a in sorted(alphas):
            if a == 0:
                continue
            if cut:
                out.append((gen_kind, m, a, np.nan))
                continue
            w_r, w_s = erm_weights(len(tr), m, a)
            est = clone(estimator)
            keep = w_r > 0
            fit_weighted(est, np.vstack([X[tr][keep], Xs[:m]]), np.concatenate([y[tr][keep], ys[:m]]),
                         np.concatenate([w_r[keep], w_s]))
            p = fast_predict(est, X[va])
            mse = float(np.mean((p - y[va]) ** 2))
            out.append((gen_kind, m, a, mse))
            cut = mse > limit and mse >= prev
            prev = mse
    q = _quality(gen, frame, S) if quality else None
    return out, q, time.perf_counter() - t0


def _final_task(kind, X, y, max_cycles, epochs, seed, n):
    """The chosen generator trained on all rows; ``n`` samples and the seconds it took."""
    t0 = time.perf_counter()
    fn = feature_names(max_cycles)
    frame = pd.DataFrame(X, columns=fn)
    frame[_TARGET] = y
    S = SyntheticGenerator(kind, max_cycles=max_cycles, epochs=epochs, random_state=seed).fit(frame).sample(n)
    return (S[fn].to_numpy(float), S[_TARGET].to_numpy(float)), time.perf_counter() - t0


# generator cost order (longest first) for load balancing of the pooled tasks
_COST = {"ctgan": 0, "tvae": 1, "gaussian_copula": 2}


def search_augmentation(
    X: np.ndarray,
    y: np.ndarray,
    estimator,
    *,
    max_cycles: int = 4,
    generators: tuple[str, ...] | list[str] = GENERATORS,
    n_synthetic: tuple[int, ...] | list[int] = DEFAULT_M,
    alphas: tuple[float, ...] | list[float] = DEFAULT_ALPHAS,
    cv: int = 3,
    epochs: int = 100,
    min_improvement: float = 0.05,
    quality: bool = True,
    prune: float | None = 2.0,
    n_jobs: int | None = None,
    random_state: int | None = 0,
) -> AugmentationResult:
    """Search generator × m × α by K-fold CV on real rows (seed 003 step 6).

    Parameters
    ----------
    X : ndarray, shape (n, n_features)
        Profile feature vectors (``feature_names(max_cycles)`` order) of the training rows.
    y : ndarray, shape (n,)
    estimator : estimator
        The tuned model of this CQA (cloned per fit).
    generators : sequence of {"gaussian_copula", "ctgan", "tvae"}
    n_synthetic : sequence of int
        Numbers of synthetic rows m (seed 003: 5–25).
    alphas : sequence of float in [0, 1]
        α grid; 0 (the baseline) is always added.
    cv : int
        Folds.
    epochs : int
        CTGAN/TVAE training epochs (the dominant cost of the search: one generator fit per fold
        and generator; 50 is enough for ~30-row tables, seed 003's networks are tiny).
    min_improvement : float
        Keep augmentation only if it lowers the baseline CV MSE by this fraction.
    quality : bool
        Report SDV's quality score of each generator (the one trained on the first fold's training
        rows, ``max(m)`` samples against those rows). When augmentation is kept, the chosen
        generator is retrained on all rows and its ``max(m)`` samples are the synthetic rows the
        twin uses (``synthetic``).
    prune : float or None, default 2.0
        Early stop of the α grid inside a fold: for each generator and m, α is scanned upwards and
        the remaining α are skipped once an α's fold MSE exceeds ``prune`` × the fold's α = 0 MSE
        and did not fall from the previous α (the curve is clearly worse than real data only and
        still rising; seed 003's curves are U-shaped in α). A skipped setting is marked as not
        evaluated (``cv_mse`` NaN, ``n_pruned`` counts it) and cannot be chosen. ``None`` scans the
        whole grid. It saves most of the weighted refits for expensive families (GBT with Huber
        loss refits in ≈ 0.2 s each) and cannot change the choice unless a setting more than
        ``prune`` × worse than the baseline on one fold wins the 3-fold mean.
    n_jobs : int, optional
        joblib processes over (fold, generator) tasks.

    Notes
    -----
    Cost: each generator is trained once per fold and sampled once (``max(m)`` rows, the first
    ``m`` used for each m), and only the cheap weighted refits run per (m, α). To search several
    CQAs, :func:`search_augmentation_many` pools all their tasks in one joblib call (longest first),
    which keeps both workers busy; the results are identical.

    Raises
    ------
    ConfigError
        α outside [0, 1], unknown generator, m < 1, cv < 2, ``min_improvement`` < 0.
    ModelError
        Fewer than ``2 * cv`` rows.
    """
    return search_augmentation_many(
        [(X, y, estimator, random_state)], max_cycles=max_cycles, generators=generators, n_synthetic=n_synthetic,
        alphas=alphas, cv=cv, epochs=epochs, min_improvement=min_improvement, quality=quality, prune=prune,
        n_jobs=n_jobs,
    )[0]


def search_augmentation_many(
    problems,
    *,
    max_cycles: int = 4,
    generators: tuple[str, ...] | list[str] = GENERATORS,
    n_synthetic: tuple[int, ...] | list[int] = DEFAULT_M,
    alphas: tuple[float, ...] | list[float] = DEFAULT_ALPHAS,
    cv: int = 3,
    epochs: int = 100,
    min_improvement: float = 0.05,
    quality: bool = True,
    prune: float | None = 2.0,
    n_jobs: int | None = None,
) -> list[AugmentationResult]:
    """:func:`search_augmentation` for several problems (CQAs) with all their tasks in one pool.

    Parameters
    ----------
    problems : sequence of (X, y, estimator, random_state)
        One per CQA; the other parameters are those of :func:`search_augmentation`.

    Returns
    -------
    list of AugmentationResult
        In the order of ``problems``; each identical to a separate :func:`search_augmentation`
        call with the same arguments. ``timings`` holds ``search_s`` (wall time of the pooled
        stage), ``task_s`` (worker seconds spent on this problem's generator tasks) and
        ``final_generators_s`` (worker seconds of the final generator fit).
    """
    alphas = sorted({_check_alpha(a) for a in alphas} | {0.0})
    for g in generators:
        if g not in GENERATORS:
            raise ConfigError(f"Unknown generator {g!r}; expected some of {list(GENERATORS)}")
    generators = list(generators)
    ms = sorted({int(m) for m in n_synthetic})
    if not ms or ms[0] < 1:
        raise ConfigError(f"n_synthetic must be whole numbers >= 1, got {list(n_synthetic)}")
    if int(cv) != cv or cv < 2:
        raise ConfigError(f"cv must be a whole number >= 2, got {cv}")
    if min_improvement < 0:
        raise ConfigError(f"min_improvement must be >= 0, got {min_improvement}")
    if prune is not None and not (np.isfinite(prune) and prune >= 1):
        raise ConfigError(f"prune must be None or a number >= 1 (a multiple of the baseline fold MSE), got {prune!r}")
    nf = len(feature_names(max_cycles))
    probs = []
    for X, y, estimator, random_state in problems:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        if X.ndim != 2 or X.shape[1] != nf:
            raise ConfigError(f"X has shape {X.shape}; profile features for max_cycles={max_cycles} have {nf} columns")
        if len(y) < 2 * cv:
            raise ModelError(f"augmentation search needs at least {2 * cv} rows for {cv}-fold CV, got {len(y)}")
        folds = list(KFold(int(cv), shuffle=True, random_state=random_state).split(X))
        base = []  # alpha = 0: real rows only, same folds
        for tr, va in folds:
            est = clone(estimator).fit(X[tr], y[tr])
            base.append(float(np.mean((fast_predict(est, X[va]) - y[va]) ** 2)))
        rs = 0 if random_state is None else int(random_state)
        probs.append({"X": X, "y": y, "est": estimator, "folds": folds, "base": base, "rs": rs})
    t0 = time.perf_counter()
    a_pos = [a for a in alphas if a > 0]
    tasks = [(p, j, i) for p in range(len(probs)) for j in range(len(generators)) for i in range(cv)]
    order = sorted(range(len(tasks)), key=lambda t: (_COST[generators[tasks[t][1]]], t))
    out = Parallel(n_jobs=n_jobs)(
        delayed(_fold_task)(generators[j], probs[p]["X"], probs[p]["y"], *probs[p]["folds"][i], probs[p]["est"], ms,
                            a_pos, max_cycles, epochs, probs[p]["rs"] + 1000 * i + j, quality and i == 0,
                            probs[p]["base"][i], prune)
        for p, j, i in (tasks[t] for t in order)
    )
    res = [None] * len(tasks)
    for t, r in zip(order, out, strict=True):
        res[t] = r
    t_search = time.perf_counter() - t0
    results = []
    for p, pr in enumerate(probs):
        mine = [(tasks[t], res[t]) for t in range(len(tasks)) if tasks[t][0] == p]
        qual = {generators[j]: q for (_, j, _), (_, q, _) in mine if q is not None}
        rows = pd.DataFrame([r for _, (chunk, _, _) in mine for r in chunk], columns=["generator", "m", "alpha", "mse"])
        # a setting skipped (pruned) in any fold has no CV estimate: NaN, not eligible
        curves = rows.groupby(["generator", "m", "alpha"], as_index=False).agg(
            cv_mse=("mse", lambda v: float(v.mean()) if v.notna().all() else np.nan), cv_mse_std=("mse", "std"),
            n_pruned=("mse", lambda v: int(v.isna().sum())))
        baseline = float(np.mean(pr["base"]))
        base_rows = pd.DataFrame([{"generator": g, "m": m, "alpha": 0.0, "cv_mse": baseline,
                                   "cv_mse_std": float(np.std(pr["base"], ddof=1)), "n_pruned": 0}
                                  for g in generators for m in ms])
        curves = pd.concat([base_rows, curves], ignore_index=True).sort_values(["generator", "m", "alpha"]).reset_index(drop=True)
        aug = curves[(curves["alpha"] > 0) & curves["cv_mse"].notna()]
        if len(aug):
            b = aug.loc[aug["cv_mse"].idxmin()]
            best = {"generator": str(b["generator"]), "m": int(b["m"]), "alpha": float(b["alpha"]),
                    "cv_mse": float(b["cv_mse"]), "improvement": float(1 - b["cv_mse"] / baseline) if baseline > 0 else 0.0}
        else:
            best = {"generator": None, "m": 0, "alpha": 0.0, "cv_mse": baseline, "improvement": 0.0}
        use = best["generator"] is not None and best["improvement"] >= max(min_improvement, 1e-12)
        results.append(AugmentationResult(
            curves=curves, baseline_mse=baseline, best=best, use_augmentation=bool(use), quality=qual,
            timings={"search_s": t_search, "task_s": float(sum(r[2] for _, r in mine)), "final_generators_s": 0.0},
        ))
    # the rows each final model uses: its chosen generator trained on all its rows (pooled too)
    final = [p for p, r in enumerate(results) if r.use_augmentation]
    fits = Parallel(n_jobs=n_jobs)(
        delayed(_final_task)(results[p].best["generator"], probs[p]["X"], probs[p]["y"], max_cycles, epochs,
                             probs[p]["rs"] + 7 + generators.index(results[p].best["generator"]), max(ms))
        for p in final
    ) if final else []
    for p, (rows_, sec) in zip(final, fits, strict=True):
        results[p].synthetic[results[p].best["generator"]] = rows_
        results[p].timings["final_generators_s"] = sec
    return results


def _quality(gen: SyntheticGenerator, real: pd.DataFrame, synth: pd.DataFrame) -> float:
    """SDV quality score over the columns that vary in the real data."""
    import warnings

    from sdv.evaluation import evaluate_quality
    from sdv.metadata import Metadata

    cols = [c for c in real.columns if real[c].nunique() > 1]
    md = Metadata()
    md.add_table("doe")
    for c in cols:
        md.add_column(c, table_name="doe", sdtype="numerical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = evaluate_quality(real[cols].reset_index(drop=True), synth[cols].reset_index(drop=True), md, verbose=False)
    return float(rep.get_score())
