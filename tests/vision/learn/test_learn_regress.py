"""Seed-004 image regressor, its preprocessing and leave-one-group-out cross-validation."""

import numpy as np
import pytest

from crystalloop.errors import ConfigError, ModelError
from crystalloop.vision.learn import (
    ImageRegressor,
    leave_one_group_out,
    load_model,
    make_regression_set,
    preprocess_seed004,
)

FAST = dict(input_size=32, epochs=60, lr=3e-3, dropout=0.25, batch_size=16, random_state=0, n_threads=1, device="cpu")


@pytest.fixture(scope="module")
def reg_data():
    return make_regression_set(4, 3, shape=(64, 64), pixel_size_um=1.0, pore_um=(6.0, 14.0), seed=0)


def test_default_architecture_is_the_seed():
    reg = ImageRegressor()
    assert (reg.filters, reg.dense, reg.dropout, reg.lr, reg.batch_size) == ((4, 8, 16), 10, 0.5, 1e-4, 16)
    assert reg.rolling_ball_radius_px == 50.0 and reg.preprocess == "seed004" and reg.augment
    net = ImageRegressor(input_size=64)._build_network()
    convs = [m for m in net.modules() if m.__class__.__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [4, 8, 16] and all(c.kernel_size == (3, 3) for c in convs)
    linears = [m for m in net.modules() if m.__class__.__name__ == "Linear"]
    assert [lin.out_features for lin in linears] == [10, 1] and linears[0].in_features == 16 * 8 * 8


def test_preprocessing_removes_illumination_gradient():
    rr, cc = np.mgrid[0:128, 0:128]
    img = (60 + cc).astype(np.float32)  # strong left-right gradient, nothing else
    img[40:50, 40:50] -= 40  # one dark feature
    flat = preprocess_seed004(img.astype(np.uint8), radius_px=20, equalize=False)
    # away from the borders the 128-level ramp is gone and the feature stands out
    inner = flat[80:120, 40:110].astype(float)
    assert np.ptp(inner.mean(0)) <= 3 and flat[45, 45] > inner.mean() + 150
    eq = preprocess_seed004(img.astype(np.uint8), radius_px=20)
    assert eq.dtype == np.uint8 and eq.max() == 255 and eq.min() <= 20  # equalized to the full range


def test_learns_pore_size(reg_data, tmp_path):
    X, y, g = reg_data
    reg = ImageRegressor(**FAST).fit(X, y)
    h = [r["loss"] for r in reg.history_]
    assert np.mean(h[-5:]) < 0.6 * np.mean(h[:5])
    pred = reg.predict(X)
    assert np.corrcoef(pred, y)[0, 1] > 0.8
    Xt, yt, _ = make_regression_set(4, 1, shape=(64, 64), pixel_size_um=1.0, pore_um=(6.0, 14.0), seed=7)
    assert np.corrcoef(reg.predict(Xt), yt)[0, 1] > 0.6  # unseen images
    m = load_model(reg.save(tmp_path / "r"), device="cpu")
    assert np.allclose(m.predict(X[:3]), pred[:3], rtol=1e-5)


def test_leave_one_group_out_table(reg_data):
    X, y, g = reg_data
    tab = leave_one_group_out(ImageRegressor(**{**FAST, "epochs": 3}), X, y, g, compare_augmentation=True)
    assert list(tab.index) == ["A", "B", "C", "D", "mean"]
    assert {"y_true", "y_pred_original", "rel_error_original", "y_pred_augmented", "rel_error_augmented"} <= set(tab.columns)
    r = tab.loc["B"]
    assert r["rel_error_augmented"] == pytest.approx(abs(r["y_pred_augmented"] - r["y_true"]) / r["y_true"])
    assert tab.loc["mean", "y_true"] == pytest.approx(np.mean(np.unique(y)))


def test_bad_input(reg_data):
    X, y, g = reg_data
    with pytest.raises(ModelError, match="got 12 images but 11 targets"):
        ImageRegressor(**FAST).fit(X, y[:-1])
    with pytest.raises(ModelError, match="NaN"):
        ImageRegressor(**FAST).fit(X, np.r_[y[:-1], np.nan])
    with pytest.raises(ModelError, match="group 'A' has different targets"):
        leave_one_group_out(ImageRegressor(**FAST), X, np.r_[y[:2] + [0, 1], y[2:]], g)
    with pytest.raises(ModelError, match="at least 2 groups"):
        leave_one_group_out(ImageRegressor(**FAST), X, np.full(12, 1.0), np.full(12, "A"))
    with pytest.raises(ConfigError, match="input_size=30 must be divisible"):
        ImageRegressor(input_size=30).fit(X, y)
