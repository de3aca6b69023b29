"""Multi-label crystal classifier: learns the easy labels, tunes thresholds, reports, rejects bad labels."""

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, ImageError, ModelError
from crystalloop.vision.learn import (
    CRYSTAL_LABELS,
    CrystalClassifier,
    as_label_matrix,
    load_model,
    make_crystal_images,
    multilabel_report,
    tune_thresholds,
)

FAST = dict(input_size=32, filters=(8, 16), epochs=20, batch_size=16, lr=5e-3, validation_fraction=0.25,
            random_state=0, n_threads=1, device="cpu")


@pytest.fixture(scope="module")
def crystal_data():
    X, Y = make_crystal_images(64, shape=(32, 32), pixel_size_um=5.0, p_empty=0.3, p_too_concentrated=0.2, seed=0)
    Xt, Yt = make_crystal_images(32, shape=(32, 32), pixel_size_um=5.0, p_empty=0.3, p_too_concentrated=0.2, seed=1)
    return X, Y, Xt, Yt


@pytest.fixture(scope="module")
def clf(crystal_data):
    X, Y, _, _ = crystal_data
    return CrystalClassifier(**FAST).fit(X, Y)


def test_generator_labels_consistent(crystal_data):
    X, Y, _, _ = crystal_data
    assert list(Y.columns) == list(CRYSTAL_LABELS) and X.shape == (64, 32, 32)
    empty = Y["object_present"] == 0
    assert (Y[empty].sum(axis=1) == 0).all()  # an empty image has no other label
    # empty frames are flat, crowded frames are dark
    assert X[empty.to_numpy()].std(axis=(1, 2)).mean() < X[~empty.to_numpy()].std(axis=(1, 2)).mean()
    conc = Y["too_concentrated"] == 1
    assert X[conc.to_numpy()].mean() < X[empty.to_numpy()].mean() - 40


def test_learns_presence_and_crowding(clf, crystal_data):
    _, _, Xt, Yt = crystal_data
    from sklearn.metrics import roc_auc_score

    assert clf.history_[-1]["loss"] < 0.8 * clf.history_[0]["loss"]
    proba = pd.DataFrame(clf.predict_proba(Xt), columns=clf.labels_)
    for label in ("object_present", "too_concentrated"):
        assert roc_auc_score(Yt[label], proba[label]) > 0.85, label  # chance is 0.5
    rep = clf.report(Xt, Yt)
    assert list(rep.columns) == ["precision", "recall", "f1", "support"]
    assert rep.index[-1] == "micro avg" and rep.loc["too_concentrated", "f1"] > 0.6


def test_thresholds_tuned_and_settable(clf):
    assert clf.thresholds_.shape == (10,) and ((clf.thresholds_ > 0) & (clf.thresholds_ < 1)).all()
    clf2 = CrystalClassifier.load(clf.save(__import__("tempfile").mkdtemp()), device="cpu")
    assert np.array_equal(clf2.thresholds_, clf.thresholds_) and clf2.labels_ == clf.labels_
    clf2.set_thresholds({"needle": 0.9})
    assert clf2.thresholds_[clf2.labels_.index("needle")] == 0.9
    with pytest.raises(ModelError, match="label 'rhombus' is not a label of this model"):
        clf2.set_thresholds({"rhombus": 0.5})
    with pytest.raises(ConfigError, match="expected a value in \\(0, 1\\)"):
        clf2.set_thresholds({"needle": 1.5})


def test_predict_frame_and_load_model(clf, crystal_data, tmp_path):
    _, _, Xt, _ = crystal_data
    f = clf.predict_frame(Xt[:3])
    assert {"needle_proba", "needle"} <= set(f.columns) and len(f) == 3
    m = load_model(clf.save(tmp_path / "c"), device="cpu")
    assert np.allclose(m.predict_proba(Xt[:3]), clf.predict_proba(Xt[:3]), atol=1e-6)


def test_tune_thresholds_maximizes_f1():
    y = np.array([[1], [1], [0], [0]])
    p = np.array([[0.9], [0.4], [0.3], [0.1]])
    t = tune_thresholds(y, p)
    assert 0.3 < t[0] <= 0.4
    assert tune_thresholds(np.zeros((4, 1), int), p)[0] == 0.5
    # a label most images carry: F1 prefers "always present", balanced accuracy does not
    y2 = np.array([[1]] * 8 + [[0]] * 2)
    p2 = np.array([[0.9]] * 6 + [[0.3]] * 2 + [[0.2]] * 2)
    assert tune_thresholds(y2, p2, metric="balanced_accuracy")[0] > 0.2
    with pytest.raises(ConfigError, match="threshold metric"):
        tune_thresholds(y2, p2, metric="auc")


def test_label_matrix_forms_and_errors():
    labels = ["a", "b"]
    assert (as_label_matrix([["a"], [], ["a", "b"]], labels) == [[1, 0], [0, 0], [1, 1]]).all()
    assert (as_label_matrix(pd.DataFrame({"b": [1], "a": [0]}), labels) == [[0, 1]]).all()
    with pytest.raises(ModelError, match="names label 'c', which is not a label of the model"):
        as_label_matrix([["c"]], labels)
    with pytest.raises(ModelError, match=r"label column\(s\) \['c'\] that are not labels"):
        as_label_matrix(pd.DataFrame({"a": [1], "b": [0], "c": [1]}), labels)
    with pytest.raises(ModelError, match="only 0/1"):
        as_label_matrix(np.array([[2, 0]]), labels)
    rep = multilabel_report([[1, 0], [0, 1]], [[1, 1], [0, 1]], labels)
    assert rep.loc["a", "precision"] == 1.0 and rep.loc["b", "precision"] == 0.5 and rep.loc["b", "recall"] == 1.0


def test_bad_input(clf, crystal_data):
    X, Y, _, _ = crystal_data
    with pytest.raises(ModelError, match=r"label\(s\) \['too_concentrated'\] have no positive example"):
        CrystalClassifier(**FAST).fit(X, Y.assign(too_concentrated=0))
    with pytest.raises(ModelError, match="got 64 images but 63 label rows"):
        CrystalClassifier(**FAST).fit(X, Y.iloc[:63])
    with pytest.raises(ImageError, match="has 3 channels"):
        clf.predict_proba(np.repeat(X[:2, :, :, None], 3, axis=3))
    with pytest.raises(ModelError, match=r"label column\(s\) \['crystal'\]"):
        clf.report(X[:2], pd.DataFrame({"crystal": [1, 0]}))
    with pytest.raises(ConfigError, match="input_size=30 must be divisible"):
        CrystalClassifier(input_size=30, filters=(8, 16)).fit(X, Y)
