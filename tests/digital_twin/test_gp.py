"""FeatureGPRegressor / FeatureGPTwin: GP on physical profile features, features chosen by CV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crystalloop.digital_twin.design import DesignTwin
from crystalloop.digital_twin.features import SolubilityCurve, profile_features
from crystalloop.digital_twin.gp import FeatureGPRegressor, FeatureGPTwin
from crystalloop.errors import ConfigError, InsufficientDataError, ModelError, SchemaError
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


# ----------------------------------------------------------------------------- a first-class twin
def _table(n: int = 24, seed: int = 6) -> pd.DataFrame:
    X = _recipes(n, seed)
    rng = np.random.default_rng(seed)
    table = X.assign(D50_um=_target(X) + rng.normal(0, 0.5, n), DoA_pct=np.clip(_target(X) - 80, 0, 100))
    table.insert(0, "run_id", [f"R{i:02d}" for i in range(n)])
    return table


def _gp_twin(seed: int = 0) -> FeatureGPTwin:
    return FeatureGPTwin(cqas=("D50_um", "DoA_pct"), solubility=SOL, random_state=seed, features="all").fit(_table())


def test_save_load_gives_the_same_predictions(tmp_path):
    import json

    from crystalloop.digital_twin import load_twin

    tw = _gp_twin()
    tw.save(tmp_path / "tw")
    doc = json.loads((tmp_path / "tw" / "twin.json").read_text())
    assert doc["kind"] == "feature-gp" and doc["format_version"] == 1
    assert set(doc["files"]) == {"models/D50_um.json", "models/DoA_pct.json", "data/doe.csv"}
    state = json.loads((tmp_path / "tw" / "models" / "D50_um.json").read_text())
    assert state["gp"]["kernel"]["type"] == "Sum" and len(state["training"]["y"]) == 24
    assert state["params"]["solubility"]["coefficients"] == [8.0, 0.283, 0.00917]
    back = load_twin(tmp_path / "tw")
    assert isinstance(back, FeatureGPTwin) and back.cqas == ["D50_um", "DoA_pct"]
    Xt = _recipes(50, 11)
    m1, s1 = tw.predict(Xt, return_std=True)
    m2, s2 = back.predict(Xt, return_std=True)
    np.testing.assert_allclose(m2, m1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s2, s1, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(np.c_[m2, s2], np.c_[m1, s1])  # in fact bit-identical
    pd.testing.assert_frame_equal(back.predict_frame(Xt), tw.predict_frame(Xt))
    assert back.info_["D50_um"]["cv_mae"] == tw.info_["D50_um"]["cv_mae"]
    assert list(back.training_data_["run_id"]) == list(tw.training_data_["run_id"])
    np.testing.assert_array_equal(back.models_["D50_um"].loo_mean_, tw.models_["D50_um"].loo_mean_)


def test_same_data_and_seed_give_a_byte_identical_folder(tmp_path):
    _gp_twin(seed=4).save(tmp_path / "a")
    _gp_twin(seed=4).save(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(p) for p in files] == ["data/doe.csv", "models/D50_um.json", "models/DoA_pct.json", "twin.json"]
    for p in files:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes(), p


def test_tampered_truncated_or_missing_files_are_refused_by_name(tmp_path):
    import hashlib
    import json
    import shutil

    from crystalloop.digital_twin import load_twin
    from crystalloop.errors import ModelError, UntrustedModelError

    _gp_twin().save(tmp_path / "ok")

    def copy(name):
        shutil.copytree(tmp_path / "ok", tmp_path / name)
        return tmp_path / name

    d = copy("truncated")
    p = d / "models" / "D50_um.json"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(UntrustedModelError, match=r"models/D50_um\.json does not match the SHA-256 recorded in .*twin\.json"):
        load_twin(d)
    d = copy("edited")
    p = d / "data" / "doe.csv"
    p.write_text(p.read_text().replace("R00", "R99"))
    with pytest.raises(UntrustedModelError, match=r"data/doe\.csv does not match the SHA-256"):
        load_twin(d)
    d = copy("missing")
    (d / "models" / "DoA_pct.json").unlink()
    with pytest.raises(ModelError, match=r"models/DoA_pct\.json is missing"):
        load_twin(d)
    d = copy("badmeta")
    (d / "twin.json").write_text((d / "twin.json").read_text()[:100])
    with pytest.raises(ModelError, match=r"twin\.json is not valid JSON"):
        load_twin(d)
    # a model file rewritten with a foreign kernel type and its hash updated: still refused
    d = copy("kernel")
    p = d / "models" / "D50_um.json"
    state = json.loads(p.read_text())
    state["gp"]["kernel"]["k2"]["type"] = "os.system"
    p.write_text(json.dumps(state))
    doc = json.loads((d / "twin.json").read_text())
    doc["files"]["models/D50_um.json"] = hashlib.sha256(p.read_bytes()).hexdigest()
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(UntrustedModelError, match=r"models/D50_um\.json: kernel entry .* is not one of"):
        load_twin(d)
    doc["files"]["../outside.json"] = "0" * 64
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(UntrustedModelError, match="lists the files"):
        load_twin(d)
    with pytest.raises(ModelError, match="is not a saved twin"):
        load_twin(tmp_path / "nowhere")


def test_leave_one_out_scores_equal_explicit_refits():
    from sklearn.gaussian_process import GaussianProcessRegressor

    tw = _gp_twin()
    m = tw.models_["D50_um"]
    X, yn = m.gp_.X_train_, m.gp_.y_train_
    mean, scale = m.gp_._y_train_mean, m.gp_._y_train_std
    t = yn * scale + mean
    mu, sd = np.empty(len(t)), np.empty(len(t))
    for i in range(len(t)):  # the fitted kernel, refit without row i; prior mean = mean of the other rows
        keep = np.arange(len(t)) != i
        m_i = t[keep].mean()
        g = GaussianProcessRegressor(m.gp_.kernel_, optimizer=None).fit(X[keep], (t[keep] - m_i) / scale)
        a, b = g.predict(X[i:i + 1], return_std=True)
        mu[i], sd[i] = m_i + scale * a[0], scale * b[0]
    np.testing.assert_allclose(m.loo_mean_, mu, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(m.loo_std_, sd, rtol=1e-6)
    info = tw.info_["D50_um"]
    y = tw.training_data_["D50_um"].to_numpy()
    assert info["cv_mae"] == pytest.approx(np.mean(np.abs(y - m.loo_mean_)))
    assert info["n_rows"] == 24 and info["coverage_95"] == pytest.approx(np.mean(np.abs(y - m.loo_mean_) <= 1.96 * m.loo_std_), abs=1e-12)
    assert 0.8 < info["cv_r2"] <= 1.0


def test_useless_cqa_warns_and_the_summary_says_so():
    from crystalloop.errors import TwinWarning

    table = _table()
    table["DoA_pct"] = np.random.default_rng(0).normal(30, 5, len(table))  # nothing to learn
    with pytest.warns(TwinWarning, match=r"DoA_pct: cross-validated R² -?\d\.\d\d <= 0 - the model is no better than predicting the mean"):
        tw = FeatureGPTwin(cqas=("D50", "DoA"), random_state=0, features="all").fit(table)
    assert tw.cqas == ["D50_um", "DoA_pct"]  # short names resolved
    s = tw.summary().set_index("cqa")
    assert s.loc["DoA_pct", "cv_r2"] <= 0 and "no better than predicting the mean" in s.loc["DoA_pct", "warning"]
    assert s.loc["D50_um", "warning"] == "" or "intervals" in s.loc["D50_um", "warning"]


def test_solubility_curve_from_text_list_and_file(tmp_path):
    from crystalloop.digital_twin.gp import solubility_curve

    a = solubility_curve("8.0, 0.283, 0.00917")
    assert a == SOL and solubility_curve([8.0, 0.283, 0.00917]) == SOL and solubility_curve(None) is None
    pd.DataFrame({"T_c": [10.0, 30.0, 50.0], "solubility_mg_g": [11.7, 24.7, 45.1]}).to_csv(tmp_path / "s.csv", index=False)
    b = solubility_curve(str(tmp_path / "s.csv"))
    assert b.table_t_c == (10.0, 30.0, 50.0) and float(b(30.0)) == pytest.approx(24.7)
    with pytest.raises(ConfigError, match=r"--solubility '8,x' is neither comma-separated polynomial coefficients"):
        solubility_curve("8,x", parameter="--solubility")
    with pytest.raises(ConfigError, match="neither"):
        solubility_curve(str(tmp_path / "nope.csv"))
    tw = FeatureGPTwin(("D50_um",), solubility=str(tmp_path / "s.csv"), features="all", random_state=0).fit(_table())
    assert "T_sat_c" in tw.models_["D50_um"].features_ and tw.solubility == str(tmp_path / "s.csv")
    assert tw.metadata_["settings"]["solubility"]["table_t_c"] == [10.0, 30.0, 50.0]


def test_profile_only_twin_without_solubility_round_trips(tmp_path):
    from crystalloop.digital_twin import load_twin

    tw = FeatureGPTwin(cqas=("D50_um",), random_state=0, features="all").fit(_table())
    assert not any(f.startswith("T_sat") for f in tw.models_["D50_um"].features_)
    back = load_twin(tw.save(tmp_path / "p"))
    X = _recipes(5, 3).to_numpy()
    np.testing.assert_allclose(back.predict(X), tw.predict(X), rtol=0, atol=1e-10)
    with pytest.raises(ModelError, match=r"X has shape \(5, 3\)"):
        back.predict(X[:, :3])


def test_selection_score_equals_scikit_learns_gp_leave_one_out():
    """The forward selection's fast isotropic fit finds scikit-learn's hyperparameters: same LOO MAE."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    X = _recipes(20, 8)
    y = _target(X) + np.random.default_rng(2).normal(0, 1.0, 20)
    for cols in (["cooling_time_min"], ["seed_loading", "T_sat_c", "c0_mg_g"]):
        m = FeatureGPRegressor(solubility=SOL, features=cols).fit(X, y)
        A = profile_features(X, solubility=SOL)[cols].to_numpy()
        A = (A - A.mean(0)) / A.std(0)
        kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(1.0, (5e-2, 1e2), nu=2.5) + WhiteKernel(1e-2, (1e-5, 1.0)))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(A, y)
        Kinv = np.linalg.inv(gp.kernel_(A) + 1e-10 * np.eye(20))
        yn = (y - y.mean()) / y.std()
        loo = y - (Kinv @ yn) / np.diag(Kinv) * y.std()
        assert m.cv_mae_ == pytest.approx(np.mean(np.abs(loo - y)), rel=1e-8)


def test_load_twin_opens_both_kinds_of_folder(tmp_path):
    from crystalloop.digital_twin import DigitalTwin, fit_twin, load_twin
    from crystalloop.digital_twin.design import load_twin as design_load_twin

    table = _table()
    fit_twin(table, cqas=["D50_um"], families=("svr",), grid="fast", n_splits=3, augment=False,
             random_state=0).save(tmp_path / "ens")
    _gp_twin().save(tmp_path / "gp")
    assert isinstance(load_twin(tmp_path / "ens"), DigitalTwin)
    assert isinstance(load_twin(tmp_path / "gp"), FeatureGPTwin)
    assert isinstance(design_load_twin(str(tmp_path / "gp")), FeatureGPTwin)  # what `crystalloop design` calls
    with pytest.raises(ModelError, match="is not a saved twin"):
        load_twin(tmp_path)


def test_prediction_equals_scikit_learns_gp():
    """The fused prediction path (one matrix product for the distances, the inverse Cholesky factor for
    the std) equals GaussianProcessRegressor.predict to float rounding, new rows and training rows alike."""
    tw = _gp_twin()
    Xt = pd.concat([_recipes(200, 12), _table()[NAMES]], ignore_index=True)
    F = profile_features(Xt, solubility=SOL)
    for m in tw.models_.values():
        mu, sd = m.predict(Xt, return_std=True)
        a, b = m.gp_.predict((F[m.features_].to_numpy() - m.mean_) / m.scale_, return_std=True)
        a, b = m._back(a, b)
        np.testing.assert_allclose(mu, a, rtol=1e-10, atol=1e-10 * np.std(a))
        np.testing.assert_allclose(sd, b, rtol=1e-8)
