"""FeatureGPRegressor / FeatureGPTwin: GP on physical profile features, features chosen by CV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crystalloop.digital_twin.design import DesignTwin
from crystalloop.digital_twin.features import SolubilityCurve, profile_features
from crystalloop.digital_twin.gp import FeatureGPRegressor, FeatureGPTwin
from crystalloop.errors import ConfigError, InsufficientDataError, SchemaError
from crystalloop.profiles import feature_names

SOL = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))
NAMES = feature_names(4)


def _recipes(n: int, seed: int) -> pd.DataFrame:
    """Linear cooling recipes (0 cycles) with random c0, seed loading, start, end and rate."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(0.0, index=range(n), columns=NAMES)
    X["c0_mg_g"] = rng.uniform(25, 50, n)
    X["seed_loading"] = rng.uniform(0.05, 0.15, n)
    X["t_start_c"] = rng.uniform(55, 70, n)
    X["n_segments"] = 1.0
    X["n_cycles"] = 0.0
    end = rng.uniform(2, 20, n)
    for k in range(1, 10):
        X[f"T{k}_c"] = end
    X["rate1_c_min"] = rng.uniform(0.05, 0.3, n)
    return X


def _target(X: pd.DataFrame) -> np.ndarray:
    """A smooth CQA driven by two physical features (cooling time and seed loading)."""
    F = profile_features(X, solubility=SOL)
    return 100 + 0.05 * F["cooling_time_min"].to_numpy() - 200 * F["seed_loading"].to_numpy()


def test_fits_and_predicts_with_std():
    X, Xt = _recipes(20, 0), _recipes(40, 1)
    m = FeatureGPRegressor(solubility=SOL, features="auto", max_features=2, random_state=0).fit(X, _target(X))
    mu, sd = m.predict(Xt, return_std=True)
    assert mu.shape == sd.shape == (40,)
    assert np.all(sd > 0)
    assert np.mean(np.abs(mu - _target(Xt))) < 0.2 * np.std(_target(Xt))
    assert 1 <= len(m.features_) <= 2
    assert m.selection_path_[0][0] == m.features_[0]


@pytest.mark.slow  # outer CV around the forward selection: minutes on a loaded 2-core machine
def test_same_seed_same_model():
    X = _recipes(15, 2)
    y = _target(X)
    a = FeatureGPRegressor(random_state=3, max_features=2).fit(X, y)
    b = FeatureGPRegressor(random_state=3, max_features=2).fit(X, y)
    assert a.features_ == b.features_ and a.strategy_ == b.strategy_
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert set(a.strategy_mae_) == {"all", "auto"}


def test_log_target_and_clip():
    X = _recipes(20, 4)
    y = np.clip(_target(X) - 60, 1, None)
    m = FeatureGPRegressor(features="all", log_target=True, clip=(0.0, 100.0), random_state=0).fit(X, y)
    mu, sd = m.predict(X, return_std=True)
    assert np.all((mu >= 0) & (mu <= 100)) and np.all(sd >= 0)


def test_errors():
    X = _recipes(12, 5)
    y = _target(X)
    with pytest.raises(ConfigError, match="unknown profile feature"):
        FeatureGPRegressor(features=["nope"]).fit(X, y)
    with pytest.raises(ConfigError, match="features must be"):
        FeatureGPRegressor(features="some").fit(X, y)
    with pytest.raises(ConfigError, match="positive targets"):
        FeatureGPRegressor(features="all", log_target=True).fit(X, y - 1000)
    with pytest.raises(SchemaError, match="missing/non-finite"):
        FeatureGPRegressor(features="all").fit(X, np.r_[y[:-1], np.nan])
    with pytest.raises(SchemaError, match="rows but y has"):
        FeatureGPRegressor(features="all").fit(X, y[:-1])
    with pytest.raises(InsufficientDataError, match="at least 5 rows"):
        FeatureGPRegressor(features="all").fit(X.iloc[:4], y[:4])


def test_twin_is_a_design_twin():
    X = _recipes(24, 6)
    table = X.assign(D50_um=_target(X), DoA_pct=np.clip(_target(X) - 80, 0, 100))
    table.loc[:3, "DoA_pct"] = np.nan  # a CQA measured in fewer runs
    tw = FeatureGPTwin(cqas=("D50_um", "DoA_pct"), solubility=SOL, random_state=0, features="all").fit(table)
    assert isinstance(tw, DesignTwin)
    f = tw.predict_frame(X.to_numpy()[:5])
    assert list(f.columns) == ["D50_um_mean", "D50_um_std", "DoA_pct_mean", "DoA_pct_std"]
    mu, sd = tw.predict(X.iloc[:5], return_std=True)
    assert mu.shape == sd.shape == (5, 2)
    assert len(tw.training_data_) == 24
    with pytest.raises(SchemaError, match="lacks columns"):
        FeatureGPTwin(cqas=("D50_um", "CSD_span")).fit(table)
