"""The compiled tree-ensemble path equals the member-by-member path (crystalloop.digital_twin.compiled)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crystalloop.digital_twin import MonteCarloCVRegressor, WeightedERMRegressor, make_estimator
from crystalloop.digital_twin import compiled as compiled_mod
from crystalloop.digital_twin.compiled import compile_members, compiled_prediction


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 3, (n, 6)) * [1, 10, 100, 1, 1, 1]
    y = 3 * X[:, 0] + 0.05 * X[:, 1] - 0.01 * X[:, 2] + rng.normal(0, 0.1, n)
    Xq = rng.uniform(-2, 4, (300, 6)) * [1, 10, 100, 1, 1, 1]
    return X, y, np.vstack([Xq, X])  # fresh rows and the training rows (values on the split points)


def _on_the_splits(compiled, n=400, seed=0):
    """Rows whose every value is a raw split threshold or the double just above or below one: where a
    rounding difference in the scaler or in float32 would send a row the other way."""
    rng = np.random.default_rng(seed)
    cols = []
    for u in compiled.thresholds:
        u = u[np.isfinite(u)]
        cand = np.concatenate([u, np.nextafter(u, np.inf), np.nextafter(u, -np.inf)]) if len(u) else np.zeros(1)
        cols.append(rng.choice(cand, n))
    return np.column_stack(cols)


FAMILIES = [
    ("xgb", {"n_estimators": 20, "max_depth": 3}),
    ("gbt", {"n_estimators": 20, "max_depth": 3}),
    ("rf", {"n_estimators": 10, "max_depth": 5}),
    ("rf", {"n_estimators": 10}),  # unpruned trees (depth ~ 10)
]


@pytest.mark.parametrize(("family", "params"), FAMILIES)
def test_compiled_equals_the_libraries_to_the_last_bit(family, params):
    X, y, Xq = _data()
    ens = MonteCarloCVRegressor(make_estimator(family, random_state=0, **params), n_splits=7, random_state=1).fit(X, y)
    compiled = compile_members(ens.estimators_, X.shape[1])
    assert compiled is not None and compiled.n_members == 7
    Xq = np.vstack([Xq, _on_the_splits(compiled)])
    with compiled_prediction(False):
        ref = ens.predict(Xq, return_std=True)
        P_ref = ens.member_predictions(Xq)
    P_api = np.vstack([e.predict(Xq) for e in ens.estimators_])  # the public API, member by member
    got = ens.predict(Xq, return_std=True)
    np.testing.assert_array_equal(P_ref, P_api)
    np.testing.assert_array_equal(compiled.member_predictions(Xq), P_api)
    np.testing.assert_array_equal(compiled.member_predictions(Xq, use_numba=False), P_api)  # numpy fallback
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-9, atol=0)


@pytest.mark.parametrize("member", [
    make_pipeline(StandardScaler(with_mean=False), RandomForestRegressor(n_estimators=5, random_state=0)),
    make_pipeline(StandardScaler(with_std=False), ExtraTreesRegressor(n_estimators=5, random_state=0)),
    RandomForestRegressor(n_estimators=5, min_samples_leaf=2, random_state=0),  # no scaler
])
def test_scaler_variants_and_bare_forests_compile_exactly(member):
    X, y, Xq = _data(seed=3)
    ens = MonteCarloCVRegressor(member, n_splits=4, random_state=0).fit(X, y)
    compiled = compile_members(ens.estimators_, X.shape[1])
    assert compiled is not None
    Xq = np.vstack([Xq, _on_the_splits(compiled, seed=1)])
    np.testing.assert_array_equal(compiled.member_predictions(Xq), np.vstack([e.predict(Xq) for e in ens.estimators_]))


def test_mixed_families_in_one_ensemble_and_threads_give_identical_results():
    X, y, Xq = _data(n=60, seed=4)
    Xq = np.repeat(Xq, 5, axis=0) + np.random.default_rng(0).normal(0, 0.01, (5 * len(Xq), 6))  # >= 1000 rows
    members = [MonteCarloCVRegressor(make_estimator(f, random_state=0, **p), n_splits=3, random_state=2).fit(X, y)
               .estimators_ for f, p in FAMILIES]
    estimators = [e for ms in members for e in ms]
    compiled = compile_members(estimators, X.shape[1])
    assert compiled is not None and compiled.n_members == len(estimators)
    P_api = np.vstack([e.predict(Xq) for e in estimators])
    np.testing.assert_array_equal(compiled.member_predictions(Xq), P_api)
    ens = MonteCarloCVRegressor(make_estimator("rf", random_state=0, n_estimators=8), n_splits=5, random_state=0,
                                n_jobs=1).fit(X, y)
    one = ens.predict(Xq, return_std=True)
    ens.n_jobs = 2  # numba row blocks on two threads
    two = ens.predict(Xq, return_std=True)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_without_numba_the_member_by_member_path_gives_the_same_results(monkeypatch):
    X, y, Xq = _data(seed=5)
    ens = MonteCarloCVRegressor(make_estimator("rf", random_state=0, n_estimators=6), n_splits=4, random_state=0).fit(X, y)
    with_numba = ens.predict(Xq, return_std=True)
    monkeypatch.setattr(compiled_mod, "have_numba", lambda: False)
    assert compile_members(ens.estimators_, X.shape[1]) is None
    fresh = MonteCarloCVRegressor(make_estimator("rf", random_state=0, n_estimators=6), n_splits=4,
                                  random_state=0).fit(X, y)  # compiled on first use: now it is not
    without = fresh.predict(Xq, return_std=True)
    np.testing.assert_allclose(without[0], with_numba[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(without[1], with_numba[1], rtol=1e-9, atol=0)


def test_weighted_erm_members_compile_and_other_kinds_do_not():
    X, y, Xq = _data(seed=2)
    member = WeightedERMRegressor(make_estimator("gbt", random_state=0, n_estimators=10), alpha=0.3,
                                  X_synthetic=X[:5] + 0.1, y_synthetic=y[:5])
    ens = MonteCarloCVRegressor(member, n_splits=4, random_state=0).fit(X, y)
    with compiled_prediction(False):
        ref = ens.predict(Xq)
    assert compile_members(ens.estimators_, 6) is not None
    np.testing.assert_allclose(ens.predict(Xq), ref, rtol=1e-12)
    svr = MonteCarloCVRegressor(make_estimator("svr"), n_splits=3, random_state=0).fit(X, y)
    lin = MonteCarloCVRegressor(LinearRegression(), n_splits=3, random_state=0).fit(X, y)
    for e in (svr, lin):
        assert compile_members(e.estimators_, 6) is None
        assert np.isfinite(e.predict(Xq)).all()  # the member-by-member path still serves them


def test_compiled_member_predictions_reject_a_wrong_shape():
    X, y, _ = _data()
    ens = MonteCarloCVRegressor(make_estimator("gbt", random_state=0, n_estimators=5), n_splits=3, random_state=0).fit(X, y)
    compiled = compile_members(ens.estimators_, 6)
    with pytest.raises(ValueError, match=r"X has shape \(4, 5\); expected \(n_rows, 6\)"):
        compiled.member_predictions(np.zeros((4, 5)))


def test_more_features_than_a_node_can_name_are_not_compiled():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(30, 300))
    y = X[:, 299] + rng.normal(0, 0.1, 30)
    ens = MonteCarloCVRegressor(make_estimator("rf", random_state=0, n_estimators=3), n_splits=2, random_state=0).fit(X, y)
    assert compile_members(ens.estimators_, 300) is None  # a node packs the feature in 8 bits
    np.testing.assert_array_equal(ens.member_predictions(X), np.vstack([e.predict(X) for e in ens.estimators_]))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), family=st.sampled_from(["xgb", "gbt", "rf"]),
       scale=st.sampled_from([1e-3, 1.0, 1e4]))
def test_compiled_member_predictions_equal_the_libraries_for_any_data(seed, family, scale):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 4)) * scale + rng.normal(size=4) * 10 * scale
    y = X @ rng.normal(size=4) + rng.normal(0, scale, 25)
    ens = MonteCarloCVRegressor(make_estimator(family, random_state=seed, n_estimators=5), n_splits=3,
                                random_state=seed).fit(X, y)
    compiled = compile_members(ens.estimators_, 4)
    Xq = np.vstack([rng.normal(size=(50, 4)) * scale * 2, X, _on_the_splits(compiled, n=50, seed=seed)])
    np.testing.assert_array_equal(compiled.member_predictions(Xq), np.vstack([e.predict(Xq) for e in ens.estimators_]))
