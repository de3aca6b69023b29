"""SDV generators with the profile-feasibility constraint (sdv.cag) and the augmentation search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _twin_data import make_doe

from crystalloop.digital_twin.augment import search_augmentation
from crystalloop.digital_twin.models import make_estimator
from crystalloop.digital_twin.synthetic import (
    SyntheticGenerator,
    _decode,
    _encode,
    profile_validity,
)
from crystalloop.errors import ConfigError, ModelError
from crystalloop.profiles import DEFAULT_BOUNDS, feature_names

FN = feature_names(4)


def test_encode_decode_round_trip_is_exact():
    df = make_doe(24)[FN + ["D50_um"]]
    enc = _encode(df, 4, DEFAULT_BOUNDS)
    assert "n_segments" in enc and not any(c.startswith("T") for c in enc.columns)
    assert enc.filter(like="frac").stack().between(0, 1).all()
    dec = _decode(enc, 4, DEFAULT_BOUNDS, {})
    np.testing.assert_allclose(dec[FN].to_numpy(), df[FN].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(dec["D50_um"], df["D50_um"])


def test_decode_of_arbitrary_values_is_always_feasible():
    """Whatever a generator samples in the encoded space maps to a feasible profile (Eqs. 2-4)."""
    rng = np.random.default_rng(0)
    n = 300
    enc = pd.DataFrame({"c0_mg_g": rng.uniform(0, 80, n), "seed_loading": rng.uniform(-1, 1, n),
                        "t_start_c": rng.uniform(-10, 90, n), "n_segments": rng.integers(0, 12, n).astype(str)})
    for k in range(1, 10):
        enc[f"frac{k}"] = rng.uniform(-0.5, 1.5, n)
        enc[f"urate{k}"] = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(-0.5, 1.5, n))
        enc[f"hold{k}"] = rng.uniform(-5, 50, n)
    dec = _decode(enc, 4, DEFAULT_BOUNDS, {"urate1": 0.5})
    assert profile_validity(dec, 4).all()
    assert set(dec["n_segments"].astype(int)) <= set(range(1, 10))


def test_gaussian_copula_samples_are_feasible_and_in_range():
    df = make_doe(24)[FN + ["D50_um"]]
    gen = SyntheticGenerator("gaussian_copula", random_state=3).fit(df)
    s = gen.sample(40)
    assert list(s.columns) == FN + ["D50_um"]
    assert profile_validity(s, 4).all()
    assert s["D50_um"].between(df["D50_um"].min() - 1e-9, df["D50_um"].max() + 1e-9).all()
    assert set(s["n_segments"].astype(int)) <= set(df["n_segments"].astype(int))
    pd.testing.assert_frame_equal(s, gen.sample(40))  # seeded


@pytest.mark.slow
def test_quality_score_and_unconstrained_comparison():
    df = make_doe(24)[FN + ["D50_um"]]
    gen = SyntheticGenerator("gaussian_copula", random_state=3).fit(df)
    assert 0.5 < gen.quality_score(gen.sample(40)) <= 1.0


@pytest.mark.slow
def test_unconstrained_generator_can_break_the_profiles():
    df = make_doe(24)[FN + ["D50_um"]]
    s = SyntheticGenerator("gaussian_copula", constrained=False, random_state=3).fit(df).sample(40)
    assert not profile_validity(s, 4).all()


def test_generator_bad_input():
    df = make_doe(6)[FN + ["D50_um"]]
    with pytest.raises(ConfigError, match="Unknown generator 'gan'"):
        SyntheticGenerator("gan").fit(df)
    with pytest.raises(ConfigError, match="epochs must be a whole number >= 1"):
        SyntheticGenerator("tvae", epochs=0).fit(df)
    with pytest.raises(ModelError, match=r"lacks feature column\(s\) \['hold9_min'\]"):
        SyntheticGenerator().fit(df.drop(columns=["hold9_min"]))
    with pytest.raises(ModelError, match="not fitted"):
        SyntheticGenerator().sample(3)


def test_search_rejects_bad_grid():
    df = make_doe(12)
    X, y = df[FN].to_numpy(), df["D50_um"].to_numpy()
    est = make_estimator("svr", kernel="linear")
    with pytest.raises(ConfigError, match=r"alpha must lie in \[0, 1\]"):
        search_augmentation(X, y, est, alphas=[0.2, 1.3])
    with pytest.raises(ConfigError, match="Unknown generator 'gan'"):
        search_augmentation(X, y, est, generators=["gan"])
    with pytest.raises(ModelError, match="needs at least 6 rows"):
        search_augmentation(X[:5], y[:5], est, generators=["gaussian_copula"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ctgan", "tvae"])
def test_neural_generators_feasible(kind):
    df = make_doe(20)[FN + ["D50_um"]]
    s = SyntheticGenerator(kind, epochs=5, random_state=0).fit(df).sample(20)
    assert profile_validity(s, 4).all()


@pytest.mark.slow
def test_search_augmentation_curves_and_decision():
    df = make_doe(24, noise=2.0)
    X, y = df[FN].to_numpy(), df["D50_um"].to_numpy()
    res = search_augmentation(X, y, make_estimator("svr", kernel="linear", C=10.0), generators=["gaussian_copula"],
                              n_synthetic=[5, 25], alphas=[0.0, 0.3, 0.9], cv=3, quality=True, random_state=0)
    assert len(res.curves) == 2 * 3
    base = res.curves[res.curves["alpha"] == 0]["cv_mse"]
    assert np.allclose(base, res.baseline_mse)
    assert res.use_augmentation == (res.best["improvement"] >= 0.05)
    assert 0 < res.quality["gaussian_copula"] <= 1


@pytest.mark.slow
def test_pooled_search_equals_separate_searches():
    """Pooling several CQAs' tasks in one joblib call (longest first) changes no result."""
    from crystalloop.digital_twin.augment import search_augmentation_many

    df = make_doe(24, noise=2.0)
    X = df[FN].to_numpy()
    kw = dict(generators=["gaussian_copula"], n_synthetic=[5, 10], alphas=[0.2, 0.6], cv=3, quality=False)
    probs = [(X, df["D50_um"].to_numpy(), make_estimator("svr", kernel="linear", C=10.0), 0),
             (X[:18], df["D50_um"].to_numpy()[:18] * 0.5 + 3, make_estimator("rf", n_estimators=5, random_state=0), 1)]
    pooled = search_augmentation_many(probs, n_jobs=2, **kw)
    for (Xp, yp, est, rs), res in zip(probs, pooled, strict=True):
        one = search_augmentation(Xp, yp, est, random_state=rs, **kw)
        pd.testing.assert_frame_equal(res.curves, one.curves)
        assert res.best == one.best and res.use_augmentation == one.use_augmentation
        for g in one.synthetic:
            np.testing.assert_array_equal(res.synthetic[g][0], one.synthetic[g][0])
    with pytest.raises(ModelError, match="at least 6 rows"):
        search_augmentation_many([(X[:4], df["D50_um"].to_numpy()[:4], probs[0][2], 0)], **kw)


def test_fold_task_prunes_rising_alpha_scan_only_when_clearly_worse():
    """The α scan of an m stops once the fold MSE exceeds prune × baseline and still rises."""
    from crystalloop.digital_twin.augment import _fold_task, search_augmentation_many

    df = make_doe(24, noise=2.0)
    X, y = df[FN].to_numpy(), df["D50_um"].to_numpy()
    tr, va = np.arange(16), np.arange(16, 24)
    est = make_estimator("svr", kernel="linear", C=10.0)
    alphas = [0.2, 0.5, 0.8, 1.0]
    full, _, _ = _fold_task("gaussian_copula", X, y, tr, va, est, [5, 25], alphas, 4, 50, 0)
    mse = {(m, a): v for _, m, a, v in full}
    assert np.isfinite(list(mse.values())).all()
    base = min(mse.values()) / 1.5  # a baseline the synthetic-heavy fits exceed
    cut, _, _ = _fold_task("gaussian_copula", X, y, tr, va, est, [5, 25], alphas, 4, 50, 0, base_mse=base, prune=1.0)
    for m in (5, 25):
        seq = [mse[(m, a)] for a in alphas]
        got = [v for _, mm, _, v in cut if mm == m]
        stop = next((k for k in range(1, len(seq)) if seq[k] > base and seq[k] >= seq[k - 1]), None)
        n_eval = len(seq) if stop is None else stop + 1
        np.testing.assert_allclose(got[:n_eval], seq[:n_eval])  # evaluated ones are unchanged
        assert np.isnan(got[n_eval:]).all()
    assert np.isnan([v for *_, v in cut]).any()  # this data does rise past the limit
    huge, _, _ = _fold_task("gaussian_copula", X, y, tr, va, est, [5], alphas, 4, 50, 0, base_mse=base, prune=1e9)
    assert np.isfinite([v for *_, v in huge]).all()
    with pytest.raises(ConfigError, match="prune must be None or a number >= 1"):
        search_augmentation_many([(X, y, est, 0)], prune=0.5)
