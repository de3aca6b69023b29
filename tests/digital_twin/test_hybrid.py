"""Grey-box kinetic model and the hybrid GP twin (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crystalloop.digital_twin.features import SolubilityCurve
from crystalloop.digital_twin.hybrid import HybridGPRegressor, HybridTwin
from crystalloop.digital_twin.kinetic import (
    DEFAULT_THETA,
    KINETIC_FEATURES,
    KINETIC_PARAMS,
    THETA_BOUNDS,
    KineticModel,
    kinetic_features,
)
from crystalloop.errors import ConfigError, InsufficientDataError, SchemaError
from crystalloop.profiles import Segment, ThermocycleProfile, feature_names, profiles_to_frame

SOL = SolubilityCurve(coefficients=(8.0, 0.283, 0.00917))  # mg/g solvent, T in °C
FN = feature_names(4)
TRUE = np.array([0.3, 1.2, 40.0, 5.0, 5.0, 1.5, 0.3])  # constants of the synthetic truth
FAST = dict(n_steps=60, de_popsize=4, de_maxiter=6, n_fits=1)


def _recipes(n: int, seed: int = 0) -> pd.DataFrame:
    """Feasible recipes of 0–2 cycles inside the DoE's bounds."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t0 = float(rng.uniform(55, 70))
        segs = [Segment(float(rng.uniform(10, 30)), float(rng.uniform(0.05, 0.3)))]
        for _ in range(i % 3):
            top = float(min(segs[-1].target_c + rng.uniform(5, 25), 65.0))
            segs += [Segment(top, float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, 30))),
                     Segment(float(rng.uniform(0, top - 5)), float(rng.uniform(0.05, 0.3)))]
        out.append(ThermocycleProfile(float(rng.uniform(25, 55)), float(rng.uniform(0.05, 0.15)), t0, tuple(segs)))
    return profiles_to_frame(out, 4)


def test_kinetic_features_shapes_and_physics():
    X = _recipes(12)
    F = kinetic_features(X, DEFAULT_THETA, solubility=SOL, n_steps=80)
    assert list(F.columns) == list(KINETIC_FEATURES) and len(F) == 12
    assert np.all(np.isfinite(F.to_numpy()))
    # the solute never goes below the solubility at the end temperature: yield <= the theoretical one
    T_end = X["T1_c"].where(X["n_segments"] == 1, X["T3_c"]).where(X["n_segments"] != 5, X["T5_c"]).to_numpy()
    assert np.all(F["kin_yield"].to_numpy() <= 1 - SOL(T_end) / X["c0_mg_g"].to_numpy() + 1e-9)
    assert np.all((F["kin_seed_survival"] >= 0) & (F["kin_seed_survival"] <= 1 + 1e-9))
    assert np.all(F["kin_d50_um"] > 0)
    assert np.all(F["kin_sigma2_int_last_h"] >= 0)
    assert np.all((F["kin_mass_frac_last"] >= 0) & (F["kin_mass_frac_last"] <= 1 + 1e-9))


def test_growth_only_grows_seeds_by_mass_balance():
    """No nucleation, fast growth: all the yield lands on the seeds, D50 scales as (1 + yield/seed)^(1/3)."""
    p = ThermocycleProfile(40.0, 0.1, 60.0, (Segment(10.0, 0.1),))
    theta = np.array([2.0, 1.0, 0.0, -2.0, 8.0, 1.0, 0.0])  # k_b = 1e-2, order 8: no nuclei
    F = kinetic_features(profiles_to_frame([p], 4), theta, solubility=SOL, n_steps=200, seed_spread=0.0).iloc[0]
    crystallized = 40.0 - float(SOL(10.0))
    assert F["kin_yield"] == pytest.approx(crystallized / 40.0, rel=1e-3)
    assert F["kin_d50_um"] == pytest.approx(60.0 * (1 + crystallized / (0.1 * 40.0)) ** (1 / 3), rel=1e-3)
    assert F["kin_nuclei_mass_frac"] < 1e-3 and F["kin_seed_survival"] == pytest.approx(1.0)


def test_heating_above_saturation_loses_the_seeds():
    keep = ThermocycleProfile(40.0, 0.1, 60.0, (Segment(20.0, 0.2), Segment(30.0, 1.0, 10.0), Segment(10.0, 0.2)))
    lose = ThermocycleProfile(40.0, 0.1, 60.0, (Segment(20.0, 0.2), Segment(60.0, 1.0, 30.0), Segment(10.0, 0.2)))
    F = kinetic_features(profiles_to_frame([keep, lose], 4), DEFAULT_THETA, solubility=SOL)
    assert F["kin_seeds_lost"].tolist() == [0.0, 1.0]
    assert F["kin_dissolved_mass_frac"].iloc[1] > F["kin_dissolved_mass_frac"].iloc[0]


def test_fit_recovers_the_constants_of_its_own_model():
    X = _recipes(24, seed=1)
    y = kinetic_features(X, TRUE, solubility=SOL, n_steps=60)["kin_d50_um"].to_numpy()
    m = KineticModel(SOL, random_state=0, **FAST).fit(X, y)
    assert m.rmse_log_ < 0.02  # reproduces its own data
    Xt = _recipes(10, seed=2)
    yt = kinetic_features(Xt, TRUE, solubility=SOL, n_steps=60)["kin_d50_um"].to_numpy()
    assert np.max(np.abs(np.log(m.predict(Xt) / yt))) < 0.05  # and generalizes
    for name in ("log10_kd", "ln_size_factor"):  # the well-determined constants
        j = KINETIC_PARAMS.index(name)
        assert m.theta_[j] == pytest.approx(TRUE[j], abs=0.3)
    lo, hi = np.array(THETA_BOUNDS).T
    assert np.all((m.theta_ >= lo) & (m.theta_ <= hi))


def test_kinetic_model_errors():
    X = _recipes(6)
    with pytest.raises(SchemaError, match="solubility curve"):
        KineticModel(None).fit(X, np.full(6, 100.0))
    with pytest.raises(SchemaError, match="finite and positive"):
        KineticModel(SOL).fit(X, np.r_[np.full(5, 100.0), -1.0])
    with pytest.raises(InsufficientDataError, match="at least 5 rows"):
        KineticModel(SOL).fit(X.iloc[:3], np.full(3, 100.0))
    with pytest.raises(SchemaError, match="recipe columns"):
        kinetic_features(X.to_numpy()[:, :10], DEFAULT_THETA, solubility=SOL)


@pytest.fixture(scope="module")
def doe() -> pd.DataFrame:
    X = _recipes(20, seed=3)
    K = kinetic_features(X, TRUE, solubility=SOL, n_steps=60)
    t = X.copy()
    t["D50_um"] = K["kin_d50_um"].to_numpy() * np.exp(np.random.default_rng(0).normal(0, 0.03, len(X)))
    t["DoA_pct"] = np.clip(60 * K["kin_sigma_max"].to_numpy(), 0, 100)
    t.loc[::3, "DoA_pct"] = np.nan  # measured in part, as in the shipped DoE
    return t


@pytest.fixture(scope="module")
def twin(doe) -> HybridTwin:
    return HybridTwin(("D50_um", "DoA_pct"), solubility=SOL, kinetic_params=FAST, random_state=0).fit(doe)


def test_twin_predictions_finite_in_range_and_reproducible(twin, doe):
    Xt = _recipes(15, seed=4)
    mu, sd = twin.predict(Xt, return_std=True)
    assert mu.shape == sd.shape == (15, 2)
    assert np.all(np.isfinite(mu)) and np.all(sd > 0)
    assert np.all(mu[:, 0] > 0) and np.all((mu[:, 1] >= 0) & (mu[:, 1] <= 100))
    again = HybridTwin(("D50_um", "DoA_pct"), solubility=SOL, kinetic_params=FAST, random_state=0).fit(doe)
    np.testing.assert_array_equal(again.predict(Xt), mu)
    np.testing.assert_array_equal(again.kinetic_.theta_, twin.kinetic_.theta_)
    f = twin.predict_frame(Xt[FN].to_numpy())
    assert list(f.columns) == ["D50_um_mean", "D50_um_std", "DoA_pct_mean", "DoA_pct_std"]
    np.testing.assert_allclose(f["D50_um_mean"], mu[:, 0])
    assert list(twin.training_data_.columns) == [*FN, "D50_um", "DoA_pct"] and twin.max_cycles == 4
    assert twin.feature_names == FN
    # the D50 model is close to the truth it was generated from (3 % noise)
    yt = kinetic_features(Xt, TRUE, solubility=SOL, n_steps=60)["kin_d50_um"].to_numpy()
    assert np.median(np.abs(mu[:, 0] / yt - 1)) < 0.1


def test_twin_shares_one_kinetic_model(twin):
    assert twin.models_["DoA_pct"].kinetic_ is not twin.models_["D50_um"].kinetic_
    np.testing.assert_array_equal(twin.models_["DoA_pct"].kinetic_.theta_, twin.kinetic_.theta_)
    assert any(c.startswith("kin_") for c in twin.models_["DoA_pct"].features_)


def test_without_solubility_falls_back_to_profile_features(doe):
    tw = HybridTwin(("D50_um", "DoA_pct"), random_state=0).fit(doe)
    assert tw.kinetic_ is None
    assert not any(c.startswith("kin_") for m in tw.models_.values() for c in m.features_)
    mu, sd = tw.predict(_recipes(5, seed=5), return_std=True)
    assert np.all(np.isfinite(mu)) and np.all(sd > 0) and np.all(mu[:, 0] > 0)


def test_without_the_size_cqa_no_kinetic_model(doe):
    tw = HybridTwin(("DoA_pct",), solubility=SOL, random_state=0).fit(doe)
    assert tw.kinetic_ is None and tw.models_["DoA_pct"].kinetic_ is None
    assert np.all(np.isfinite(tw.predict(_recipes(4, seed=7))))


def test_regressor_errors(doe):
    X, y = doe[FN], doe["D50_um"].to_numpy()
    with pytest.raises(ConfigError, match="mean must be"):
        HybridGPRegressor(SOL, mean="linear").fit(X, y)
    with pytest.raises(ConfigError, match="features must be one of"):
        HybridGPRegressor(SOL, features="some", kinetic_params=FAST).fit(X, y)
    with pytest.raises(ConfigError, match="unknown feature"):
        HybridGPRegressor(SOL, features=["nope"], kinetic_theta=TRUE).fit(X, y)
    with pytest.raises(ConfigError, match="positive size target"):
        HybridGPRegressor(SOL, mean="kinetic").fit(X, y - 1000.0)
    with pytest.raises(SchemaError, match="missing/non-finite"):
        HybridGPRegressor(SOL).fit(X, np.r_[y[:-1], np.nan])
    with pytest.raises(SchemaError, match="lacks columns"):
        HybridTwin(("D50_um",)).fit(doe.drop(columns=["T2_c"]))


def test_noise_grows_with_the_noise_feature(twin, doe):
    m = twin.models_["D50_um"]
    assert m.noise_feature == "kin_sigma_max" and m.noise_ab_[1] >= 0
    F = m.feature_table(_recipes(30, seed=6))
    _, sd = m.predict_table(F, return_std=True)
    mu = m.predict_table(F)
    rel = sd / mu  # the relative std follows the peak supersaturation (b >= 0)
    order = np.argsort(F["kin_sigma_max"].to_numpy())
    assert rel[order[-1]] >= rel[order[0]] - 1e-12
    with pytest.raises(ConfigError, match="unknown noise_feature"):
        HybridGPRegressor(SOL, mean="kinetic", kinetic_theta=TRUE, noise_feature="nope",
                          kinetic_params=FAST).fit(doe[FN], doe["D50_um"].to_numpy())


#: D50 (µm), seed survival and yield of the numpy cohort model (before the compiled loop, 2026-12-03)
#: for _recipes(5, seed=11) and a recipe whose heating dissolves the seeds, n_steps=80, constants TRUE
_REF = {
    "kin_d50_um": [92.7370186685942, 139.3879780426506, 167.11773909633828, 144.5472834688526, 127.74632829494145,
                   45.58817061217396],
    "kin_seed_survival": [1.0, 1.0, 1.0, 1.0, 0.6834077155974583, 0.0],
    "kin_yield": [0.0726963012069276, 0.46055751336723605, 0.79056172661187, 0.7088747735205614, 0.6958121600979076,
                  0.7003215944228136],
    "kin_log_number": [4.671891697241705, 5.529721537003164, 5.141776531913971, 4.6683042900696305, 4.828482908002608,
                       6.23931430337023],
}


@pytest.mark.parametrize("use_numba", [True, False])
def test_compiled_loop_equals_the_numpy_reference(use_numba):
    lose = ThermocycleProfile(40.0, 0.1, 60.0, (Segment(20.0, 0.2), Segment(60.0, 1.0, 30.0), Segment(10.0, 0.2)))
    X = pd.concat([_recipes(5, seed=11), profiles_to_frame([lose], 4)], ignore_index=True)
    F = kinetic_features(X, TRUE, solubility=SOL, n_steps=80, use_numba=use_numba)
    for c, ref in _REF.items():
        np.testing.assert_allclose(F[c].to_numpy(), ref, rtol=1e-9, atol=1e-12, err_msg=c)


def test_compiled_loop_equals_numpy_on_many_recipes():
    X = _recipes(60, seed=5)
    for theta in (DEFAULT_THETA, TRUE):
        a = kinetic_features(X, theta, solubility=SOL).to_numpy()
        b = kinetic_features(X, theta, solubility=SOL, use_numba=False).to_numpy()
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- a first-class twin
def test_cv_scores_and_info(twin, doe):
    for c in ("D50_um", "DoA_pct"):
        i = twin.info_[c]
        m = twin.models_[c]
        y = doe[c].dropna().to_numpy()
        assert i["n_rows"] == len(y) and i["model"] == "hybrid"
        assert i["cv_mae"] == pytest.approx(float(np.mean(np.abs(m.loo_mean_ - y))))
        assert i["cv_mae"] > 0 and i["cv_r2"] is not None and 0 <= i["coverage_95"] <= 1
    assert twin.info_["D50_um"]["mean"] == "kinetic" and twin.info_["DoA_pct"]["mean"] == "none"
    s = twin.summary()
    assert list(s["cqa"]) == ["D50_um", "DoA_pct"] and list(s["model"]) == ["hybrid", "hybrid"]
    assert twin.metadata_["kinetic"]["thetas"] is twin.kinetic_.thetas_


def test_save_load_bit_identical_and_byte_identical_per_seed(twin, doe, tmp_path):
    from crystalloop.digital_twin import load_twin

    twin.save(tmp_path / "a")
    doc = (tmp_path / "a" / "twin.json").read_text()
    assert '"kind": "hybrid"' in doc
    assert not any(p.suffix in (".pkl", ".joblib", ".skops") for p in (tmp_path / "a").rglob("*"))
    back = load_twin(tmp_path / "a")
    assert isinstance(back, HybridTwin) and back.cqas == twin.cqas
    np.testing.assert_array_equal(back.kinetic_.thetas_, twin.kinetic_.thetas_)
    Xt = _recipes(25, seed=8)
    for a, b in zip(back.predict(Xt, return_std=True), twin.predict(Xt, return_std=True), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.models_["D50_um"].loo_mean_, twin.models_["D50_um"].loo_mean_)
    again = HybridTwin(("D50_um", "DoA_pct"), solubility=SOL, kinetic_params=FAST, random_state=0).fit(doe)
    again.save(tmp_path / "b")
    for p in sorted((tmp_path / "a").rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes(), p.name
    back.save(tmp_path / "c")  # a loaded twin saves the same folder
    assert (tmp_path / "c" / "models" / "D50_um.json").read_bytes() == (tmp_path / "a" / "models" / "D50_um.json").read_bytes()


def test_tampered_or_truncated_folder_names_the_file(twin, tmp_path):
    from crystalloop.errors import ModelError, UntrustedModelError

    d = twin.save(tmp_path / "t")
    f = d / "models" / "DoA_pct.json"
    f.write_text(f.read_text()[:200])
    with pytest.raises(UntrustedModelError, match=r"DoA_pct\.json does not match the SHA-256"):
        HybridTwin.load(d)
    d2 = twin.save(tmp_path / "u")
    (d2 / "twin.json").write_text((d2 / "twin.json").read_text()[:300])
    with pytest.raises(ModelError, match=r"twin\.json is not valid JSON"):
        HybridTwin.load(d2)
    (d2 / "twin.json").unlink()
    with pytest.raises(ModelError, match="twin.json is missing"):
        HybridTwin.load(d2)


def test_fit_hybrid_twin_without_solubility_warns_once(doe):
    from crystalloop.digital_twin import fit_hybrid_twin
    from crystalloop.errors import TwinWarning

    with pytest.warns(TwinWarning, match="kinetic part is off") as rec:
        tw = fit_hybrid_twin(doe.assign(run_id=[f"r{i}" for i in range(len(doe))]), cqas=["D50"])
    assert sum("kinetic part is off" in str(w.message) for w in rec) == 1
    assert tw.kinetic_ is None and tw.cqas == ["D50_um"]


def test_parallel_and_serial_calls_agree_bit_for_bit():
    X = _recipes(8, seed=9)
    big = pd.concat([X] * 260, ignore_index=True)  # 2,080 rows: the parallel loop (from 2,048 rows)
    a = kinetic_features(X, TRUE, solubility=SOL).to_numpy()
    b = kinetic_features(big, TRUE, solubility=SOL).to_numpy()[:8]
    np.testing.assert_array_equal(a, b)


def test_a_pickle_in_the_folder_is_refused_even_with_its_sha256(twin, tmp_path):
    """The issue's attack: a model file replaced by a pickle, its SHA-256 updated in twin.json."""
    import hashlib
    import json
    import pickle

    from crystalloop.errors import ModelError

    d = twin.save(tmp_path / "p")
    f = d / "models" / "D50_um.json"
    f.write_bytes(pickle.dumps({"print": print}))
    doc = json.loads((d / "twin.json").read_text())
    doc["files"]["models/D50_um.json"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"D50_um\.json is not valid JSON"):
        HybridTwin.load(d)
