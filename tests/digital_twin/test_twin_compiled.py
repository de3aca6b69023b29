"""The compiled tree-ensemble path equals the member-by-member path (crystalloop.digital_twin.compiled)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from crystalloop.digital_twin import MonteCarloCVRegressor, WeightedERMRegressor, make_estimator
from crystalloop.digital_twin.compiled import compile_members, compiled_prediction


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 3, (n, 6)) * [1, 10, 100, 1, 1, 1]
    y = 3 * X[:, 0] + 0.05 * X[:, 1] - 0.01 * X[:, 2] + rng.normal(0, 0.1, n)
    Xq = rng.uniform(-2, 4, (300, 6)) * [1, 10, 100, 1, 1, 1]
    return X, y, np.vstack([Xq, X])  # fresh rows and the training rows (values on the split points)


@pytest.mark.parametrize(("family", "params", "atol"), [
    ("xgb", {"n_estimators": 20, "max_depth": 3}, 1e-5),  # XGBoost sums its leaves in float32 (|y| <= 10)
    ("gbt", {"n_estimators": 20, "max_depth": 3}, 1e-9),
    ("rf", {"n_estimators": 10, "max_depth": 5}, 1e-9),
])
def test_compiled_equals_member_by_member(family, params, atol):
    X, y, Xq = _data()
    ens = MonteCarloCVRegressor(make_estimator(family, random_state=0, **params), n_splits=7, random_state=1).fit(X, y)
    compiled = compile_members(ens.estimators_, X.shape[1])
    assert compiled is not None and compiled.n_members == 7
    with compiled_prediction(False):
        ref = ens.predict(Xq, return_std=True)
        P_ref = ens.member_predictions(Xq)
    got = ens.predict(Xq, return_std=True)
    np.testing.assert_allclose(compiled.member_predictions(Xq), P_ref, rtol=0, atol=atol)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=atol)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=10 * atol)


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
    deep = MonteCarloCVRegressor(make_estimator("rf", random_state=0, n_estimators=5), n_splits=3,
                                 random_state=0).fit(X, y)  # unpruned trees, deeper than HEAP_DEPTH
    for e in (svr, lin, deep):
        assert compile_members(e.estimators_, 6) is None
        assert np.isfinite(e.predict(Xq)).all()  # the member-by-member path still serves them
