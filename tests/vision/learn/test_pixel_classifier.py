"""Few-shot pixel classifier: features, training from full and partial annotations, persistence."""

import json

import numpy as np
import pandas as pd
import pytest

from crystalloop.errors import ConfigError, ImageError, ModelError, UntrustedModelError
from crystalloop.vision import render_particles
from crystalloop.vision.learn import (
    Annotation,
    PixelClassifier,
    feature_names,
    instance_scores,
    pixel_features,
    probabilities_to_labels,
    train_segmentation,
)
from crystalloop.vision.segmenters import Segmenter, load_segmenter, segment_labels

FAST = {"n_estimators": 12, "samples_per_class": 1500, "sigmas": (1.0, 2.0, 4.0)}


def _scene(seed, n=14, shape=(128, 128)):
    rng = np.random.default_rng(seed)
    p = pd.DataFrame({"x_px": rng.uniform(10, shape[1] - 10, n), "y_px": rng.uniform(10, shape[0] - 10, n),
                      "length_um": rng.uniform(12, 22, n), "width_um": rng.uniform(8, 12, n),
                      "angle_deg": rng.uniform(0, 180, n), "depth": np.zeros(n)})
    img, _, lab = render_particles(p, shape=shape, pixel_size_um=1.0, seed=seed, return_labels=True, noise_std=4)
    return Annotation(f"s{seed}", img, lab.astype(np.int32))


@pytest.fixture(scope="module")
def scenes():
    return [_scene(s) for s in (1, 2, 3)]


def test_features_shape_names_and_determinism():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    f = pixel_features(rgb, sigmas=(0.7, 3.5))
    assert f.dtype == np.float32 and f.shape == (40, 50, 3 * 2 * 8)
    names = feature_names(3, sigmas=(0.7, 3.5))
    assert len(names) == f.shape[2] and names[0] == "c0_gaussian_s0.7" and "c2_hessian_min_s3.5" in names
    np.testing.assert_array_equal(f, pixel_features(rgb, sigmas=(0.7, 3.5)))
    one = pixel_features(rgb, sigmas=(0.7, 3.5), channel=1)
    np.testing.assert_array_equal(one, f[:, :, 16:32])  # the chosen channel's block
    # a bright disk: negative LoG and both Hessian eigenvalues negative at its centre
    yy, xx = np.mgrid[:41, :41]
    disk = ((yy - 20) ** 2 + (xx - 20) ** 2 < 25).astype(np.float32)
    g = pixel_features(disk, sigmas=(3.5,))
    n = feature_names(1, sigmas=(3.5,))
    assert g[20, 20, n.index("c0_log_s3.5")] < 0 and g[20, 20, n.index("c0_hessian_max_s3.5")] < 0
    assert g[20, 20, n.index("c0_gradient_s3.5")] < g[20, 25, n.index("c0_gradient_s3.5")]
    with pytest.raises(ConfigError, match="channel=3 does not exist in image with 3 channel"):
        pixel_features(rgb, channel=3)
    with pytest.raises(ConfigError, match="unknown feature kind"):
        pixel_features(rgb, kinds=("gabor",))
    with pytest.raises(ConfigError, match="positive numbers of pixels"):
        pixel_features(rgb, sigmas=(0.0,))


def test_train_on_one_image_segments_another(scenes):
    a, b, _ = scenes
    m = PixelClassifier(**FAST).fit([a.image], [a.targets()])
    assert m.class_names_ == ["background", "interior", "boundary"] and isinstance(m, Segmenter)
    lab = segment_labels(m, b.image)
    s = instance_scores(b.labels, lab)
    assert s["f1"] >= 0.8 and abs(s["median_ecd_error"]) < 0.15, s
    # same data + seed -> identical model
    m2 = PixelClassifier(**FAST).fit([a.image], [a.targets()])
    np.testing.assert_array_equal(m2.predict_proba(b.image), m.predict_proba(b.image))


def test_banded_prediction_matches_whole_image_features(scenes):
    a = scenes[0]
    big = np.tile(a.image, (3, 1))  # 384 rows: two bands of 256 rows
    m = PixelClassifier(**FAST).fit([a.image], [a.targets()])
    p = m.predict_proba(big)
    f = pixel_features(big, sigmas=FAST["sigmas"])
    whole = m.forest_.predict_proba(f.reshape(-1, f.shape[2])).reshape(p.shape) * m.class_weights_
    whole /= whole.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(p, whole, atol=1e-6)


def test_partial_scribbles_train_a_binary_model(scenes):
    a, b, _ = scenes
    scr = np.zeros(a.labels.shape, np.uint8)
    scr[a.labels == 1] = 2
    scr[a.labels == 2] = 2
    scr[0:3, :] = 1
    scr[:, 0:3] = 1
    part = Annotation("scribbled", a.image, scribbles=scr)
    m = PixelClassifier(**FAST).fit([part.image], [part.targets()])
    assert m.class_names_ == ["background", "interior"]
    fg = m.predict_proba(b.image)[:, :, 0] < 0.5
    assert (fg == (b.labels > 0)).mean() >= 0.93  # two scribbled objects teach the pixels
    lab = m.predict_labels(b.image)  # distance watershed (no boundary class): touching pairs may merge
    assert instance_scores(b.labels, lab)["f1"] >= 0.45


def test_save_load_and_trusted_types(tmp_path, scenes):
    a, b, _ = scenes
    m = PixelClassifier(**FAST).fit([a.image], [a.targets()])
    m.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    m2 = load_segmenter(tmp_path / "m")
    assert isinstance(m2, PixelClassifier)
    np.testing.assert_array_equal(m2.predict_labels(b.image), m.predict_labels(b.image))
    # a skops file with another estimator inside is refused before anything is built from it
    import skops.io as sio
    from sklearn.preprocessing import StandardScaler

    sio.dump(StandardScaler().fit(np.ones((3, 2))), tmp_path / "m" / "forest.skops")
    with pytest.raises(UntrustedModelError, match="outside the trusted list.*StandardScaler"):
        PixelClassifier.load(tmp_path / "m")
    (tmp_path / "m" / "settings.json").write_text(json.dumps({"kind": "unet"}))
    with pytest.raises(ModelError, match="kind 'unet'; expected 'pixel_classifier'"):
        load_segmenter(tmp_path / "m")


def test_bad_input(scenes):
    a = scenes[0]
    with pytest.raises(ConfigError, match="need at least background and object pixels"):
        PixelClassifier(**FAST).fit([a.image], [np.ones(a.labels.shape, np.uint8)])
    with pytest.raises(ImageError, match="must hold integers 0..3"):
        PixelClassifier(**FAST).fit([a.image], [np.full(a.labels.shape, 5, np.uint8)])
    with pytest.raises(ConfigError, match="got 1 images and 2 target maps"):
        PixelClassifier(**FAST).fit([a.image], [a.targets(), a.targets()])
    with pytest.raises(ModelError, match="not fitted"):
        PixelClassifier().predict_labels(a.image)
    with pytest.raises(ConfigError, match="instance_method='blobs'"):
        PixelClassifier(instance_method="blobs", **FAST).fit([a.image], [a.targets()])
    m = PixelClassifier(**FAST).fit([a.image], [a.targets()])
    with pytest.raises(ImageError, match="has 3 channel.* trained on 1"):
        m.predict_labels(np.dstack([a.image] * 3))
    with pytest.raises(ConfigError, match="needs a boundary class"):
        probabilities_to_labels(np.ones((4, 4, 2)) / 2, classes=["background", "interior"], method="boundary")


def test_train_segmentation_writes_a_model_folder(tmp_path, scenes):
    info = train_segmentation(list(scenes[:2]), tmp_path / "model", random_state=3, **FAST)
    d = tmp_path / "model"
    assert sorted(p.name for p in d.iterdir()) == ["model", "scores.json", "training.json"]
    t = json.loads((d / "training.json").read_text())
    s = json.loads((d / "scores.json").read_text())
    assert t["method"] == "pixel" and [i["name"] for i in t["images"]] == ["s1", "s2"]
    assert t["images"][0]["labelled_px"]["boundary"] > 0 and t["settings"]["random_state"] == 3
    assert s["how"].startswith("trained on 1 image(s), scored on held-out 's2'") and s["f1"] >= 0.7
    assert info["scores"]["f1"] == s["f1"]
    seg = load_segmenter(d)
    assert seg.predict_labels(scenes[2].image).max() >= 8
    with pytest.raises(ConfigError, match="is not empty; choose a new folder or pass overwrite"):
        train_segmentation(list(scenes[:2]), d, **FAST)
    one = train_segmentation([scenes[0]], tmp_path / "one", **FAST)
    assert one["scores"]["how"] == "trained on the left half of 's1', scored on its right half"


def test_unet_three_class_through_the_same_interface(tmp_path, scenes):
    from crystalloop.vision.learn import UNetSegmenter

    tiny = {"epochs": 2, "tiles_per_epoch": 4, "tile_size": 64, "base_filters": 4, "device": "cpu"}
    info = train_segmentation(list(scenes[:2]), tmp_path / "u", method="unet", synthetic=1, validate=False, **tiny)
    assert info["method"] == "unet" and info["settings"]["synthetic"] == 1
    assert sorted(p.name for p in (tmp_path / "u" / "model").iterdir()) == ["config.json", "model.pt"]
    seg = load_segmenter(tmp_path / "u")
    assert isinstance(seg, UNetSegmenter) and seg.class_names == ["background", "interior", "boundary"]
    lab = segment_labels(seg, scenes[2].image)
    assert lab.shape == scenes[2].image.shape and lab.dtype == np.int32
    part = Annotation("p", scenes[0].image, scenes[0].labels, known=np.arange(128)[None, :].repeat(128, 0) < 64)
    with pytest.raises(ConfigError, match="'p' is partial .* the U-Net needs complete annotations"):
        train_segmentation([part, scenes[1]], tmp_path / "u2", method="unet", validate=False, **tiny)
    with pytest.raises(ConfigError, match="renderer images are added to U-Net training only"):
        train_segmentation(list(scenes[:2]), tmp_path / "u3", synthetic=2)


def test_probabilities_to_labels_separates_touching_objects():
    yy, xx = np.mgrid[:60, :80]
    a = (yy - 30) ** 2 + (xx - 25) ** 2 < 15**2
    b = (yy - 30) ** 2 + (xx - 52) ** 2 < 15**2  # overlaps a: one blob with a neck
    fg = a | b
    # three classes: a boundary band where the disks meet and around their outlines
    ring = fg & ~(((yy - 30) ** 2 + (xx - 25) ** 2 < 13**2) | ((yy - 30) ** 2 + (xx - 52) ** 2 < 13**2))
    ring |= fg & (np.abs(xx - 38.5) < 2)
    p = np.zeros((60, 80, 3))
    p[..., 0] = ~fg
    p[..., 1] = fg & ~ring
    p[..., 2] = ring
    lab = probabilities_to_labels(p, classes=["background", "interior", "boundary"], smooth_sigma=0)
    assert lab.max() == 2 and (lab[30, 25] != lab[30, 52])
    assert abs((lab > 0).sum() - fg.sum()) <= 0.02 * fg.sum()  # the boundary is given back to the objects
    # two classes: the distance-transform watershed splits the same blob at its neck
    lab2 = probabilities_to_labels(np.dstack([~fg, fg]).astype(float), classes=["background", "interior"])
    assert lab2.max() == 2 and lab2[30, 25] != lab2[30, 52]
    with pytest.raises(ImageError, match=r"expected \(H, W, 3\) for classes"):
        probabilities_to_labels(p[..., :2], classes=["background", "interior", "boundary"])
