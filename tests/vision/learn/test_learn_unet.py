"""U-Net segmenter: learns, reproduces, saves/loads, tiles, post-processes, rejects bad input."""

import json

import numpy as np
import pytest

from crystalloop.errors import ConfigError, ImageError, ModelError
from crystalloop.vision.learn import UNetSegmenter, load_model, pixel_accuracy

TINY = dict(base_filters=8, depth=2, tile_size=32, tiles_per_epoch=16, batch_size=8, epochs=6, augmentation=None,
            lr=1e-2, random_state=0, n_threads=1, device="cpu")


@pytest.fixture(scope="module")
def fitted(blobs):
    imgs, masks = blobs
    return UNetSegmenter(n_classes=2, **TINY).fit(imgs[:2], masks[:2])


def test_learns_blobs(fitted, blobs):
    imgs, masks = blobs
    h = fitted.history_
    assert h[-1]["loss"] < 0.5 * h[0]["loss"]
    pred = fitted.predict(imgs[2:])[0]
    acc = pixel_accuracy(masks[2], pred)
    assert acc > 0.95  # the object share is ~9 %, so all-background would score ~0.91
    assert (pred[masks[2] == 1] == 1).mean() > 0.8


def test_reproducible_on_cpu(fitted, blobs):
    imgs, masks = blobs
    again = UNetSegmenter(n_classes=2, **TINY).fit(imgs[:2], masks[:2])
    for a, b in zip(fitted.network_.state_dict().values(), again.network_.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())


def test_save_load_roundtrip(fitted, blobs, tmp_path):
    imgs, _ = blobs
    fitted.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["class"].endswith("UNetSegmenter") and cfg["params"]["n_classes"] == 2
    loaded = load_model(tmp_path / "m", device="cpu")
    assert isinstance(loaded, UNetSegmenter)
    assert np.allclose(loaded.predict_proba(imgs[2:])[0], fitted.predict_proba(imgs[2:])[0], atol=1e-6)
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="not a saved crystalloop model"):
        load_model(tmp_path / "nothing")


def test_tiled_prediction_matches_whole_image(fitted, blobs):
    imgs, _ = blobs
    whole = fitted.predict_proba(imgs[2:])[0]
    fitted.set_params(predict_tile=32, overlap=8)
    try:
        tiled = fitted.predict_proba(imgs[2:])[0]
    finally:
        fitted.set_params(predict_tile=512, overlap=32)
    # receptive field of a depth-2 net is ~ 20 px, so centre stitching with overlap 8 is close
    assert np.mean(np.argmax(whole, 0) == np.argmax(tiled, 0)) > 0.99


def test_segment_instances_and_measure(fitted, blobs):
    imgs, masks = blobs
    labs = fitted.segment_instances(imgs[2:], min_size_px=20)
    true_n = len(np.unique(masks[2][masks[2] > 0]))  # squares may touch; count components
    import cv2

    n_comp = cv2.connectedComponents(masks[2].astype(np.uint8))[0] - 1
    assert abs(labs[0].max() - n_comp) <= 1 and true_n == 1
    parts = fitted.measure(imgs[2:], pixel_size_um=2.0, min_size_px=20)[0]
    assert len(parts) == labs[0].max() and "ecd_um" in parts.columns
    big = parts["area_um2"].max()
    assert big >= 100 * 4 * 0.7  # a 10×10 px square at 2 µm/px


def test_median_frequency_weights_used(blobs):
    imgs, masks = blobs
    seg = UNetSegmenter(n_classes=2, **{**TINY, "epochs": 1}).fit(imgs[:1], masks[:1])
    frac = masks[0].mean()
    assert seg.class_weights_[1] / seg.class_weights_[0] == pytest.approx((1 - frac) / frac, rel=1e-5)


def test_seed002_three_classes_learn():
    from crystalloop.vision.learn import make_segmentation_set

    imgs, masks, _, _ = make_segmentation_set(3, shape=(64, 64), classes="seed002", n_particles=(3, 5), seed=1)
    seg = UNetSegmenter(n_classes=3, **{**TINY, "epochs": 5, "augmentation": "seed002"}).fit(imgs[:2], masks[:2])
    pred = seg.predict(imgs[2:])[0]
    assert seg.history_[-1]["loss"] < seg.history_[0]["loss"]
    # dark vs light background alone is easy; must beat the majority class by a margin
    majority = np.bincount(masks[2].ravel()).max() / masks[2].size
    assert pixel_accuracy(masks[2], pred) > majority + 0.05


def test_bad_input(blobs):
    imgs, masks = blobs
    seg = UNetSegmenter(n_classes=2, **TINY)
    with pytest.raises(ImageError, match=r"mask 0 is 60×64 px but image 0 is 64×64 px"):
        seg.fit(imgs[:1], [masks[0][:60]])
    with pytest.raises(ImageError, match="got 2 images but 1 masks"):
        seg.fit(imgs[:2], masks[:1])
    with pytest.raises(ImageError, match=r"holds values 0..2; expected 0..1"):
        seg.fit(imgs[:1], [masks[0] * 2])
    with pytest.raises(ImageError, match="have no pixels"):
        seg.fit(imgs[:1], [np.zeros_like(masks[0])])
    with pytest.raises(ImageError, match="has 3 channels"):
        seg.fit([np.dstack([imgs[0]] * 3)], masks[:1])
    with pytest.raises(ConfigError, match="tile_size=30 must be a positive multiple of 2\\*\\*depth = 4"):
        UNetSegmenter(tile_size=30, depth=2).fit(imgs[:1], masks[:1])
    with pytest.raises(ModelError, match="not fitted"):
        UNetSegmenter().predict(imgs)
    with pytest.raises(ImageError, match="single 2-D image"):
        UNetSegmenter(n_classes=2, **TINY).fit(imgs[0], masks[0])
