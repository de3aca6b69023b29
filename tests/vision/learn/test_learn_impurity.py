"""Impurity detection: imbalanced binary classifier, anomaly detectors, metrics."""

import numpy as np
import pytest

from crystalloop.errors import ConfigError, ModelError
from crystalloop.vision.learn import (
    AutoencoderDetector,
    FeatureDetector,
    ImpurityClassifier,
    crop_features,
    impurity_scores,
    load_model,
    make_impurity_set,
    precision_at_recall,
)


@pytest.fixture(scope="module")
def crops():
    X, y = make_impurity_set(50, 10, size=32, pixel_size_um=2.0, seed=0)  # 1:5 imbalance
    Xt, yt = make_impurity_set(30, 15, size=32, pixel_size_um=2.0, seed=1)
    return X, y, Xt, yt


def test_synthetic_set_morphology(crops):
    X, y, _, _ = crops
    f = crop_features(X)
    log_ar = f[:, 1]
    assert y.mean() == pytest.approx(10 / 60)
    assert np.median(log_ar[y == 0]) > np.median(log_ar[y == 1]) + 0.5  # products are elongated


def test_metrics_known_values():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.8, 0.7, 0.9])
    r = impurity_scores(y, s, recall=1.0)
    assert r["roc_auc"] == pytest.approx(5 / 6)
    assert r["precision_at_recall_1"] == pytest.approx(2 / 3) and r["threshold"] == pytest.approx(0.7)
    assert precision_at_recall(y, s, 0.5) == (1.0, 0.9)
    with pytest.raises(ModelError, match="needs both classes"):
        precision_at_recall(np.zeros(3), np.ones(3))


def test_classifier_learns_under_imbalance(crops, tmp_path):
    X, y, Xt, yt = crops
    clf = ImpurityClassifier(input_size=32, filters=(8, 16), epochs=15, lr=5e-3, random_state=0, n_threads=1, device="cpu")
    clf.fit(X, y)
    assert clf.pos_weight_ == pytest.approx(5.0)
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    auc = clf.score(Xt, yt)
    assert auc > 0.7  # chance 0.5; 60 crops of which 10 impurities
    p = clf.predict_proba(Xt)
    assert p.shape == (45, 2) and np.allclose(p.sum(1), 1)
    m = load_model(clf.save(tmp_path / "imp"), device="cpu")
    assert np.allclose(m.decision_function(Xt[:4]), clf.decision_function(Xt[:4]), atol=1e-5)


def test_classifier_balanced_sampling_runs_and_rejects_one_class(crops):
    X, y, _, _ = crops
    clf = ImpurityClassifier(input_size=32, filters=(8,), epochs=1, sampling="balanced", class_weight=None, n_threads=1, device="cpu").fit(X, y)
    assert clf.pos_weight_ == 1.0
    with pytest.raises(ModelError, match="only class 0"):
        ImpurityClassifier(epochs=1).fit(X[y == 0], y[y == 0])
    with pytest.raises(ConfigError, match="sampling='smote'"):
        ImpurityClassifier(sampling="smote").fit(X, y)


def test_feature_detector_trained_on_product_only(crops, tmp_path):
    X, y, Xt, yt = crops
    det = FeatureDetector().fit(X[y == 0])
    r = impurity_scores(yt, det.score_samples(Xt))
    assert r["roc_auc"] > 0.9
    assert ((det.score_samples(X[y == 0]) > det.threshold_).mean()) == pytest.approx(0.05, abs=0.04)
    det2 = FeatureDetector.load(det.save(tmp_path / "fd"))
    assert np.allclose(det2.score_samples(Xt), det.score_samples(Xt))
    assert isinstance(load_model(tmp_path / "fd"), FeatureDetector)
    with pytest.raises(ModelError, match="product crops only"):
        FeatureDetector().fit(X, y)


def test_autoencoder_detector_fits_and_thresholds(crops, tmp_path):
    X, y, Xt, _ = crops
    ae = AutoencoderDetector(input_size=32, filters=(8, 16), epochs=4, n_threads=1, device="cpu").fit(X[y == 0])
    assert ae.history_[-1]["loss"] < ae.history_[0]["loss"]
    s = ae.score_samples(X[y == 0])
    assert np.median(s) == pytest.approx(1.0, rel=1e-4)  # scores are relative to the product median
    assert (s > ae.threshold_).mean() == pytest.approx(0.05, abs=0.04)
    m = load_model(ae.save(tmp_path / "ae"), device="cpu")
    assert np.allclose(m.score_samples(Xt[:3]), ae.score_samples(Xt[:3]), rtol=1e-5)
    with pytest.raises(ModelError, match="product crops only"):
        AutoencoderDetector(epochs=1).fit(X, y)
    with pytest.raises(ConfigError, match="quantile"):
        AutoencoderDetector(quantile=0.2).fit(X[y == 0])
