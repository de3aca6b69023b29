"""DigitalTwin: fit, vectorized predict, save/load with metadata, schema checks, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _twin_data import make_doe, random_profiles, truth

from crystalloop.digital_twin import DigitalTwin, TwinWarning, fit_twin, write_report
from crystalloop.errors import ConfigError, ModelError, UntrustedModelError
from crystalloop.profiles import Segment, ThermocycleProfile, feature_names, profiles_to_frame

FAST = dict(families=("svr",), grid="fast", n_splits=12, augment=False, n_jobs=1)


@pytest.fixture(scope="module")
def twin():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_twin(make_doe(40), random_state=0, **FAST)


def test_twin_contract(twin):
    assert twin.cqas == ["D50_um", "DoA_pct", "crystallinity_pct"]
    assert twin.max_cycles == 4 and twin.feature_names == feature_names(4)
    profs = random_profiles(7, seed=5)
    p1 = twin.predict_frame(profs)
    F = profiles_to_frame(profs, 4)
    p2, p3 = twin.predict_frame(F), twin.predict_frame(F.to_numpy())
    assert list(p1.columns) == [f"{c}_{s}" for c in twin.cqas for s in ("mean", "std")]
    np.testing.assert_allclose(p1.to_numpy(), p2.to_numpy())
    np.testing.assert_allclose(p1.to_numpy(), p3.to_numpy())
    assert (p1.filter(like="_std") > 0).all().all()
    assert twin.predict_frame(profs[0]).shape == (1, 6)


def test_twin_accuracy_on_fresh_profiles(twin):
    F = profiles_to_frame(random_profiles(60, seed=11), 4)
    T = truth(F)
    P = twin.predict_frame(F, warn=False)
    for c in ("D50_um", "DoA_pct"):
        err = P[f"{c}_mean"] - T[c]
        r2 = 1 - (err**2).sum() / ((T[c] - T[c].mean()) ** 2).sum()
        assert r2 > 0.8, (c, r2)
    assert twin.info_["D50_um"]["n_train"] + twin.info_["D50_um"]["n_test"] == 40
    assert twin.info_["DoA_pct"]["n_rows"] == 27 and twin.info_["crystallinity_pct"]["n_rows"] == 20


def test_save_load_round_trip(twin, tmp_path):
    twin.save(tmp_path / "t")
    doc = json.loads((tmp_path / "t" / "twin.json").read_text())
    assert doc["feature_names"] == feature_names(4) and len(doc["metadata"]["data_hash"]) == 64
    assert {"scikit-learn", "xgboost", "numpy", "sdv"} <= set(doc["metadata"]["versions"])
    assert doc["info"]["D50_um"]["selection"][0]["rank"] == 1
    t2 = DigitalTwin.load(tmp_path / "t")
    F = profiles_to_frame(random_profiles(5, seed=2), 4)
    pd.testing.assert_frame_equal(t2.predict_frame(F), twin.predict_frame(F))
    t2.check_data(make_doe(10))


def test_tampered_model_file_is_refused(twin, tmp_path):
    d = twin.save(tmp_path / "t")
    p = d / "models" / "D50_um" / "members.skops"
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(UntrustedModelError, match=r"members.skops does not match the SHA-256 recorded in twin.json"):
        DigitalTwin.load(d)
    with pytest.raises(ModelError, match="is not a saved twin"):
        DigitalTwin.load(tmp_path / "nowhere")


def test_truncated_model_folder_names_the_file(twin, tmp_path):
    d = twin.save(tmp_path / "t")
    (d / "models" / "DoA_pct" / "ensemble.json").unlink()
    with pytest.raises(ModelError, match=r"models/DoA_pct/ensemble.json is missing"):
        DigitalTwin.load(d)
    d = twin.save(tmp_path / "u")
    doc = json.loads((d / "twin.json").read_text())
    del doc["max_cycles"]
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"twin.json lacks or garbles the key 'max_cycles'"):
        DigitalTwin.load(d)


class _Payload:
    """Unpickling this writes a marker file: what an attacker's pickle would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_pickle_attack_is_refused_and_never_runs(twin, tmp_path):
    import hashlib
    import pickle

    marker = tmp_path / "marker.txt"
    payload = pickle.dumps(_Payload(marker))
    sha = hashlib.sha256(payload).hexdigest()
    # (1) the attack of issue 16: a pickle at models/D50_um.joblib, its SHA-256 written into twin.json
    d = twin.save(tmp_path / "a")
    (d / "models" / "D50_um.joblib").write_bytes(payload)
    doc = json.loads((d / "twin.json").read_text())
    doc["model_files"]["D50_um"] = {"path": "models/D50_um.joblib", "sha256": sha}
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(UntrustedModelError, match=r"model entry of D50_um .*expected the folder 'models/D50_um'"):
        DigitalTwin.load(d)
    # (2) the same pickle in place of members.skops, every hash updated
    d = twin.save(tmp_path / "b")
    p = d / "models" / "D50_um" / "members.skops"
    p.write_bytes(payload)
    ens = json.loads((p.parent / "ensemble.json").read_text())
    ens["files"]["members.skops"] = sha
    (p.parent / "ensemble.json").write_text(json.dumps(ens))
    doc = json.loads((d / "twin.json").read_text())
    doc["model_files"]["D50_um"]["sha256"]["members.skops"] = sha
    doc["model_files"]["D50_um"]["sha256"]["ensemble.json"] = hashlib.sha256(
        (p.parent / "ensemble.json").read_bytes()).hexdigest()
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(UntrustedModelError, match=r"members.skops is not a valid skops archive"):
        DigitalTwin.load(d)
    # (3) an old (v1, joblib) twin folder is refused outright
    doc["format_version"] = 1
    (d / "twin.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"v1 stored pickled joblib models"):
        DigitalTwin.load(d)
    assert not marker.exists()


def test_model_folder_holds_no_pickle(twin, tmp_path):
    d = twin.save(tmp_path / "t")
    suffixes = {p.suffix for p in d.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".skops", ".csv"}, suffixes
    for p in d.rglob("*.skops"):
        assert p.read_bytes()[:2] == b"PK"  # a zip archive (skops), never a pickle stream


def _assert_byte_identical_refits(tmp_path, **kw):
    df = make_doe(16, seed=4)
    dirs = []
    for k in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = fit_twin(df, cqas=["D50", "DoA"], random_state=3, **kw)
        dirs.append(t.save(tmp_path / f"t{k}"))
    files = sorted(p.relative_to(dirs[0]) for p in dirs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(dirs[1]) for p in dirs[1].rglob("*") if p.is_file())
    assert any(str(f).endswith("boosters.json") for f in files)  # an XGBoost member was saved as JSON
    for f in files:
        assert (dirs[0] / f).read_bytes() == (dirs[1] / f).read_bytes(), f
    t2 = DigitalTwin.load(dirs[0])
    F = profiles_to_frame(random_profiles(6, seed=8), 4)
    np.testing.assert_array_equal(t2.predict(F), t.predict(F))


def test_same_data_and_seed_give_a_byte_identical_folder(tmp_path):
    # XGBoost and gradient boosting members, SDV's Gaussian copula in the augmentation search
    _assert_byte_identical_refits(tmp_path, families=("xgb", "gbt"), grid="fast", n_splits=4, n_repeats=1,
                                  generators=["gaussian_copula"], n_synthetic=[5], alphas=[0, 0.5],
                                  min_improvement=0.0, n_jobs=1)


@pytest.mark.slow
def test_byte_identical_with_tvae_and_two_joblib_workers(tmp_path):
    # SDV's TVAE (torch) and two joblib worker processes as well (3.5 min on the loaded 2-core box)
    _assert_byte_identical_refits(tmp_path, families=("xgb", "gbt"), grid="fast", n_splits=4, n_repeats=1,
                                  generators=["gaussian_copula", "tvae"], n_synthetic=[5], alphas=[0, 0.5],
                                  epochs=3, min_improvement=0.0, n_jobs=2)


def test_estimator_shape(twin):
    from sklearn.base import clone

    F = profiles_to_frame(random_profiles(5, seed=3), 4)
    mean = twin.predict(F)
    mean2, std = twin.predict(F, return_std=True)
    assert mean.shape == std.shape == (5, 3) and (std > 0).all()
    np.testing.assert_array_equal(mean, mean2)
    frame = twin.predict_frame(F)
    np.testing.assert_allclose(frame[[f"{c}_mean" for c in twin.cqas]].to_numpy(), mean)
    params = twin.get_params()
    assert params["random_state"] == 0 and "targets" in params
    fresh = clone(twin)
    assert not hasattr(fresh, "models_") and fresh.get_params() == params
    # fit(X, y) with profile features and a CQA table is the same as fitting the DoE table
    df = make_doe(20, seed=1)
    fx = DigitalTwin(**{**FAST, "n_repeats": 1}).fit(df[feature_names(4)], df[["D50_um"]])
    fd = DigitalTwin(**{**FAST, "n_repeats": 1}).fit(df[feature_names(4) + ["D50_um"]])
    np.testing.assert_array_equal(fx.predict(F), fd.predict(F))


def test_useless_model_warns_and_the_card_says_it_first(tmp_path):
    df = make_doe(24, seed=2)
    rng = np.random.default_rng(0)
    df["D50_um"] = rng.normal(100, 10, len(df))  # pure noise: nothing to learn
    with pytest.warns(TwinWarning, match=r"D50_um: cross-validated R² -?\d\.\d\d <= 0 - the model is no better "
                                          r"than predicting the mean"):
        t = fit_twin(df, cqas=["D50"], **FAST)
    assert t.info_["D50_um"]["cv_r2"] <= 0
    w = write_report(t, tmp_path / "rep", importance_repeats=1)
    card = json.loads(w["model_card_json"].read_text())
    assert list(card)[:2] == ["name", "warnings"] and "R²" in card["warnings"][0]
    md = w["model_card_md"].read_text()
    assert md.index("**Warnings.**") < md.index("## Summary")


def test_schema_mismatch_on_load(twin, tmp_path):
    d = twin.save(tmp_path / "t")
    with pytest.raises(ModelError, match=r"does not match the twin's schema \(max_cycles=4\)"):
        DigitalTwin.load(d, data=make_doe(8, max_cycles=3))
    with pytest.raises(ModelError, match=r"lacks CQA column\(s\) \['crystallinity_pct'\]"):
        DigitalTwin.load(d, data=make_doe(8).drop(columns=["crystallinity_pct"]))


def test_predict_bad_input_and_unseen_structure(twin):
    with pytest.raises(ModelError, match=r"X has shape \(2, 5\); this twin expects \(n, 32\)"):
        twin.predict_frame(np.zeros((2, 5)))
    X = profiles_to_frame(random_profiles(2), 4)
    X.loc[0, "c0_mg_g"] = np.nan
    with pytest.raises(ModelError, match="feature 'c0_mg_g': value nan is not finite"):
        twin.predict_frame(X)
    with pytest.raises(ModelError, match=r"lacks column\(s\) \['T9_c'"):
        twin.predict_frame(profiles_to_frame(random_profiles(2), 4).drop(columns=["T9_c"]))
    # 2 segments (cool + heat) never occur in the training runs (1, 3, 5, 7, 9 do)
    p = ThermocycleProfile(40, 0.1, 60, [Segment(30, 0.1), Segment(45, 0.8)])
    with pytest.warns(TwinWarning, match=r"n_segments \[2\], never seen in the training runs of D50_um"):
        twin.predict_frame([p])


def test_fit_bad_input():
    df = make_doe(20)
    with pytest.raises(ConfigError, match=r"alpha 1.5 lies outside \[0, 1\]"):
        fit_twin(df, alphas=[0, 1.5], **{k: v for k, v in FAST.items() if k != "augment"})
    sparse = df.copy()
    sparse.loc[4:, "crystallinity_pct"] = np.nan  # 2 measured rows
    with pytest.raises(ModelError, match="'crystallinity_pct' has 2 measured row.*at least 5"):
        fit_twin(sparse, cqas=["crystallinity"], **FAST)
    with pytest.warns(TwinWarning, match="'crystallinity_pct' has 2 measured row.*left out of the twin"):
        t = fit_twin(sparse, cqas=None, **{**FAST, "families": ("svr",)})
    assert t.cqas == ["D50_um", "DoA_pct"]
    empty = df.assign(D50_um=np.nan, DoA_pct=np.nan, crystallinity_pct=np.nan)
    with pytest.raises(ModelError, match="no CQA column has at least 5 measured rows"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_twin(empty, **FAST)
    with pytest.raises(ConfigError, match="uncertainty must be 'mc' or 'bootstrap'"):
        fit_twin(df, uncertainty="dropout", **FAST)


@pytest.mark.slow
def test_bootstrap_twin_and_report(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = fit_twin(make_doe(20), cqas=["D50"], uncertainty="bootstrap", **{**FAST, "families": ("svr",)})
    assert t.info_["D50_um"]["uncertainty"]["kind"] == "bootstrap"
    w = write_report(t, tmp_path / "rep", holdout=make_doe(6, seed=9), importance_repeats=2)
    for k in ("parity_D50_um", "importance_D50_um", "model_card_json", "model_card_md", "candidates"):
        assert w[k].is_file() and w[k].stat().st_size > 100
    card = json.loads(w["model_card_json"].read_text())
    assert card["cqas"]["D50_um"]["holdout"]["n"] == 6
    assert "| D50_um | svr |" in w["model_card_md"].read_text()


@pytest.mark.slow
def test_twin_keeps_augmentation_when_it_helps(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the seed-003 hold-out split: 20 training rows, where synthetic rows help this noisy table
        t = fit_twin(make_doe(24, noise=3.0), cqas=["D50"], families=("svr",), grid="fast", n_splits=10,
                     generators=["gaussian_copula"], n_synthetic=[5, 25], alphas=[0, 0.3, 0.6], min_improvement=0.0,
                     validation="holdout", n_jobs=1)
    a = t.info_["D50_um"]["augmentation"]
    assert a["used"] and a["improvement"] > 0 and a["cv_mse"] < a["baseline_cv_mse"]
    assert 0 < a["quality"]["gaussian_copula"] <= 1
    member = t.models_["D50_um"].estimators_[0]
    assert type(member).__name__ == "WeightedERMRegressor" and len(member.y_synthetic_) == a["m"]
    assert set(t.augmentation_curves_["D50_um"]["alpha"]) == {0.0, 0.3, 0.6}
    t2 = DigitalTwin.load(t.save(tmp_path / "t"))
    F = profiles_to_frame(random_profiles(4, seed=3), 4)
    pd.testing.assert_frame_equal(t2.predict_frame(F), t.predict_frame(F))


def test_features_transformer_is_a_step_of_every_member_and_survives_save_load(tmp_path):
    from sklearn.decomposition import PCA

    df = make_doe(20, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = DigitalTwin(features=PCA(n_components=4), targets=["D50"], **{**FAST, "n_repeats": 1}).fit(df)
    member = t.models_["D50_um"].estimators_[0]
    assert member.steps[0][0] == "features" and member.steps[0][1].n_components_ == 4
    assert t.metadata_["settings"]["features"] == "sklearn.decomposition._pca.PCA"
    t2 = DigitalTwin.load(t.save(tmp_path / "t"))
    assert type(t2.features).__name__ == "PCA"
    F = profiles_to_frame(random_profiles(5, seed=1), 4)
    np.testing.assert_array_equal(t2.predict(F, return_std=True)[1], t.predict(F, return_std=True)[1])
